"""What every pruning method shares: :class:`PruneMethod`, :class:`PruneSession`, the registry.

A method is built on a session (the model, the projector, the saliency and the
schedule) and its settings (a dataclass of its own, :attr:`PruneMethod.Settings`),
and the pipeline drives it without knowing which one runs. ``auto`` picks a method
by the epoch budget (:func:`resolve_method`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.pruning.masking import raw_parameters
from pimprune.pruning.projector import Projector
from pimprune.pruning.saliency import Saliency
from pimprune.registry import Registry

Tensors = dict[str, torch.Tensor]

#: The method name that picks one by the epoch budget.
AUTO = "auto"

#: ``auto``: ``(minimum pruning + retraining epochs, method)`` pairs; a budget takes the entry
#: of the largest measured budget not above it. One-shot won every measured budget (3, 6 and
#: 30 epochs, subrow 32x32 8x on Fashion-MNIST, ResNet18 width 0.25; docs/results.md).
AUTO_METHOD_BY_EPOCHS: tuple[tuple[int, str], ...] = ((0, "oneshot"),)


def auto_method(total_epochs: int, table: tuple[tuple[int, str], ...] | None = None) -> str:
    """The method that won the measured comparison for this epoch budget (docs/results.md)."""
    table = AUTO_METHOD_BY_EPOCHS if table is None else table
    method = table[0][1]
    for min_epochs, name in table:
        if total_epochs >= min_epochs:
            method = name
    return method


def setting(default: Any, help: str, *, positive: bool = False, option: bool = True) -> Any:
    """A field of a method's settings dataclass, with what the command line needs.

    Args:
        default: The default value (an int, float or str).
        help: Help text of its option (``--field-name``); `` (default ...)`` is appended.
        positive: The option accepts numbers > 0 only (integers >= 1).
        option: Whether it is a command-line option at all.
    """
    return dataclasses.field(default=default, metadata={"help": help, "positive": positive, "option": option})


@dataclass
class PruneSession:
    """What a pruning method works with.

    Attributes:
        model: The network being pruned (masks are applied to it).
        projector: Projects weights onto the target (already checked reachable).
        saliency: What the masks keep.
        factors_at: Saliency factors from the calibration batches of an epoch
            (the same on resume; ``{}`` for a saliency that reads no data).
        broadcast: Rank 0's copy of a dict of tensors (identity in one process).
        prune_epochs: Pruning epochs of the run.
        first_epoch: Index of the first pruning epoch (the dense epochs before it).
        steps_per_epoch: Optimizer steps per epoch.
        updates_per_epoch: Mask (gradual) or Z/U (ADMM) updates per epoch.
        target: The final target compression (the projector's at construction).
    """

    model: nn.Module
    projector: Projector
    saliency: Saliency
    factors_at: Callable[[int], Tensors]
    broadcast: Callable[[Tensors], Tensors]
    prune_epochs: int
    first_epoch: int
    steps_per_epoch: int
    updates_per_epoch: int
    target: float = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # the final target: the projector's own may be re-targeted on the way (gradual)
        self.target = self.projector.target.target_compression

    @property
    def every(self) -> int:
        """Optimizer steps between two mask (or Z/U) updates."""
        return max(1, self.steps_per_epoch // self.updates_per_epoch)

    def weights(self) -> Tensors:
        """The raw (unmasked) trainable weights the projector masks, detached."""
        return {n: p.detach() for n, p in raw_parameters(self.model, self.projector.params).items()}

    def project(self, weights: Mapping[str, torch.Tensor], factors: Mapping[str, torch.Tensor]) -> Tensors:
        """Masks of ``weights`` ranked by their saliency scores (rank 0's masks)."""
        return self.broadcast(self.projector(weights, self.saliency.scores(weights, factors)))


class PruneMethod(ABC):
    """A pruning method: set up before its pruning epochs, hooked into training, then the hard prune.

    Args:
        session: The model, projector, saliency and schedule.
        settings: An instance of :attr:`Settings` (None: its defaults).

    Attributes:
        name: Registry name; also the checkpoint stage of its pruning epochs.
        trains_while_pruning: Whether the method has pruning epochs of its own (else
            they are spent retraining after the hard prune).
        Settings: The dataclass of the method's settings (fields made with :func:`setting`),
            or None; ``PruneConfig`` and ``pimprune prune``'s options are derived from it.
    """

    name: ClassVar[str]
    trains_while_pruning: ClassVar[bool] = True
    Settings: ClassVar[type | None] = None

    def __init__(self, session: PruneSession, settings: Any = None) -> None:
        self.session = session
        self.settings = settings if settings is not None or self.Settings is None else self.Settings()
        self.factors: Tensors = {}

    def epochs(self, prune_epochs: int, retrain_epochs: int) -> tuple[int, int]:
        """``(pruning epochs, retraining epochs)`` this method trains for."""
        if self.trains_while_pruning:
            return prune_epochs, retrain_epochs
        return 0, prune_epochs + retrain_epochs

    def setup(self, resumed: Mapping[str, Any] | None) -> None:
        """Prepare the pruning epochs (only called when there are some).

        Args:
            resumed: The checkpoint state when resuming inside this method's epochs
                (the model and its masks are restored already), else None.
        """
        s = self.session
        # the saliency of the model entering the pruning epochs, kept (and checkpointed)
        # for every projection in them, so a resumed run projects with the same factors
        if resumed:  # read onto the CPU: to the devices of the parameters they scale
            dev = {n: w.device for n, w in s.weights().items()}
            self.factors = {n: f.to(dev.get(n, f.device)) for n, f in resumed["saliency_factors"].items()}
        else:
            self.factors = s.factors_at(s.first_epoch)

    def attach(self, optimizer: torch.optim.Optimizer) -> list:
        """Hook into the training step of the pruning epochs; returns the hook handles."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint of the pruning epochs holds for this method."""
        return {"saliency_factors": {k: v.detach().to("cpu", copy=True) for k, v in self.factors.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`state_dict` (from the whole checkpoint state)."""

    def rank_state(self) -> dict[str, Any] | None:
        """Tensors every rank must hold identically after the pruning epochs (a debug dump), or None."""
        return None

    def hard_prune(self) -> Tensors:
        """Final masks: the projection, at the final target, of the current weights.

        The scores are those of the model at the end of the pruning epochs (fresh
        saliency factors); every rank gets rank 0's masks.
        """
        s = self.session
        s.projector.retarget(s.target)
        return s.project(s.weights(), s.factors_at(s.first_epoch + s.prune_epochs))


#: Method name -> class.
PRUNE_METHODS: Registry[type[PruneMethod]] = Registry("pruning method")


def register_method(cls: type[PruneMethod]) -> type[PruneMethod]:
    """Class decorator: register a :class:`PruneMethod` under its :attr:`~PruneMethod.name`."""
    PRUNE_METHODS.add(cls.name, cls)
    return cls


def method_choices() -> tuple[str, ...]:
    """Names a user may give: ``auto`` and every registered method."""
    return (AUTO, *PRUNE_METHODS.names())


def resolve_method(name: str, total_epochs: int) -> str:
    """``name``, or for ``auto`` the method that won at ``total_epochs`` (raises on unknown names)."""
    if name == AUTO:
        return auto_method(total_epochs)
    PRUNE_METHODS.get(name)
    return name


def create_method(name: str, session: PruneSession, settings: Any = None) -> PruneMethod:
    """The method registered as ``name`` on ``session``, with ``settings`` (None: its defaults)."""
    return PRUNE_METHODS.get(name)(session, settings)


def settings_types() -> dict[str, type]:
    """Method name -> its settings dataclass, for every registered method that has one."""
    classes = {name: PRUNE_METHODS.get(name).Settings for name in PRUNE_METHODS.names()}
    return {name: cls for name, cls in classes.items() if cls is not None}


def settings_from_options(cls: type, values: Mapping[str, Any]) -> Any:
    """A settings instance from option values: ``cls.from_options`` if it has one, else ``cls(**values)``."""
    return getattr(cls, "from_options", cls)(**values)


def method_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of every registered method: ``given`` ones (instances or dicts), defaults for the rest.

    Raises:
        ConfigError: for settings of an unknown method or of the wrong kind.
    """
    types = settings_types()
    unknown = [name for name in given if name not in types]
    if unknown:
        raise ConfigError(
            f"settings for unknown method(s) {', '.join(unknown)}; methods with settings: {', '.join(types)}"
        )
    out = {}
    for name, cls in types.items():
        value = given.get(name, cls())
        if isinstance(value, Mapping):
            value = cls(**value)
        if not isinstance(value, cls):
            raise ConfigError(f"settings of method {name!r} must be a {cls.__name__}, got {type(value).__name__}")
        out[name] = value
    return out
