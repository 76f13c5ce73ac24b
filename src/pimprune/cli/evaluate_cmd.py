"""``pimprune evaluate``: accuracy of a saved model."""

from __future__ import annotations

import argparse
import json

from pimprune.cli.common import add_data_args, config_from_args


def add_parser(sub) -> None:
    """Register ``evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="test accuracy of a saved model",
        description="Evaluate model.pt (with model.json beside it) on a test split.",
    )
    p.add_argument("checkpoint", help="model.pt (or its folder)")
    add_data_args(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate."""
    from pimprune.training.runtime import is_main_rank
    from pimprune.workflows.pipeline import RunConfig, run_evaluate

    run_cfg = config_from_args(RunConfig, args, augment=False)
    res = run_evaluate(args.checkpoint, run_cfg)
    if not is_main_rank():
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in res.items()}))
    else:
        print(f"{args.checkpoint} on {args.dataset}: accuracy {res['accuracy']:.4f}  loss {res['loss']:.4f}")
    return 0
