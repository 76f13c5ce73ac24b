"""``pimprune export neurosim``: a (pruned) network as DNN+NeuroSim input files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pimprune.cli.common import positive_float, positive_int
from pimprune.geometry import Crossbar
from pimprune.hardware.neurosim import DEFAULT_BITS, MAPPINGS

#: Export formats: name -> help line.
FORMATS: dict[str, str] = {
    "neurosim": "DNN+NeuroSim V1.4: NetWork.csv, weight and input files, scales.json, run_neurosim.sh, README"
}


def add_parser(sub: Any) -> None:
    """Register ``export``."""
    p = sub.add_parser(
        "export",
        help="write a (pruned) model as input files of another tool (DNN+NeuroSim)",
        description="Write MODEL (a model name or a pimprune model.pt) as DNN+NeuroSim's network table "
        "(NetWork.csv, one line per mapped layer; compacted layers as their kept matrix with the layer's "
        "own kernel), one weight<L>.csv per line, input<L>.csv files from real images of the model's data "
        "set (the test split; random inputs for a model without one), scales.json, run_neurosim.sh (the "
        "NeuroSim command line) and a README. Refuses, with what to change, an export NeuroSim's "
        "floorplan could not place.",
    )
    p.add_argument("format", choices=sorted(FORMATS), help="export format: " + "; ".join(FORMATS.values()))
    p.add_argument("model", help="model name (e.g. resnet18) or a pimprune model.pt (or its folder)")
    p.add_argument("--crossbar", required=True, metavar="RxC",
                   help="crossbar geometry: R = NeuroSim's sub-array rows; its columns are 128 unless Param.cpp "
                   "is changed (the README says how)")
    p.add_argument("--out", required=True, help="folder to write (must not hold an export yet)")
    p.add_argument("--images", type=positive_int, default=1,
                   help="input files for the first N test images (default 1; images 2..N go to images/<k>/)")
    p.add_argument("--weight-bits", type=positive_int, default=DEFAULT_BITS,
                   help=f"NeuroSim's weight (synapse) bits (default {DEFAULT_BITS})")
    p.add_argument("--input-bits", type=positive_int, default=DEFAULT_BITS,
                   help=f"NeuroSim's input bits (default {DEFAULT_BITS})")
    p.add_argument("--mapping", choices=MAPPINGS, default="novel",
                   help="NeuroSim's novelMapping (Param.cpp): novel (its default) or conventional")
    p.add_argument("--data-dir", default=None, help="folder of the model's data set (default: its search order)")
    p.add_argument("--input-size", type=positive_int, default=None, help="input side in px (default: model's)")
    p.add_argument("--num-classes", type=positive_int, default=1000, help="classes, for a model name")
    p.add_argument("--in-channels", type=positive_int, default=3, help="input channels, for a model name")
    p.add_argument("--width", type=positive_float, default=1.0, help="width multiplier, for a model name")
    p.set_defaults(func=run)


def _dataset(source: str) -> str | None:
    """The data set a saved model was trained on (None for a model name)."""
    from pimprune.training.checkpoint import read_model_meta

    path = Path(source)
    if not (path.suffix in {".pt", ".pth"} or "/" in source or path.exists()):
        return None
    return read_model_meta(path).get("dataset")


def run(args: argparse.Namespace) -> int:
    """Write the files."""
    from pimprune.hardware.export import example_images, export_neurosim
    from pimprune.workflows.sweep import load_sweep_model

    xbar = Crossbar.parse(args.crossbar)  # a bad geometry: one line before any work
    model, label, shape = load_sweep_model(
        args.model,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
        input_size=args.input_size,
        width=args.width,
    )
    images, note = example_images(_dataset(args.model), args.images, shape, args.data_dir)
    done = export_neurosim(
        model, shape, xbar, args.out, label=label, images=images, image_note=note,
        weight_bits=args.weight_bits, input_bits=args.input_bits, mapping=args.mapping,
    )
    n = len(done.lines)
    print(f"wrote {n} lines to {args.out}: NetWork.csv, weight1-{n}.csv, input1-{n}.csv"
          + (f" (+ images/2..{done.images})" if done.images > 1 else "")
          + ", scales.json, run_neurosim.sh, README.md")
    print(f"inputs: {note}")
    print(f"run: {Path(args.out) / 'run_neurosim.sh'} PATH/TO/NeuroSIM/main > report.txt")
    return 0
