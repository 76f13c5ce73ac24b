#!/usr/bin/env bash
# CPU protocol (2 cores): Fashion-MNIST, ResNet18 width 0.25 (stride-2 stem), 32x32 crossbars
# (the tiling of full ResNet18 on 128x128). Starts from the dense checkpoint shipped with
# pimprune (15 epochs, trained by `pimprune train ... --epochs 15`, see docs/results.md).
# Every step skips runs that already finished, so the script resumes after a kill.
set -euo pipefail
OUT=${1:-runs/cpu_protocol}
DENSE=${DENSE:-src/pimprune/assets/demo_dense/model.pt}
LIMIT=${LIMIT:-20000}
export PIMPRUNE_QUIET=1
# 1. compression ladder per pattern, same epochs, with the winning method
python benchmarks/compression_table.py --dense "$DENSE" --crossbar 32x32 --targets 2,4,8 \
  --patterns subrow,row,filter,crossbar --method oneshot \
  --prune-epochs 1 --retrain-epochs 2 --limit-train "$LIMIT" --out "$OUT/table_32x32"
# 2. narrower crossbars: does the edge of sub-rows over shape-wise rows grow?
for XB in 32x16 32x8; do
  python benchmarks/compression_table.py --dense "$DENSE" --crossbar "$XB" --targets 4 \
    --patterns subrow,row --method oneshot --no-control \
    --prune-epochs 1 --retrain-epochs 2 --limit-train "$LIMIT" --out "$OUT/table_$XB"
done
# 3. method comparison at a short (1+2) and a longer (3+3) epoch budget
python benchmarks/method_comparison.py --dense "$DENSE" --pattern subrow --crossbar 32x32 --target 8 \
  --budgets 1+2,3+3 --limit-train "$LIMIT" --out "$OUT/methods"
# 4. the remaining patterns of the ladder (PIM-Prune's sub-columns, and unstructured)
python benchmarks/compression_table.py --dense "$DENSE" --crossbar 32x32 --targets 2,4,8 \
  --patterns subrow,row,filter,crossbar,subcolumn,unstructured --method oneshot \
  --prune-epochs 1 --retrain-epochs 2 --limit-train "$LIMIT" --out "$OUT/table_32x32"
