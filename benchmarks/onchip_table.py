"""On-chip accuracy table: the dense and the headline pruned models under chip numerics and device variation.

For each model (the shipped dense model mapped densely on 32x32 crossbars, and the committed
headline models under the crossbar and scheme of their ``result.json``) this evaluates the
Fashion-MNIST test set in fp32, then on-chip with the ``isaac`` numerics (16-bit weights on
2-bit cells, 16-bit bit-serial inputs, lossless ADC) and with the weights cut to 8 and 4 bits
(``weight_bits`` overridden), each at lognormal conductance variation sigma 0, 5% and 10%
(mean and sample std over the device samples; one sample without variation, which is
deterministic). Losses are in accuracy points from the fp32 dense model.

Writes ``onchip_table.json`` and ``onchip_table.md`` into ``--out``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/onchip_table.py [--out results/onchip] [--limit-test N]
        [--samples 5] [--sigmas 0,0.05,0.1] [--bits 16,8,4] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from harness import numbers, script_main

from pimprune.hardware.numerics import load_numerics, numerics_with_overrides
from pimprune.hardware.onchip import OnChipModel
from pimprune.training.checkpoint import load_model, save_json, save_text
from pimprune.training.loaders import make_loaders
from pimprune.training.loops import evaluate
from pimprune.training.runtime import provenance
from pimprune.workflows.onchip_eval import model_mapping

#: Row label -> model.pt; the dense model is mapped on ``--dense-crossbar``.
MODELS = {
    "dense": "src/pimprune/assets/demo_dense/model.pt",
    "subrow-0.5pt": "results/headline/subrow-0.5pt/model.pt",
    "subrow-1pt": "results/headline/subrow-1pt/model.pt",
    "coarse-1pt": "results/headline/coarse-1pt/model.pt",
    "packed-1pt": "results/headline/packed-1pt/model.pt",
    "packed-coarse-1pt": "results/headline/packed-coarse-1pt/model.pt",
    "physical-1pt": "results/headline/physical-1pt/model.pt",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/onchip", help="output folder (default results/onchip)")
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated rows: names of " + ", ".join(MODELS) + ", or LABEL=PATH/model.pt")
    p.add_argument("--dense-crossbar", default="32x32", help="geometry of the dense model (default 32x32)")
    p.add_argument("--numerics", default="isaac", help="numerics preset the columns start from (default isaac)")
    p.add_argument("--bits", default="16,8,4", help="weight bits of the column groups (default 16,8,4)")
    p.add_argument("--sigmas", default="0,0.05,0.1", help="lognormal variation sigmas (default 0,0.05,0.1)")
    p.add_argument("--samples", type=int, default=5, help="device samples per varied cell (default 5)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit-test", type=int, default=None, help="N evenly spaced test images (default all)")
    p.add_argument("--calibration-images", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def _accuracy(model, loader) -> float:
    with torch.no_grad():
        return evaluate(model, loader, torch.device("cpu"), desc="eval")["accuracy"]


def _row(label: str, path: str, args: argparse.Namespace, data: tuple) -> dict:
    """fp32 and every (bits, sigma) column of one model."""
    calibration, test = data
    model, meta = load_model(path)
    model.eval()
    mapping = model_mapping(path, meta, args.dense_crossbar if label == "dense" else None)
    row = {"model": path, "crossbar": str(mapping.crossbar), "scheme": mapping.scheme,
           "mapping_from": mapping.source, "accuracy_fp32": _accuracy(model, test), "cells": {}}  # fmt: skip
    base = load_numerics(args.numerics)
    for bits in numbers(args.bits, "--bits"):
        for sigma in numbers(args.sigmas, "--sigmas"):
            cfg = numerics_with_overrides(base, {"weight_bits": int(bits), "variation_sigma": sigma})
            chip = OnChipModel(model, mapping.crossbar, mapping.scheme, cfg, calibration)
            seeds = range(args.samples if cfg.stochastic else 1)
            accs = []
            for seed in seeds:
                chip.attach(seed)
                try:
                    accs.append(_accuracy(model, test))
                finally:
                    chip.detach()
            row["crossbars"] = chip.n_crossbars
            row["cells"][f"{int(bits)}b/{sigma:g}"] = {
                "weight_bits": int(bits), "sigma": sigma, "accuracies": accs, "mean": statistics.fmean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            }  # fmt: skip
            print(f"{label} {bits:g}-bit sigma {sigma:g}: {statistics.fmean(accs):.4f}", file=sys.stderr, flush=True)
    return row


def _markdown(table: dict, heading: str) -> str:
    rows = table["rows"]
    keys = list(next(iter(rows.values()))["cells"])
    dense_fp32 = table["dense_fp32"]
    head = ["model", "crossbars", "fp32"] + [f"{k.split('/')[0]} s={float(k.split('/')[1]):.0%}" for k in keys]
    lines = [heading, "", "Accuracy (%; mean +- std over device samples):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for label, row in rows.items():
        cells = [f"{100 * c['mean']:.2f} +- {100 * c['std']:.2f}" if len(c["accuracies"]) > 1
                 else f"{100 * c['mean']:.2f}" for c in row["cells"].values()]  # fmt: skip
        lines.append(f"| {label} | {row['crossbars']} | {100 * row['accuracy_fp32']:.2f} | " + " | ".join(cells) + " |")
    for title, ref in ((f"Loss in points from the fp32 dense model ({100 * dense_fp32:.2f}%):", None),
                       ("On-chip loss in points from each model's own fp32 accuracy:", "own")):
        lines += ["", title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, row in rows.items():
            base = row["accuracy_fp32"] if ref == "own" else dense_fp32
            losses = [f"{100 * (base - c['mean']):.2f}" for c in row["cells"].values()]
            lines.append(f"| {label} | {row['crossbars']} | {100 * (base - row['accuracy_fp32']):.2f} | "
                         + " | ".join(losses) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    train, test, info = make_loaders(args.dataset, args.batch_size, args.data_dir, augment=False,
                                     limit_train=args.calibration_images, limit_test=args.limit_test)  # fmt: skip
    data = ([x for x, _ in train], test)
    chosen = dict(item.split("=", 1) if "=" in item else (item, MODELS[item])
                  for item in (m.strip() for m in args.models.split(",")) if item)
    rows = {label: _row(label, path, args, data) for label, path in chosen.items()}
    table = {
        "benchmark": "onchip_table", "dataset": args.dataset, "test_images": info.test_size,
        "numerics": args.numerics, "bits": args.bits, "sigmas": args.sigmas, "samples": args.samples,
        "variation": "lognormal", "dense_fp32": rows["dense"]["accuracy_fp32"] if "dense" in rows else None,
        "rows": rows, "seconds": round(time.time() - t0, 1), "provenance": provenance(),
    }  # fmt: skip
    out = Path(args.out)
    save_json(table, out / "onchip_table.json")
    if table["dense_fp32"] is not None:
        images = "all 10,000" if info.test_size == 10_000 else f"{info.test_size}"
        heading = (f"On-chip accuracy, {args.dataset} test set ({images} images), {args.numerics} numerics, "
                   f"lognormal variation, {args.samples} device samples per varied cell")  # fmt: skip
        text = _markdown(table, heading)
        save_text(text, out / "onchip_table.md")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
