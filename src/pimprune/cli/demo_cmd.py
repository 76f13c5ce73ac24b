"""``pimprune demo``: prune the embedded model side by side (README's first command)."""

from __future__ import annotations

import argparse

from pimprune.cli.common import nonneg_int, positive_float, positive_int


def add_parser(sub) -> None:
    """Register ``demo``."""
    p = sub.add_parser(
        "demo",
        help="prune the embedded Fashion-MNIST ResNet18 with subrow and the coarse baselines",
        description="Prune the dense ResNet18 shipped with pimprune with PIM-Prune's subrow pattern "
        "and the coarse baselines to the same crossbar budget; print the side-by-side table "
        "and write a report folder.",
    )
    p.add_argument("--out", default="pimprune-demo", help="report folder (default pimprune-demo)")
    p.add_argument("--patterns", default="subrow,row,filter", help="comma-separated patterns")
    p.add_argument("--crossbar", default="32x32", metavar="RxC", help="crossbar geometry (default 32x32)")
    p.add_argument("--target-compression", type=positive_float, default=10.0, help="target (default 10)")
    p.add_argument("--prune-epochs", type=nonneg_int, default=2, help="pruning epochs per pattern (default 2)")
    p.add_argument("--retrain-epochs", type=nonneg_int, default=4, help="retraining epochs (default 4)")
    p.add_argument("--limit-train", type=positive_int, default=20000,
                   help="training images used for pruning (default 20000)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: Debian package or subset)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed")
    p.add_argument("--distill", type=float, default=0.9, metavar="WEIGHT",
                   help="knowledge distillation from the dense model, weight in [0, 1] (default 0.9; 0: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    from pimprune.geometry import Crossbar
    from pimprune.pruning.patterns import PATTERNS
    from pimprune.workflows.demo import DemoConfig, run_demo

    patterns = tuple(p.strip() for p in args.patterns.split(",") if p.strip())
    for p in patterns:
        PATTERNS.get(p)
    Crossbar.parse(args.crossbar)
    run_demo(DemoConfig(
        out=args.out, patterns=patterns, crossbar=args.crossbar,
        target_compression=args.target_compression, prune_epochs=args.prune_epochs,
        retrain_epochs=args.retrain_epochs, limit_train=args.limit_train, data_dir=args.data_dir,
        device=args.device, seed=args.seed, distill=args.distill,
    ))
    return 0
