"""``pimprune evaluate``: accuracy of a saved model (in fp32, or computed on crossbars with ``--on-chip``)."""

from __future__ import annotations

import argparse
import json

from pimprune.cli.common import add_data_args, config_from_args, nonneg_int, positive_int
from pimprune.errors import ConfigError

#: Options that only ``--on-chip`` reads (argparse dest -> flag), default None when not given.
_ON_CHIP_ONLY = {
    "numerics": "--numerics",
    "numerics_set": "--set",
    "crossbar": "--crossbar",
    "repeats": "--repeats",
    "calibration_images": "--calibration-images",
    "chip_path": "--chip-path",
}


def add_parser(sub) -> None:
    """Register ``evaluate``."""
    from pimprune.hardware.numerics import NUMERICS_PRESETS
    from pimprune.hardware.onchip import PATHS

    p = sub.add_parser(
        "evaluate",
        help="test accuracy of a saved model (fp32, or on crossbars with --on-chip)",
        description="Evaluate model.pt (with model.json beside it) on a test split (with --validation N: on the "
        "fixed validation split of N training images, where choices are made). With --on-chip every "
        "Conv2d/Linear is computed on crossbars as the chip would (quantized, bit-sliced weights, ADC "
        "reads, device variation), mapped as the model was pruned (result.json beside model.pt), else "
        "densely on --crossbar.",
    )
    p.add_argument("checkpoint", help="model.pt (or its folder)")
    add_data_args(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    chip = p.add_argument_group("on-chip evaluation")
    chip.add_argument("--on-chip", action="store_true", help="compute the mapped layers on crossbars")
    chip.add_argument("--numerics", default=None, metavar="PRESET|FILE",
                      help=f"numerics preset ({', '.join(NUMERICS_PRESETS.names())}) or a .yaml/.json file "
                      "(default isaac)")  # fmt: skip
    chip.add_argument("--set", dest="numerics_set", action="append", default=None, metavar="numerics.FIELD=VALUE",
                      help="override a numerics field, e.g. --set numerics.variation_sigma=0.05 (repeatable)")
    chip.add_argument("--crossbar", default=None, metavar="RxC",
                      help="crossbar geometry (default: the model's own from result.json, else 128x128)")
    chip.add_argument("--repeats", type=positive_int, default=None, metavar="N",
                      help="device samples (seeds S..S+N-1), reported as mean and std (default 1)")
    chip.add_argument("--seed", type=nonneg_int, default=0, metavar="S", help="first device sample (default 0)")
    chip.add_argument("--calibration-images", type=positive_int, default=None, metavar="N",
                      help="training images that set the input scales (default 1024)")
    chip.add_argument("--chip-path", default=None, choices=PATHS,
                      help="auto (exact single product when the readout is lossless), reads (every ADC read) "
                      "or collapsed")  # fmt: skip
    p.set_defaults(func=run)


def _numerics_overrides(items: list[str] | None) -> tuple[tuple[str, object], ...]:
    """``--set numerics.F=V`` items as ``(("numerics.F", V), ...)``."""
    from pimprune.cli.hardware_cmd import parse_overrides

    parsed = parse_overrides(items or [])
    for key in parsed:
        if not key.startswith("numerics."):
            raise ConfigError(
                f"evaluate --set takes numerics.FIELD=VALUE, got {key!r}; e.g. --set numerics.variation_sigma=0.05"
            )
    return tuple(parsed.items())


def run(args: argparse.Namespace) -> int:
    """Evaluate."""
    from pimprune.training.runtime import is_main_rank
    from pimprune.workflows.pipeline import RunConfig, run_evaluate

    run_cfg = config_from_args(RunConfig, args, augment=False)
    if not args.on_chip:
        given = [flag for dest, flag in _ON_CHIP_ONLY.items() if getattr(args, dest) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --on-chip")
        res = run_evaluate(args.checkpoint, run_cfg)
        if not is_main_rank():
            return 0
        if args.json:
            print(json.dumps({k: v for k, v in res.items()}))
        else:
            print(f"{args.checkpoint} on {args.dataset} ({res['split']}): accuracy {res['accuracy']:.4f}  "
                  f"loss {res['loss']:.4f}")
        return 0
    from pimprune.workflows.onchip_eval import OnChipEval, format_onchip, run_onchip_evaluate

    given = {"numerics": args.numerics, "repeats": args.repeats, "calibration_images": args.calibration_images,
             "path": args.chip_path}  # fmt: skip
    settings = OnChipEval(
        overrides=_numerics_overrides(args.numerics_set),
        crossbar=args.crossbar,
        seed=args.seed,
        **{key: value for key, value in given.items() if value is not None},  # the others: OnChipEval's defaults
    )
    settings.resolve_numerics()  # a bad preset or field fails before any data is loaded
    res = run_onchip_evaluate(args.checkpoint, run_cfg, settings)
    if is_main_rank():
        print(json.dumps(res) if args.json else format_onchip(res))
    return 0
