"""``pimprune export neurosim``: a (pruned) network as DNN+NeuroSim input files."""

from __future__ import annotations

import argparse
from typing import Any

from pimprune.cli.common import positive_float, positive_int
from pimprune.geometry import Crossbar

#: Export formats: name -> help line.
FORMATS: dict[str, str] = {"neurosim": "DNN+NeuroSim: NetWork.csv, weight<L>.csv and a README"}


def add_parser(sub: Any) -> None:
    """Register ``export``."""
    p = sub.add_parser(
        "export",
        help="write a (pruned) model as input files of another tool (DNN+NeuroSim)",
        description="Write MODEL (a model name or a pimprune model.pt) as DNN+NeuroSim's network table "
        "(NetWork.csv, one line per mapped layer; compacted layers as their kept matrix) and one "
        "weight<L>.csv per line, with a README on running NeuroSim and what it does not model.",
    )
    p.add_argument("format", choices=sorted(FORMATS), help="export format: " + "; ".join(FORMATS.values()))
    p.add_argument("model", help="model name (e.g. resnet18) or a pimprune model.pt (or its folder)")
    p.add_argument("--crossbar", required=True, metavar="RxC", help="crossbar geometry (NeuroSim's sub-array)")
    p.add_argument("--out", required=True, help="folder to write (must not hold a NetWork.csv yet)")
    p.add_argument("--input-size", type=positive_int, default=None, help="input side in px (default: model's)")
    p.add_argument("--num-classes", type=positive_int, default=1000, help="classes, for a model name")
    p.add_argument("--in-channels", type=positive_int, default=3, help="input channels, for a model name")
    p.add_argument("--width", type=positive_float, default=1.0, help="width multiplier, for a model name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the files."""
    from pimprune.hardware.export import export_neurosim
    from pimprune.workflows.sweep import load_sweep_model

    xbar = Crossbar.parse(args.crossbar)  # a bad geometry: one line before any work
    model, label, shape = load_sweep_model(
        args.model,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
        input_size=args.input_size,
        width=args.width,
    )
    files = export_neurosim(model, shape, xbar, args.out, label=label)
    print(f"wrote {len(files) - 2} layers to {args.out} (NetWork.csv, weight1-{len(files) - 2}.csv, README.md)")
    return 0
