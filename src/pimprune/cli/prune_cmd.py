"""``pimprune prune``: prune to a crossbar budget and retrain with masks.

The options are bound to :class:`pimprune.workflows.config.PruneConfig` fields: their
defaults come from it, the names they accept from the registries (patterns,
allocations, pruning methods, saliencies). Each pruning method's settings become
options of their own (:func:`add_method_options`), derived from its settings dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from pimprune.cli.common import (
    Option,
    add_data_args,
    add_model_args,
    add_optim_args,
    add_options,
    add_run_args,
    config_from_args,
    field_default,
    nonneg_int,
    positive_float,
    positive_int,
    run_config,
)
from pimprune.hardware.objective import OBJECTIVES
from pimprune.pruning.methods import method_choices, settings_from_options, settings_types
from pimprune.pruning.patterns import PATTERNS
from pimprune.pruning.quantization import QUANT_SCALES, QuantConfig
from pimprune.pruning.saliency import AUTO, SALIENCIES
from pimprune.pruning.target import ALLOCATIONS, GUARDS, PACKINGS
from pimprune.workflows.config import PruneConfig, RunConfig

DESCRIPTION = (
    "Prune with a crossbar-aligned pattern (PIM-Prune's subrow by default) or a "
    "baseline, retrain with masks, and write model.pt, model.json, result.json to --out."
)


def _saliencies() -> list[str]:
    return [AUTO, *SALIENCIES.names()]


#: The options bound to PruneConfig fields, in the order of ``--help``.
PRUNE_OPTIONS: tuple[Option, ...] = (
    Option("pattern", "sparsity pattern: {names} (default {default})", names=PATTERNS.names),
    Option("crossbar", "crossbar geometry (default {default})", metavar="RxC"),
    Option(
        "target_compression", "dense crossbars / pruned crossbars over the network (default {default:g})",
        type=positive_float,
    ),
    Option(
        "allocation", "per-layer budgets: global ranking, uniform, or --budgets YAML (default {default})",
        choices=lambda: ALLOCATIONS,
    ),
    Option("budgets_file", "YAML of per-layer budgets", flags=("--budgets",)),
    Option(
        "keep_dense", "layers left dense: first, last, layer names, or none (default {default})",
        default=",".join(field_default(PruneConfig, "keep_dense")),
    ),
    Option("method", "pruning method; auto picks the measured winner for the epoch budget, which is one-shot "
           "at every budget measured (3, 6 and 30 epochs)", choices=method_choices),
    Option("dense", "dense checkpoint (model.pt); default: train one first"),
    Option(
        "prune_epochs", "ADMM (or gradual) pruning epochs; one-shot retrains for them (default {default})",
        flags=("--admm-epochs", "--prune-epochs"), type=nonneg_int,
    ),
    Option("retrain_epochs", "masked retraining epochs (default {default})", type=nonneg_int),
    Option(
        "prune_lr", "learning rate of the pruning epochs (default {default})",
        flags=("--admm-lr", "--prune-lr"), type=positive_float,
    ),
    Option("retrain_lr", "learning rate of masked retraining (default {default})", type=positive_float),
    Option("updates_per_epoch", "ADMM Z/U or gradual mask updates per epoch (default {default})", type=positive_int),
    Option(
        "bn_recalibrate", "batches to re-estimate batch-norm statistics after hard pruning (0: off; default {default})",
        type=nonneg_int,
    ),
    Option(
        "saliency", "what the masks keep: {names} (auto: the measured best for the pattern, fisher, "
        "magnitude for filter; default {default})",
        names=_saliencies,
    ),
    Option(
        "saliency_batches", "training batches read to compute the activation or fisher saliency (default {default})",
        type=positive_int,
    ),
    Option(
        "distill", "knowledge distillation from the dense model during pruning and retraining: share of the "
        "distillation term in the loss, in [0, 1] (default {default}; 0: off)",
        type=float, metavar="WEIGHT",
    ),
    Option("distill_temperature", "distillation temperature (default {default})", type=positive_float),
    Option(
        "packing", "how the crossbar budget is counted: layer (the paper's per-layer mapping) or network "
        "(crossbars shared across layers, subrow only; writes placement.json) (default {default})",
        choices=lambda: PACKINGS,
    ),
    Option(
        "guard", "what the global allocation keeps whatever the budget: layer (a unit per layer) or outputs "
        "(a unit per output group: no output silenced; subrow, row, crossbar) (default {default})",
        choices=lambda: GUARDS,
    ),
    Option(
        "objective", "what the global budget counts: {names} (energy/edp: the hardware model's cost of one "
        "crossbar of each layer per inference; default {default})",
        names=OBJECTIVES.names,
    ),
    Option("hardware", "hardware preset or YAML/JSON file for the objective and the energy figures "
           "(default {default})"),
)  # fmt: skip


#: Quantization-aware retraining, bound to :class:`pimprune.pruning.quantization.QuantConfig` fields.
QUANT_OPTIONS: tuple[Option, ...] = (
    Option("weight_bits", "retrain for signed B-bit weights (fake quantization, straight-through gradient); "
           "the saved weights are quantized and the physical arrays and cost follow (default: fp32)",
           type=positive_int, metavar="B"),
    Option("input_bits", "retrain with every mapped layer's input fake-quantized to B bits (default: fp32)",
           type=positive_int, metavar="B"),
    Option("train_noise", "inject lognormal weight noise of this sigma while retraining (fraction, 0.05 = 5%%; "
           "default {default})", type=float, metavar="SIGMA"),
    Option("weight_scale", "weight scale per output column or per layer: {names} (default {default})",
           flags=("--quant-scale",), choices=lambda: QUANT_SCALES),
)  # fmt: skip


def _option_fields(settings: type) -> list[dataclasses.Field]:
    """The fields of a settings dataclass that are command-line options."""
    return [f for f in dataclasses.fields(settings) if f.init and f.metadata.get("option", True)]


def _dest(method: str, name: str) -> str:
    return f"{method}:{name}"


def _arg_type(kind: Any, positive: bool) -> Any:
    """Argparse type of a setting of annotation ``kind``."""
    if kind is int:
        return positive_int if positive else int
    if kind is float:
        return positive_float if positive else float
    if kind is str:
        return str
    raise TypeError(f"a method setting must be an int, float or str; got {kind!r}")


def add_method_options(p: argparse.ArgumentParser) -> None:
    """One option per field of every registered method's settings dataclass (``--field-name``).

    The field gives the default and, in its metadata, the help text and whether the
    number must be positive (:func:`pimprune.pruning.methods.setting`).
    """
    for method, settings in settings_types().items():
        group = p.add_argument_group(f"--method {method}")
        hints = typing.get_type_hints(settings)
        for f in _option_fields(settings):
            default = field_default(settings, f.name)
            group.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=_dest(method, f.name),
                metavar=f.name.upper(),
                type=_arg_type(hints[f.name], f.metadata.get("positive", False)),
                default=default,
                help=f"{f.metadata.get('help', f.name)} (default {default})",
            )


def method_settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """Method name -> its settings, from the options of :func:`add_method_options`."""
    return {
        method: settings_from_options(
            settings, {f.name: getattr(args, _dest(method, f.name)) for f in _option_fields(settings)}
        )
        for method, settings in settings_types().items()
    }


def add_parser(sub) -> None:
    """Register ``prune``."""
    p = sub.add_parser("prune", help="prune a model to a crossbar budget", description=DESCRIPTION)
    add_model_args(p)
    add_data_args(p)
    add_run_args(p)
    add_optim_args(p, lr=0.1)
    add_options(p, PruneConfig, PRUNE_OPTIONS)
    add_options(p.add_argument_group("quantization-aware retraining"), QuantConfig, QUANT_OPTIONS)
    add_method_options(p)
    epochs = field_default(RunConfig, "epochs")
    p.add_argument(
        "--dense-epochs",
        type=nonneg_int,
        default=epochs,
        help=f"epochs of the dense baseline trained when no --dense is given (default {epochs})",
    )
    p.set_defaults(func=run)


def prune_config(args: argparse.Namespace) -> PruneConfig:
    """Build a :class:`pimprune.workflows.config.PruneConfig` from parsed arguments."""
    keep = tuple(k.strip() for k in args.keep_dense.split(",") if k.strip() and k.strip() != "none")
    return config_from_args(
        PruneConfig, args, keep_dense=keep, settings=method_settings_of(args), quant=config_from_args(QuantConfig, args)
    )


def run(args: argparse.Namespace) -> int:
    """Prune."""
    from pimprune.workflows.pipeline import run_prune

    prune = prune_config(args)
    run_prune(run_config(args, args.dense_epochs), prune)
    return 0
