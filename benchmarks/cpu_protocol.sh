#!/usr/bin/env bash
# CPU protocol (2 cores, about 80 minutes wall with the two lanes below, measured 2026-11-27): Fashion-MNIST, ResNet18 width 0.25 (stride-2 stem),
# 32x32 crossbars (the tiling of full ResNet18 on 128x128). Starts from the dense checkpoint
# shipped with pimprune (15 epochs, trained by `pimprune train ... --epochs 15`, see docs/results.md).
# Every pattern runs with its `auto` saliency (fisher; magnitude for filter, the measured best).
# Every step skips runs that already finished, so the script resumes after a kill.
# The runs in docs/results.md were made with OMP_NUM_THREADS=1, two steps in parallel
# (one torch thread per process makes better use of 2 cores than two threads in one process):
#   LANE=a bash benchmarks/cpu_protocol.sh OUT &  LANE=b bash benchmarks/cpu_protocol.sh OUT
# then `bash benchmarks/cpu_protocol.sh OUT` once more reuses every run and writes the whole design space.
set -euo pipefail
OUT=${1:-runs/cpu_protocol}
DENSE=${DENSE:-src/pimprune/assets/demo_dense/model.pt}
LIMIT=${LIMIT:-20000}
LANE=${LANE:-ab}
export PIMPRUNE_QUIET=1
RUN=(--dense "$DENSE" --limit-train "$LIMIT")
if [[ $LANE == *a* ]]; then
  # 1. compression ladder, same epochs (1 pruning + 2 retraining), dense control row
  python benchmarks/compression_table.py "${RUN[@]}" --crossbar 32x32 --targets 2,4,6,8,12,16,32 \
    --patterns subrow,row,filter --method oneshot --prune-epochs 1 --retrain-epochs 2 --out "$OUT/table_32x32"
  # 2. methods at equal epochs (3 and 6)
  python benchmarks/method_comparison.py "${RUN[@]}" --pattern subrow --crossbar 32x32 --target 8 \
    --budgets 1+2,3+3 --out "$OUT/methods"
  # 3. narrower crossbars: the edge of sub-rows over shape-wise rows
  python benchmarks/compression_table.py "${RUN[@]}" --crossbar 32x8 --targets 4,8 --patterns subrow,row \
    --method oneshot --no-control --prune-epochs 1 --retrain-epochs 2 --out "$OUT/table_32x8"
  # 4. design space (sub-rows), compression at a 1-point loss bound and its energy/area, half the rows
  python benchmarks/design_space.py "${RUN[@]}" --pattern subrow --rows 32,64 --cols 32,64,128 \
    --targets 2,3,4,6,8,12 --bound 1.0 --stop-margin 0.5 --out "$OUT/design_space"
fi
if [[ $LANE == *b* ]]; then
  python benchmarks/compression_table.py "${RUN[@]}" --crossbar 32x32 --targets 2,4,6,8,12,16,32 \
    --patterns subcolumn,crossbar --no-control --method oneshot --prune-epochs 1 --retrain-epochs 2 \
    --out "$OUT/table_32x32_b"
  # 5. a longer budget (3 + 3 epochs) at 8x and 16x
  python benchmarks/compression_table.py "${RUN[@]}" --crossbar 32x32 --targets 4,6,8,16 \
    --patterns subrow,filter,row,crossbar --method oneshot --no-control --prune-epochs 3 --retrain-epochs 3 \
    --out "$OUT/table_6ep"
  # 6. 12 epochs (6 + 6) at 4x and 8x
  python benchmarks/compression_table.py "${RUN[@]}" --crossbar 32x32 --targets 4,8 \
    --patterns subrow,filter,row,crossbar --method oneshot --no-control --prune-epochs 6 --retrain-epochs 6 \
    --out "$OUT/table_12ep"
  python benchmarks/design_space.py "${RUN[@]}" --pattern subrow --rows 128,256 --cols 32,64,128 \
    --targets 2,3,4,6,8,12 --bound 1.0 --stop-margin 0.5 --out "$OUT/design_space"
fi
# the whole design space in one table (every run above is reused)
if [[ $LANE == ab ]]; then
  python benchmarks/design_space.py "${RUN[@]}" --pattern subrow --rows 32,64,128,256 --cols 32,64,128 \
    --targets 2,3,4,6,8,12 --bound 1.0 --stop-margin 0.5 --out "$OUT/design_space"
fi
