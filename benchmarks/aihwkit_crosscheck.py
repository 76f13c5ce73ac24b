"""pimprune's on-chip accuracy beside IBM aihwkit-lightning's, at settings both can express.

For each ``WEIGHT_BITS/INPUT_BITS`` setting the model's test accuracy is computed twice: by
pimprune (:class:`pimprune.hardware.onchip.OnChipModel`, ``isaac`` numerics with those bits,
lossless ADC, ``--crossbar`` crossbars) and by aihwkit-lightning 2.1.0
(:func:`pimprune.hardware.aihwkit_bridge.analog_model`: per-channel weight discretization, the same
per-layer input ranges, ideal outputs). Both read the same calibration (``--calibration-images``
evenly spaced training images, the validation split held out) and the same test images.

    pip install --no-deps "aihwkit-lightning==2.1.0"
    python benchmarks/aihwkit_crosscheck.py --out results/aihwkit_crosscheck.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_main  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="src/pimprune/assets/demo_dense/model.pt")
    p.add_argument("--settings", default="16/16,8/8,4/8", help="WEIGHT_BITS/INPUT_BITS, comma-separated")
    p.add_argument("--crossbar", default="128x128")
    p.add_argument("--calibration-images", type=int, default=1024)
    p.add_argument("--validation", type=int, default=5000, help="training images held out (never calibrated on)")
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--out", default="results/aihwkit_crosscheck.json")
    return p.parse_args(argv)


def _data(args, model_meta: dict):
    """Calibration batches (the validation split held out), the test loader and the dataset's sizes."""
    from pimprune.training.loaders import make_loaders

    train, test, info = make_loaders(model_meta.get("dataset") or "fashion-mnist", 500, augment=False,
                                     limit_train=args.calibration_images, limit_test=args.limit_test,
                                     validation=args.validation)
    return [x for x, _ in train], test, info


def _accuracy(forward, loader) -> float:
    import torch

    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((forward(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def one_setting(model, numerics, xbar, calibration, test) -> dict:
    from pimprune.hardware.aihwkit_bridge import analog_model
    from pimprune.hardware.onchip import OnChipModel, calibrate_inputs
    from pimprune.mapping.matrices import extract_layers

    t0 = time.perf_counter()
    chip = OnChipModel(model, xbar, "dense", numerics, calibration)
    chip.attach(0)
    try:
        ours = _accuracy(model, test)
    finally:
        chip.detach()
    t1 = time.perf_counter()
    analog = analog_model(model, numerics, calibrate_inputs(model, extract_layers(model), calibration))
    theirs = _accuracy(analog, test)
    t2 = time.perf_counter()
    return {"weight_bits": numerics.weight_bits, "input_bits": numerics.input_bits, "pimprune": ours,
            "aihwkit": theirs, "difference_points": round(100 * (ours - theirs), 3),
            "seconds_pimprune": round(t1 - t0, 1), "seconds_aihwkit": round(t2 - t1, 1)}


def main(argv=None) -> int:
    import torch

    from pimprune.geometry import Crossbar
    from pimprune.hardware.aihwkit_bridge import AIHWKIT_PACKAGE
    from pimprune.hardware.numerics import load_numerics, numerics_with_overrides
    from pimprune.training.checkpoint import load_model

    args = parse(argv)
    model, meta = load_model(args.model)
    model.eval()
    calibration, test, info = _data(args, meta)
    fp32 = _accuracy(model, test)
    rows = []
    for item in (s for s in args.settings.split(",") if s.strip()):
        wb, xb = (int(v) for v in item.split("/"))
        numerics = numerics_with_overrides(load_numerics("isaac"), {"weight_bits": wb, "input_bits": xb})
        rows.append(one_setting(model, numerics, Crossbar.parse(args.crossbar), calibration, test))
        print(json.dumps(rows[-1]), flush=True)
    doc = {"model": args.model, "fp32": fp32, "crossbar": args.crossbar, "package": AIHWKIT_PACKAGE,
           "torch": torch.__version__, "calibration_images": args.calibration_images, "test_images": info.test_size,
           "machine": f"{platform.machine()} {platform.processor()}".strip(),
           "date": dt.date.today().isoformat(), "rows": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(script_main(main))
