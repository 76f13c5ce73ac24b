#!/usr/bin/env bash
# Full protocol for one CUDA GPU (issue #5): Fashion-MNIST (CIFAR-10 where its files are present:
# DATASET=cifar10), full-width ResNet18 (width 1; stride-2 stem, as in the CPU protocol, which
# keeps the weight matrices and crossbar counts of ResNet18 and cuts the convolution work 4x),
# 128x128 crossbars (the tiling the CPU protocol's width-0.25 model has on 32x32).
# Speed settings: data resident on the GPU (pimprune's TensorLoader on --device cuda), bf16 autocast,
# channels-last, loss checked every 20 steps only (no per-step host sync).
# Designed for about 10 minutes on one H100 (an estimate: about 2 s per epoch, about 200 epochs in all):
# a 20-epoch dense baseline, then 2+4-epoch pruning runs. Runs from a source tree too:
# PYTHONPATH=src bash benchmarks/gpu_protocol.sh.
# Every step skips finished runs, so the script resumes after a kill.
# Status: written and its settings tested on the CPU (tests/test_execution.py); not yet run on a GPU
# (no GPU was lent to the session that wrote it). Label results with the device when it runs.
set -euo pipefail
OUT=${1:-runs/gpu_protocol}
DATASET=${DATASET:-fashion-mnist}
PATTERNS=${PATTERNS:-subrow,row,filter,crossbar,subcolumn}
FAST=(--device cuda --precision bf16 --channels-last)
export PIMPRUNE_QUIET=1
# 1. dense baseline to its plateau (cosine schedule; the log has the test accuracy of every epoch)
python -m pimprune train --model resnet18 --width 1 --stem-stride 2 --dataset "$DATASET" --epochs 20 \
  --batch-size 256 --lr 0.1 "${FAST[@]}" --out "$OUT/dense" --resume
nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/device.txt" || true
# 2. compression ladder per pattern at 128x128, with a dense control row given the same extra epochs
python benchmarks/compression_table.py --dense "$OUT/dense/model.pt" --dataset "$DATASET" \
  --crossbar 128x128 --targets 4,8,16,24,32 --patterns "$PATTERNS" --method oneshot \
  --prune-epochs 2 --retrain-epochs 4 --batch-size 256 "${FAST[@]}" --out "$OUT/table_128x128"
# 3. methods at equal epochs (sub-rows, 16x)
python benchmarks/method_comparison.py --dense "$OUT/dense/model.pt" --dataset "$DATASET" \
  --pattern subrow --crossbar 128x128 --target 16 --budgets 2+4 "${FAST[@]}" --out "$OUT/methods"
