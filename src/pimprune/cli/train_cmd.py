"""``pimprune train``: train a dense baseline."""

from __future__ import annotations

import argparse

from pimprune.cli.common import (
    add_data_args,
    add_model_args,
    add_optim_args,
    add_run_args,
    field_default,
    nonneg_int,
    run_config,
)
from pimprune.workflows.config import RunConfig


def add_parser(sub) -> None:
    """Register ``train``."""
    p = sub.add_parser(
        "train",
        help="train a dense baseline",
        description="Train a dense model; writes model.pt, model.json and result.json to --out.",
    )
    add_model_args(p)
    add_data_args(p)
    add_run_args(p)
    add_optim_args(p, lr=0.1)
    epochs = field_default(RunConfig, "epochs")
    p.add_argument("--epochs", type=nonneg_int, default=epochs, help=f"training epochs (default {epochs})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train."""
    from pimprune.training.runtime import is_main_rank
    from pimprune.workflows.pipeline import run_train

    result = run_train(run_config(args, args.epochs))
    if is_main_rank():
        print(f"dense accuracy {result['accuracy']:.4f} after {args.epochs} epochs; saved to {args.out}")
    return 0
