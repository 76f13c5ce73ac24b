"""``pimprune sweep``: crossbar design-space sweep of a model (energy, area, latency)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import torch

from pimprune.errors import ConfigError, GeometryError
from pimprune.geometry import Crossbar, grid, parse_geometries
from pimprune.hardware.config import PRESETS

#: Default grid: every combination of these rows and columns (25 geometries).
DEFAULT_SIDES = "32,64,128,256,512"


HELP = "sweep crossbar geometries: prune, then energy/area/latency on the hardware model"
DESCRIPTION = (
    "For every crossbar geometry, prune MODEL with the pattern's projection (no "
    "retraining unless --retrain), map it on crossbars and cost it with the hardware model. "
    "Prints a table with the sweet spots; --out writes sweep.csv, sweep.json and plots."
)


def add_parser(sub: Any) -> None:
    """Register ``sweep``."""
    p = sub.add_parser("sweep", help=HELP, description=DESCRIPTION)
    p.add_argument("model", help="model name (e.g. resnet18) or a pimprune model.pt (or its folder)")
    geo = p.add_argument_group("geometries (a grid of --rows x --cols, or a list of --crossbar)")
    geo.add_argument("--rows", default=None, help=f"crossbar rows, comma-separated (default {DEFAULT_SIDES})")
    geo.add_argument("--cols", default=None, help=f"crossbar columns, comma-separated (default {DEFAULT_SIDES})")
    geo.add_argument("--crossbar", action="append", default=None, metavar="RxC",
                     help="explicit geometries instead of the grid, repeatable or comma-separated")
    p.add_argument("--pattern", default="subrow", help="sparsity pattern (default subrow)")
    crit = p.add_mutually_exclusive_group()
    crit.add_argument("--keep-energy", type=float, default=None, metavar="F",
                      help="per geometry, the smallest budget keeping >= F of the squared weight norm (default 0.9)")
    crit.add_argument("--target-compression", type=float, default=None, metavar="X",
                      help="prune every geometry to X times fewer crossbars instead")
    p.add_argument("--hardware", default="isaac",
                   help=f"hardware preset ({', '.join(PRESETS.names())}) or a .yaml/.json file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a hardware field, e.g. --set adc.bits=8 (repeatable)")
    _add_model_args(p)
    p.add_argument("--out", default=None, help="folder for sweep.csv, sweep.json and the plots")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not draw plots in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    _add_retrain_args(p)
    p.set_defaults(func=run)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-size", type=int, default=None,
                   help="input side in px (default 224 for a model name, the saved one for a checkpoint)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes, for a model name (default 1000)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels, for a model name (default 3)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier, for a model name")


def _add_retrain_args(p: argparse.ArgumentParser) -> None:
    retrain = p.add_argument_group("retrained mode (slow: trains every geometry)")
    retrain.add_argument("--retrain", action="store_true",
                         help="prune and retrain each geometry with the training pipeline")
    retrain.add_argument("--dataset", default="fashion-mnist", help="dataset of --retrain")
    retrain.add_argument("--epochs", type=int, default=1, help="dense epochs when MODEL is a name")
    retrain.add_argument("--prune-epochs", type=int, default=1, help="pruning epochs per geometry")
    retrain.add_argument("--retrain-epochs", type=int, default=1, help="retraining epochs per geometry")


def _sides(text: str, flag: str) -> list[int]:
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit() or int(item) < 1:
            raise GeometryError(
                f"invalid {flag} value {item!r}; give positive integers separated by commas, "
                f"e.g. {flag} {DEFAULT_SIDES}"
            )
        out.append(int(item))
    if not out:
        raise GeometryError(f"{flag} is empty; give e.g. {flag} {DEFAULT_SIDES}")
    return out


def geometries_from_args(args: argparse.Namespace) -> list[Crossbar]:
    """The geometries to sweep: ``--crossbar`` list or the ``--rows x --cols`` grid.

    Raises:
        GeometryError: on a malformed list, or ``--crossbar`` mixed with ``--rows``/``--cols``.
    """
    if args.crossbar:
        if args.rows is not None or args.cols is not None:
            raise ConfigError("give either --crossbar or --rows/--cols, not both")
        found = parse_geometries([g for item in args.crossbar for g in item.split(",") if g.strip()])
        return list(dict.fromkeys(found))
    rows = _sides(args.rows if args.rows is not None else DEFAULT_SIDES, "--rows")
    cols = _sides(args.cols if args.cols is not None else DEFAULT_SIDES, "--cols")
    return list(dict.fromkeys(grid(rows, cols)))


def _criterion(args: argparse.Namespace) -> dict[str, float]:
    from pimprune.workflows.sweep import DEFAULT_KEEP_ENERGY

    if args.target_compression is not None:
        t = args.target_compression
        if not (math.isfinite(t) and t >= 1):
            raise ConfigError(f"--target-compression must be a number >= 1, got {t:g}")
        return {"target_compression": float(t)}
    f = DEFAULT_KEEP_ENERGY if args.keep_energy is None else args.keep_energy
    if not (math.isfinite(f) and 0 < f <= 1):
        raise ConfigError(f"--keep-energy must be in (0, 1], got {f:g}")
    return {"keep_energy": float(f)}


def _pruner(args: argparse.Namespace, criterion: dict[str, float]) -> tuple[Any, Any, str, tuple, str]:
    """The model, its pruner (projection, or retraining per geometry), label, input shape and mode."""
    from pimprune.workflows.sweep import ProjectionPruner, load_sweep_model, retrained_pruner

    model, label, shape = load_sweep_model(args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                                           input_size=args.input_size, width=args.width)
    projection = ProjectionPruner(model, args.pattern, torch.zeros(1, *shape),
                                  keep_energy=criterion.get("keep_energy"),
                                  target_compression=criterion.get("target_compression"))
    if not args.retrain:
        return model, projection, label, shape, "projection"
    pruner = retrained_pruner(
        args.model, args.pattern, args.out,
        compression_for=lambda xbar: projection(xbar).target_compression,
        run_options={"dataset": args.dataset, "epochs": args.epochs},
        prune_options={"prune_epochs": args.prune_epochs, "retrain_epochs": args.retrain_epochs},
    )
    return model, pruner, label, shape, "retrained"


def _write(result: Any, args: argparse.Namespace) -> None:
    from pimprune.workflows.sweep_output import write_outputs

    try:
        files = write_outputs(result, args.out, plots=args.plot)
    except ConfigError as exc:  # matplotlib missing: keep the numbers, say why no plot
        files = write_outputs(result, args.out, plots=False)
        print(f"pimprune sweep: note: {exc}", file=sys.stderr)
    if not args.json:
        print("wrote " + ", ".join(str(f) for f in files), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the sweep and report it."""
    from pimprune.cli.hardware_cmd import resolve_hardware
    from pimprune.pruning.patterns import get_pattern
    from pimprune.workflows.sweep import run_sweep
    from pimprune.workflows.sweep_output import format_table

    geometries = geometries_from_args(args)
    criterion = _criterion(args)
    get_pattern(args.pattern)  # unknown pattern: one line before any work
    hw = resolve_hardware(args.hardware, args.overrides)
    if args.retrain and not args.out:
        raise ConfigError("retrained mode needs --out (each geometry trains in --out/RxC)")
    model, pruner, label, shape, mode = _pruner(args, criterion)
    result = run_sweep(model, geometries, hw, shape, pruner, pattern=args.pattern, criterion=criterion, mode=mode,
                       model_label=label, progress=sys.stderr.isatty())
    if args.out:
        _write(result, args)
    print(json.dumps(result.as_dict()) if args.json else format_table(result))
    return 0
