"""Argument groups shared by several sub-commands."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pimprune.errors import ConfigError

T = TypeVar("T")


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        return v

    return parse


#: Argparse type: an integer >= 1.
positive_int = _int_at_least(1, "a positive integer")
#: Argparse type: an integer >= 0.
nonneg_int = _int_at_least(0, "an integer >= 0")


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
    """Build a :class:`pimprune.workflows.config.RunConfig` from parsed arguments."""
    from pimprune.training.loops import Execution, OptimConfig
    from pimprune.workflows.config import RunConfig

    out = args.out
    if out is not None and not out.strip():
        raise ConfigError("--out is empty; pass an output folder")
    return config_from_args(
        RunConfig,
        args,
        out=out or "",
        epochs=epochs,
        execution=config_from_args(Execution, args),
        optim=config_from_args(OptimConfig, args),
    )


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (its factory's product for mutable ones)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """A dataclass config from the parsed arguments named like its fields (``workflows.config.from_fields``)."""
    from pimprune.workflows.config import from_fields

    return from_fields(cls, args, **overrides)


@dataclass(frozen=True)
class Option:
    """A command-line option bound to a config field: default, choices and help come from the code.

    Attributes:
        field: The config field (and the argparse ``dest``).
        help: Help text; ``{default}`` and ``{names}`` are filled in.
        flags: Option strings (default ``--field-with-dashes``).
        type: Argparse type.
        choices: Registry names argparse checks (``--method``).
        names: Registry names listed in the help only (the config checks them, with a one-line error).
        default: The default when it is not the config field's (e.g. a string form of it;
            None: the field's).
        metavar: Argparse metavar.
    """

    field: str
    help: str
    flags: tuple[str, ...] = ()
    type: Callable[[str], Any] | None = None
    choices: Callable[[], Sequence[str]] | None = None
    names: Callable[[], Sequence[str]] | None = None
    default: Any = None
    metavar: str | None = None


def add_options(p: argparse.ArgumentParser, cls: type, options: Sequence[Option]) -> None:
    """Add ``options`` bound to the fields of config ``cls`` to the parser ``p``."""
    for opt in options:
        default = field_default(cls, opt.field) if opt.default is None else opt.default
        names = ", ".join((opt.choices or opt.names or (lambda: ()))())
        kwargs: dict[str, Any] = {"dest": opt.field, "default": default, "metavar": opt.metavar}
        if opt.type is not None:
            kwargs["type"] = opt.type
        if opt.choices is not None:
            kwargs["choices"] = list(opt.choices())
        flags = opt.flags or ("--" + opt.field.replace("_", "-"),)
        p.add_argument(*flags, help=opt.help.format(default=default, names=names), **kwargs)
