"""``pimprune prune``: prune to a crossbar budget and retrain with masks."""

from __future__ import annotations

import argparse

from pimprune.cli.common import (
    add_data_args,
    add_model_args,
    add_optim_args,
    add_run_args,
    nonneg_int,
    positive_float,
    positive_int,
    run_config,
)


def add_parser(sub) -> None:
    """Register ``prune``."""
    p = sub.add_parser(
        "prune",
        help="prune a model to a crossbar budget",
        description="Prune with a crossbar-aligned pattern (PIM-Prune's subrow by default) or a "
        "baseline, retrain with masks, and write model.pt, model.json, result.json to --out.",
    )
    add_model_args(p)
    add_data_args(p)
    add_run_args(p)
    add_optim_args(p, lr=0.1)
    p.add_argument(
        "--pattern", default="subrow", help="unstructured, filter, row, crossbar, subcolumn or subrow (default subrow)"
    )
    p.add_argument("--crossbar", default="32x32", metavar="RxC", help="crossbar geometry (default 32x32)")
    p.add_argument(
        "--target-compression",
        type=positive_float,
        default=8.0,
        help="dense crossbars / pruned crossbars over the network (default 8)",
    )
    p.add_argument(
        "--allocation",
        default="global",
        choices=["global", "uniform", "file"],
        help="per-layer budgets: global ranking, uniform, or --budgets YAML (default global)",
    )
    p.add_argument("--budgets", dest="budgets_file", default=None, help="YAML of per-layer budgets")
    p.add_argument(
        "--keep-dense",
        default="first,last",
        help="layers left dense: first, last, layer names, or none (default first,last)",
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=["auto", "admm", "oneshot", "gradual"],
        help="pruning method; auto picks the one that wins for the epoch budget",
    )
    p.add_argument("--dense", default=None, help="dense checkpoint (model.pt); default: train one first")
    p.add_argument(
        "--dense-epochs",
        type=nonneg_int,
        default=10,
        help="epochs of the dense baseline trained when no --dense is given (default 10)",
    )
    p.add_argument(
        "--admm-epochs",
        "--prune-epochs",
        dest="prune_epochs",
        type=nonneg_int,
        default=2,
        help="ADMM (or gradual) pruning epochs; one-shot retrains for them (default 2)",
    )
    p.add_argument("--retrain-epochs", type=nonneg_int, default=2, help="masked retraining epochs (default 2)")
    p.add_argument(
        "--admm-lr",
        "--prune-lr",
        dest="prune_lr",
        type=positive_float,
        default=0.01,
        help="learning rate of the pruning epochs (default 0.01)",
    )
    p.add_argument(
        "--retrain-lr", type=positive_float, default=0.01, help="learning rate of masked retraining (default 0.01)"
    )
    p.add_argument("--rho", type=positive_float, default=1e-3, help="initial ADMM penalty (default 1e-3)")
    p.add_argument("--rho-final", type=positive_float, default=1e-1, help="final ADMM penalty (default 0.1)")
    p.add_argument(
        "--updates-per-epoch",
        type=positive_int,
        default=4,
        help="ADMM Z/U or gradual mask updates per epoch (default 4)",
    )
    p.add_argument(
        "--bn-recalibrate",
        type=nonneg_int,
        default=50,
        help="batches to re-estimate batch-norm statistics after hard pruning (0: off; default 50)",
    )
    p.add_argument(
        "--saliency",
        default="auto",
        help="what the masks keep: magnitude, activation, fisher, or auto (the measured best "
        "for the pattern: fisher, magnitude for filter; default auto)",
    )
    p.add_argument(
        "--saliency-batches",
        type=positive_int,
        default=16,
        help="training batches read to compute the activation or fisher saliency (default 16)",
    )
    p.add_argument(
        "--distill",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="knowledge distillation from the dense model during pruning and retraining: share of the "
        "distillation term in the loss, in [0, 1] (default 0: off)",
    )
    p.add_argument(
        "--distill-temperature", type=positive_float, default=4.0, help="distillation temperature (default 4)"
    )
    p.set_defaults(func=run)


def prune_config(args: argparse.Namespace):
    """Build a :class:`pimprune.pipeline.PruneConfig` from parsed arguments."""
    from pimprune.pipeline import PruneConfig
    from pimprune.pruning.admm import ADMMConfig

    keep = tuple(k.strip() for k in args.keep_dense.split(",") if k.strip() and k.strip() != "none")
    return PruneConfig(
        pattern=args.pattern,
        crossbar=args.crossbar,
        target_compression=args.target_compression,
        allocation=args.allocation,
        budgets_file=args.budgets_file,
        keep_dense=keep,
        method=args.method,
        dense=args.dense,
        prune_epochs=args.prune_epochs,
        retrain_epochs=args.retrain_epochs,
        prune_lr=args.prune_lr,
        retrain_lr=args.retrain_lr,
        admm=ADMMConfig(rho=args.rho, rho_final=max(args.rho_final, args.rho)),
        updates_per_epoch=args.updates_per_epoch,
        bn_recalibrate=args.bn_recalibrate,
        saliency=args.saliency,
        saliency_batches=args.saliency_batches,
        distill=args.distill,
        distill_temperature=args.distill_temperature,
    )


def run(args: argparse.Namespace) -> int:
    """Prune."""
    from pimprune.pipeline import run_prune

    prune = prune_config(args)
    run_prune(run_config(args, args.dense_epochs), prune)
    return 0
