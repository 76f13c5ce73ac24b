#!/usr/bin/env bash
# CPU protocol (2 cores): Fashion-MNIST, ResNet18 width 0.25 (stride-2 stem), 32x32 crossbars
# (the tiling of full ResNet18 on 128x128). Starts from the dense checkpoint shipped with
# pimprune (15 epochs, trained by `pimprune train ... --epochs 15`, see docs/results.md).
# Every step skips runs that already finished, so the script resumes after a kill.
set -euo pipefail
OUT=${1:-runs/cpu_protocol}
DENSE=${DENSE:-src/pimprune/assets/demo_dense/model.pt}
LIMIT=${LIMIT:-20000}
PATTERNS=${PATTERNS:-subrow,row,filter,crossbar,subcolumn,unstructured}
export PIMPRUNE_QUIET=1
# The runs in docs/results.md were made with OMP_NUM_THREADS=1, two or three steps in parallel
# (one torch thread per process makes better use of 2 cores than two threads in one process).
# 1. method comparison at a short epoch budget (1 pruning + 2 retraining epochs)
python benchmarks/method_comparison.py --dense "$DENSE" --pattern subrow --crossbar 32x32 --target 8 \
  --budgets 1+2 --limit-train "$LIMIT" --out "$OUT/methods"
# 2. compression ladder per pattern, same epochs, with the method that won at this budget
python benchmarks/compression_table.py --dense "$DENSE" --crossbar 32x32 --targets 2,4,8 \
  --patterns "$PATTERNS" --method oneshot \
  --prune-epochs 1 --retrain-epochs 2 --limit-train "$LIMIT" --out "$OUT/table_32x32"
# 3. narrower crossbars: how the edge of sub-rows over shape-wise rows changes
python benchmarks/compression_table.py --dense "$DENSE" --crossbar 32x8 --targets 4 \
  --patterns subrow,row --method oneshot --no-control \
  --prune-epochs 1 --retrain-epochs 2 --limit-train "$LIMIT" --out "$OUT/table_32x8"
# 4. method comparison at a longer budget (3 + 3 epochs)
python benchmarks/method_comparison.py --dense "$DENSE" --pattern subrow --crossbar 32x32 --target 8 \
  --budgets 1+2,3+3 --limit-train "$LIMIT" --out "$OUT/methods"
# 5. the 8x step with longer budgets (3+3 and 6+6 epochs) for the coarse patterns;
#    subrow's 3+3 one-shot run is the one of step 4
for P in filter row crossbar; do
  python benchmarks/compression_table.py --dense "$DENSE" --crossbar 32x32 --targets 8 --patterns "$P" \
    --method oneshot --no-control --prune-epochs 3 --retrain-epochs 3 --limit-train "$LIMIT" \
    --out "$OUT/table_32x32_6ep_$P"
done
for P in subrow filter; do
  python benchmarks/compression_table.py --dense "$DENSE" --crossbar 32x32 --targets 8 --patterns "$P" \
    --method oneshot --no-control --prune-epochs 6 --retrain-epochs 6 --limit-train "$LIMIT" \
    --out "$OUT/table_32x32_12ep_$P"
done
python benchmarks/method_comparison.py --dense "$DENSE" --pattern subrow --crossbar 32x32 --target 8 \
  --budgets 6+6 --methods admm --limit-train "$LIMIT" --out "$OUT/methods_12"
