"""Argument groups shared by several sub-commands."""

from __future__ import annotations

import argparse
import math

from pimprune.errors import ConfigError


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """Argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return v


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model/--width/--stem-stride."""
    p.add_argument("--model", default="resnet18", help="model name (default: resnet18)")
    p.add_argument("--width", type=positive_float, default=1.0, help="channel width multiplier (default 1)")
    p.add_argument("--stem-stride", type=positive_int, default=None, help="stride of the first conv")


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--dataset/--data-dir/--batch-size/..."""
    p.add_argument(
        "--dataset", default="fashion-mnist", help="fashion-mnist, fashion-mnist-subset, cifar10, imagenet or synthetic"
    )
    p.add_argument("--data-dir", default=None, help="folder of the dataset files")
    p.add_argument("--batch-size", type=positive_int, default=128, help="batch size per process")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no crop/flip augmentation")
    p.add_argument("--limit-train", type=positive_int, default=None, help="use only N training images")
    p.add_argument("--limit-test", type=positive_int, default=None, help="use only N test images")
    p.add_argument(
        "--validation",
        type=nonneg_int,
        default=0,
        help="hold out N training images (a fixed split) for validation: per-epoch accuracy and the "
        "result's accuracy_val come from them, test accuracy is measured once at the end (default 0: off)",
    )


def add_run_args(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    """--seed/--device/--out/--resume."""
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--out", required=out_required, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument(
        "--precision",
        default="fp32",
        help="fp32, or bf16 for autocast mixed precision (the GPU protocol; default fp32)",
    )
    p.add_argument(
        "--channels-last", action="store_true", help="channels-last memory format (faster on tensor-core GPUs)"
    )


def add_optim_args(p: argparse.ArgumentParser, lr: float = 0.1) -> None:
    """--lr/--momentum/--weight-decay/--label-smoothing/--warmup-epochs."""
    p.add_argument("--lr", type=positive_float, default=lr, help=f"peak learning rate (default {lr})")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing (default 0)")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up epochs (default 0)")


def run_config(args: argparse.Namespace, epochs: int):
    """Build a :class:`pimprune.pipeline.RunConfig` from parsed arguments."""
    from pimprune.pipeline import RunConfig
    from pimprune.training.loops import Execution, OptimConfig

    out = args.out
    if out is not None and not out.strip():
        raise ConfigError("--out is empty; pass an output folder")
    return RunConfig(
        model=args.model,
        width=args.width,
        stem_stride=args.stem_stride,
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        augment=args.augment,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        validation=getattr(args, "validation", 0),
        seed=args.seed,
        device=args.device,
        out=out or "",
        resume=args.resume,
        epochs=epochs,
        execution=Execution(precision=args.precision, channels_last=args.channels_last),
        optim=OptimConfig(
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            label_smoothing=args.label_smoothing,
            warmup_epochs=args.warmup_epochs,
        ),
    )
