"""Speed of the on-chip evaluation: the Fashion-MNIST test set through the shipped model's crossbars.

Times ``evaluate --on-chip`` work on the 10,000 test images of the shipped ResNet18 (width 0.25)
with the ``isaac`` numerics (16-bit weights on 2-bit cells, 16-bit bit-serial inputs, lossless
ADC: the exact collapsed product), split into its steps: packing, quantizing and calibrating
(once per model), drawing one device sample, and the test-set pass; the fp32 pass is timed
beside it. Target: under 2 minutes on 2 threads. It also times the read-by-read path (every
ADC read, needed for a lossy ADC or read noise) on a few images with the ``neurosim`` numerics
and extrapolates it to the test set.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_onchip.py [--threads 2] [--crossbar 32x32]
        [--numerics isaac] [--read-images 200] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from harness import emit_json, script_main

from pimprune.geometry import Crossbar
from pimprune.hardware.numerics import load_numerics, numerics_to_dict
from pimprune.hardware.onchip import OnChipModel
from pimprune.training.checkpoint import load_model
from pimprune.training.loaders import make_loaders
from pimprune.training.loops import evaluate
from pimprune.training.runtime import provenance

SHIPPED = "src/pimprune/assets/demo_dense/model.pt"
TARGET_S = 120.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=SHIPPED, help="model.pt (default: the shipped dense model)")
    p.add_argument("--crossbar", default="32x32", help="crossbar geometry (default 32x32)")
    p.add_argument("--scheme", default="dense", help="packing scheme (default dense)")
    p.add_argument("--numerics", default="isaac", help="numerics of the timed pass (default isaac)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit-test", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--calibration-images", type=int, default=1024)
    p.add_argument("--read-images", type=int, default=200,
                   help="images for the read-by-read timing with neurosim numerics (0: skip)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--json", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 3)


def _read_path(model, xbar, scheme, calibration, test_loader, images: int) -> dict:
    """Seconds per image of the read-by-read path (neurosim numerics: 5-bit ADC), extrapolated."""
    chip = OnChipModel(model, xbar, scheme, load_numerics("neurosim"), calibration)
    batch = next(iter(test_loader))[0][:images]
    chip.attach(0)
    try:
        with torch.no_grad():
            _, seconds = _timed(lambda: model(batch))
    finally:
        chip.detach()
    per_image = seconds / batch.shape[0]
    return {"numerics": "neurosim", "path": chip.path, "images": int(batch.shape[0]), "seconds": seconds,
            "seconds_per_image": round(per_image, 5), "extrapolated_test_set_s": round(per_image * 10_000, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.model)
    model.eval()
    xbar = Crossbar.parse(args.crossbar)
    numerics = load_numerics(args.numerics)
    (train, test, info), load_s = _timed(lambda: make_loaders(
        args.dataset, args.batch_size, args.data_dir, augment=False, limit_train=args.calibration_images,
        limit_test=args.limit_test))  # fmt: skip
    calibration = [x for x, _ in train]
    fp32, fp32_s = _timed(lambda: evaluate(model, test, torch.device("cpu"), desc="fp32"))
    chip, prepare_s = _timed(lambda: OnChipModel(model, xbar, args.scheme, numerics, calibration))
    _, sample_s = _timed(lambda: chip.attach(0))
    try:
        with torch.no_grad():
            onchip, eval_s = _timed(lambda: evaluate(model, test, torch.device("cpu"), desc="on-chip"))
    finally:
        chip.detach()
    total = round(prepare_s + sample_s + eval_s, 3)
    out = {
        "benchmark": "onchip",
        "model": args.model, "crossbar": str(xbar), "scheme": args.scheme, "crossbars": chip.n_crossbars,
        "numerics": numerics_to_dict(numerics), "path": chip.path, "test_images": info.test_size,
        "seconds": {"load_data": load_s, "fp32_eval": fp32_s, "prepare": prepare_s, "device_sample": sample_s,
                    "onchip_eval": eval_s, "onchip_total": total},
        "target_s": TARGET_S, "within_target": total < TARGET_S,
        "accuracy_fp32": fp32["accuracy"], "accuracy_onchip": onchip["accuracy"],
        "provenance": provenance(),
    }  # fmt: skip
    if args.read_images > 0:
        out["read_path"] = _read_path(model, xbar, args.scheme, calibration, test, args.read_images)
    emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
