"""The settings of a run: :class:`RunConfig` (model, data, training) and :class:`PruneConfig`.

Both are checked when built, so a wrong value is a one-line :class:`ConfigError`
before anything runs. The command line takes its defaults and choices from here
and from the registries (patterns, pruning methods, saliencies).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.numeric import check_target_compression
from pimprune.pruning.methods import method_choices, method_settings
from pimprune.pruning.patterns import PATTERNS
from pimprune.pruning.quantization import QuantConfig
from pimprune.pruning.saliency import resolve_saliency
from pimprune.training.loops import Execution, OptimConfig

T = TypeVar("T")

#: RunConfig fields that may change between a run and its resumption.
FREE_ON_RESUME = ("resume", "device", "out", "data_dir")


@dataclass
class RunConfig:
    """Model, data and run settings shared by train and prune.

    Attributes:
        model: Model name (see ``pimprune.training.models``).
        width: Channel width multiplier.
        stem_stride: Stride of the first conv (None: the model's default).
        dataset: Dataset name (see ``pimprune.training.datasets``).
        data_dir: Folder of the dataset files (None: the default search).
        batch_size: Mini-batch size per process (samples).
        augment: Random crop + flip on training batches.
        limit_train: Use only the first N training images (None: all).
        limit_test: Use only the first N test images (None: all).
        validation: Training images held out for validation (a fixed split, see
            :func:`pimprune.training.datasets.validation_split`; 0: none). With a validation split,
            per-epoch accuracy is measured on it and the test split only once at the end.
        seed: Random seed of everything.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        out: Output folder.
        resume: Continue the run saved in ``out``.
        epochs: Dense training epochs (train) / dense baseline epochs (prune, when no
            dense checkpoint is given).
        optim: Optimizer of dense training.
        eval_each_epoch: Evaluate on the test split after every epoch (else only
            at the end of each run; saves time in benchmarks and the demo).
        execution: Mixed precision and memory format of the training and
            evaluation steps (:class:`pimprune.training.loops.Execution`).
    """

    model: str = "resnet18"
    width: float = 1.0
    stem_stride: int | None = None
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    batch_size: int = 128
    augment: bool = True
    limit_train: int | None = None
    limit_test: int | None = None
    validation: int = 0
    seed: int = 0
    device: str = "auto"
    out: str = "runs/out"
    resume: bool = False
    epochs: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval_each_epoch: bool = True
    execution: Execution = field(default_factory=Execution)

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 0, 100_000)
        _check_int("batch size", self.batch_size, 1, 1 << 20)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("validation", self.validation, 0, 1 << 40)
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            if v is not None:
                _check_int(name.replace("_", "-"), v, 1, 1 << 40)
        w = self.width
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and 0 < w <= 8):
            raise ConfigError(f"width must be a number in (0, 8], got {w}")
        if self.stem_stride is not None:
            _check_int("stem stride", self.stem_stride, 1, 64)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model name is empty; pass e.g. --model resnet18")
        if not isinstance(self.out, str):
            raise ConfigError(f"output folder must be a path, got {self.out!r}")


@dataclass
class PruneConfig:
    """What to prune and how.

    The defaults are the measured best recipe (docs/results.md: one-shot, distillation
    0.9, 30 epochs at lr 0.01; gradual pruning and ADMM split them 15 + 15).

    Attributes:
        pattern: Sparsity pattern (see ``pimprune.pruning.patterns``).
        crossbar: Crossbar geometry ``RxC``.
        target_compression: Network-wide target: dense crossbars / pruned crossbars.
        allocation: ``global``, ``uniform`` or ``file`` (per-layer YAML budgets).
        budgets_file: YAML file of per-layer budgets for ``allocation="file"``.
        keep_dense: Layers left dense: ``first`` (first conv), ``last`` (classifier) or names.
        method: ``auto`` or a registered method (``admm``, ``oneshot``, ``gradual``, ...).
        dense: Dense checkpoint (``model.pt`` with ``model.json``); None trains one.
        prune_epochs: ADMM / gradual epochs (one-shot retrains for them instead).
        retrain_epochs: Masked retraining epochs.
        prune_lr: Learning rate of the pruning epochs.
        retrain_lr: Learning rate of masked retraining.
        settings: Method name -> its settings (an instance of the method's
            :attr:`~pimprune.pruning.methods.PruneMethod.Settings`, or a dict of its fields),
            for every registered method that has settings; missing ones get their defaults.
            :func:`config_dict` writes each under the method's name (``"admm": {"rho": ...}``).
        updates_per_epoch: Z/U updates (ADMM) or mask updates (gradual) per epoch.
        bn_recalibrate: Training batches used to re-estimate the batch-norm
            statistics right after hard pruning (0: keep the dense statistics). The
            pruned network's activations differ from the dense one's, and stale
            statistics can drop a briefly retrained model to chance accuracy.
        saliency: What the masks keep (:mod:`pimprune.pruning.saliency`): ``auto`` (the
            measured best for the pattern), ``magnitude``, ``activation`` or ``fisher``.
            Used by one-shot and gradual pruning and by ADMM (its Z-steps project
            in the saliency-weighted norm, and the final hard prune).
        saliency_batches: Training batches read to compute a data-driven saliency.
        distill: Knowledge distillation from the dense model during the pruning and
            retraining epochs: weight of the distillation term in [0, 1] (0: off).
        distill_temperature: Distillation temperature.
        packing: How the crossbar budget is counted: ``layer`` (the paper's per-layer
            mapping) or ``network`` (crossbars shared across layers; ``subrow`` only).
        guard: What the global allocation keeps whatever the budget: ``layer`` (a unit
            per layer) or ``outputs`` (a unit per output group, so no output is silenced;
            :attr:`pimprune.pruning.target.PruneTarget.guard`).
        objective: What the global allocation's budget counts: ``crossbars``, or the
            hardware model's ``energy`` or ``edp`` per crossbar of each layer
            (:mod:`pimprune.hardware.objective`); the target is then dense / pruned objective.
        hardware: Hardware preset or YAML/JSON file for the ``energy``/``edp`` objective and
            the energy figures of the result.
        quant: Quantization-aware retraining (:class:`pimprune.pruning.quantization.QuantConfig`):
            the weight and input bits the retraining learns for and the device noise it injects;
            the weight bits also set the result's physical arrays and hardware cost.
    """

    pattern: str = "subrow"
    crossbar: str = "32x32"
    target_compression: float = 8.0
    allocation: str = "global"
    budgets_file: str | None = None
    keep_dense: tuple[str, ...] = ("first", "last")
    method: str = "auto"
    dense: str | None = None
    prune_epochs: int = 15
    retrain_epochs: int = 15
    prune_lr: float = 0.01
    retrain_lr: float = 0.01
    settings: dict[str, Any] = field(default_factory=dict, metadata={"flatten": True})
    updates_per_epoch: int = 4
    bn_recalibrate: int = 50
    saliency: str = "auto"
    saliency_batches: int = 16
    distill: float = 0.9
    distill_temperature: float = 4.0
    packing: str = "layer"
    guard: str = "layer"
    objective: str = "crossbars"
    hardware: str = "isaac"
    quant: QuantConfig = field(default_factory=QuantConfig)

    def __post_init__(self) -> None:
        if isinstance(self.quant, dict):
            self.quant = QuantConfig(**self.quant)
        if not isinstance(self.quant, QuantConfig):
            raise ConfigError(f"quant must be a QuantConfig or a dict of its fields, got {self.quant!r}")
        PATTERNS.get(self.pattern)
        self.settings = method_settings(self.settings)
        clash = sorted(set(self.settings) & {f.name for f in dataclasses.fields(self)})
        if clash:
            raise ConfigError(f"a pruning method may not be named like a PruneConfig field: {', '.join(clash)}")
        resolve_saliency(self.saliency, self.pattern)
        Crossbar.parse(self.crossbar)
        if self.method not in method_choices():
            raise ConfigError(f"unknown method {self.method!r}; choose one of: {', '.join(method_choices())}")
        check_target_compression(self.target_compression)
        _check_int("prune epochs", self.prune_epochs, 0, 100_000)
        _check_int("retrain epochs", self.retrain_epochs, 0, 100_000)
        _check_int("updates per epoch", self.updates_per_epoch, 1, 100_000)
        _check_int("bn recalibrate batches", self.bn_recalibrate, 0, 1_000_000)
        _check_int("saliency batches", self.saliency_batches, 1, 1_000_000)
        if isinstance(self.distill, bool) or not (isinstance(self.distill, (int, float)) and 0 <= self.distill <= 1):
            raise ConfigError(f"distillation weight must be in [0, 1], got {self.distill}")
        if not (math.isfinite(self.distill_temperature) and 0 < self.distill_temperature <= 100):
            raise ConfigError(f"distillation temperature must be in (0, 100], got {self.distill_temperature}")
        from pimprune.hardware.objective import OBJECTIVES

        OBJECTIVES.get(self.objective)
        for name in ("prune_lr", "retrain_lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 < v <= 10):
                raise ConfigError(f"{name.replace('_', ' ')} must be in (0, 10], got {v}")


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def config_dict(obj: Any) -> dict:
    """A dataclass config as plain JSON data (tuples become lists).

    A field with ``metadata={"flatten": True}`` (a dict, e.g. :attr:`PruneConfig.settings`)
    is written as its items, in its place.
    """
    flat = {f.name for f in dataclasses.fields(obj) if f.metadata.get("flatten")}
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(obj).items():
        if key in flat:
            out.update(value)
        else:
            out[key] = value
    return json.loads(json.dumps(out))


def run_identity(run: RunConfig) -> dict:
    """The settings of ``run`` a resumed run must share (all but :data:`FREE_ON_RESUME`)."""
    d = config_dict(run)
    for key in FREE_ON_RESUME:
        d.pop(key, None)
    return d


def from_fields(cls: type[T], source: Any, **overrides: Any) -> T:
    """A dataclass ``cls`` from the attributes of ``source`` named like its fields, and ``overrides``.

    Fields ``source`` lacks keep their defaults: configs and the options, settings or
    other configs they are built from share their names, and the defaults live in one place.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    given = {n: getattr(source, n) for n in names if hasattr(source, n)}
    return cls(**{**given, **overrides})
