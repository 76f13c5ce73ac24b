"""Pruning methods as registered objects: one-shot, gradual and ADMM.

Every method implements :class:`PruneMethod`: it is built on a
:class:`PruneSession` (the model, the :class:`~pimprune.pruning.budgets.Projector`,
the saliency and the schedule), gets its training epochs from
:meth:`PruneMethod.epochs`, is set up before its pruning epochs, hooks into the
training step through the optimizer (:meth:`PruneMethod.attach`), owns its
checkpoint state (:meth:`PruneMethod.state_dict`) and ends with the hard prune
(:meth:`PruneMethod.hard_prune`). The pipeline does not know which method runs.

``oneshot``
    No pruning epochs: project once, then retrain with masks for the pruning
    and retraining epochs.
``gradual``
    The target compression ramps up along a cubic schedule (Zhu & Gupta 2017)
    during the pruning epochs; masks are re-projected every few optimizer steps
    (the projector is re-targeted, not rebuilt).
``admm``
    ADMM epochs (:mod:`pimprune.pruning.admm`): the Z-step projects ``W + U`` in
    the saliency-weighted norm.

Adding a method: a subclass registered in :data:`PRUNE_METHODS` in a module of its
own, imported at the end of this one.

Every method gets the same number of epochs (pruning + retraining), so they
compare at equal cost. ``auto`` picks by the epoch budget (:func:`resolve_method`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from pimprune.pruning.admm import ADMM, ADMMConfig
from pimprune.pruning.budgets import Projector
from pimprune.pruning.masking import apply_masks, raw_parameters
from pimprune.pruning.saliency import Saliency
from pimprune.registry import Registry

Tensors = dict[str, torch.Tensor]

#: The method name that picks one by the epoch budget.
AUTO = "auto"

#: ``auto``: ``(minimum pruning + retraining epochs, method)`` pairs. Each entry is
#: the method that won the measured comparison at that epoch budget (docs/results.md:
#: subrow, 32x32, 8x, Fashion-MNIST, ResNet18 width 0.25, auto saliency); a budget takes
#: the entry of the largest measured budget not above it. One-shot won at 3 and 6 epochs
#: (ADMM and gradual pruning lost 0.06-0.5 point; with magnitude saliency gradual had won at 3)
#: and at 30 epochs with distillation (subrow-channel 16x: validation 92.78% one-shot, 92.20%
#: gradual 15+15; docs/results.md, 2026-12-01), so ``auto`` is one-shot at every budget.
AUTO_METHOD_BY_EPOCHS: tuple[tuple[int, str], ...] = ((0, "oneshot"),)


def auto_method(total_epochs: int, table: tuple[tuple[int, str], ...] | None = None) -> str:
    """The method that won the measured comparison for this epoch budget (docs/results.md)."""
    table = AUTO_METHOD_BY_EPOCHS if table is None else table
    method = table[0][1]
    for min_epochs, name in table:
        if total_epochs >= min_epochs:
            method = name
    return method


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
        admm: ADMM hyper-parameters (``update_every`` is derived here).
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
    admm: ADMMConfig = dataclasses.field(default_factory=ADMMConfig)
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
    """A pruning method (see the module docstring).

    Args:
        session: The model, projector, saliency and schedule.

    Attributes:
        name: Registry name; also the checkpoint stage of its pruning epochs.
        trains_while_pruning: Whether the method has pruning epochs of its own (else
            they are spent retraining after the hard prune).
    """

    name: ClassVar[str]
    trains_while_pruning: ClassVar[bool] = True

    def __init__(self, session: PruneSession) -> None:
        self.session = session
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


def method_choices() -> tuple[str, ...]:
    """Names a user may give: ``auto`` and every registered method."""
    return (AUTO, *PRUNE_METHODS.names())


def resolve_method(name: str, total_epochs: int) -> str:
    """``name``, or for ``auto`` the method that won at ``total_epochs`` (raises on unknown names)."""
    if name == AUTO:
        return auto_method(total_epochs)
    PRUNE_METHODS.get(name)
    return name


def create_method(name: str, session: PruneSession) -> PruneMethod:
    """The method registered as ``name`` on ``session``."""
    return PRUNE_METHODS.get(name)(session)


@PRUNE_METHODS.register("oneshot")
class OneShot(PruneMethod):
    """Project once, retrain with masks for every epoch."""

    name = "oneshot"
    trains_while_pruning = False


def gradual_target(target: float, t: float) -> float:
    """Compression after fraction ``t`` of the pruning epochs (cubic kept-fraction ramp)."""
    keep_final = 1.0 / target
    keep = keep_final + (1.0 - keep_final) * (1.0 - min(max(t, 0.0), 1.0)) ** 3
    return 1.0 / keep


@PRUNE_METHODS.register("gradual")
class Gradual(PruneMethod):
    """Re-projects masks every few steps with a shrinking budget (rank 0's masks win)."""

    name = "gradual"

    def __init__(self, session: PruneSession) -> None:
        super().__init__(session)
        self.steps = 0
        self.total = max(session.prune_epochs * session.steps_per_epoch, 1)

    def setup(self, resumed: Mapping[str, Any] | None) -> None:  # noqa: D102
        super().setup(resumed)
        if resumed is None:  # all-true masks, so that updates only replace them
            ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in self.session.weights().items()}
            apply_masks(self.session.model, ones)

    def update(self) -> None:
        """Project the current weights onto the budget of the current step."""
        s = self.session
        s.projector.retarget(gradual_target(s.target, self.steps / self.total))
        apply_masks(s.model, s.project(s.weights(), self.factors))

    def attach(self, optimizer: torch.optim.Optimizer) -> list:
        """Count optimizer steps and update the masks every ``every`` of them."""
        every = self.session.every

        def post(_o, _a, _k):
            self.steps += 1
            if self.steps % every == 0:
                self.update()

        return [optimizer.register_step_post_hook(post)]

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {**super().state_dict(), "gradual_steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: D102
        self.steps = int(state["gradual_steps"])


@PRUNE_METHODS.register("admm")
class AdmmMethod(PruneMethod):
    """ADMM epochs, then the hard prune to the projection."""

    name = "admm"

    def setup(self, resumed: Mapping[str, Any] | None) -> None:  # noqa: D102
        super().setup(resumed)
        s = self.session
        config = dataclasses.replace(s.admm, update_every=s.every)
        total_updates = max(1, s.prune_epochs * s.steps_per_epoch // s.every)
        # Z-step in the saliency-weighted norm: the mask keeps the units of most w^2 s^2
        # (the same allocation as the final hard prune), Z keeps the values of W + U
        self.admm = ADMM(
            s.model,
            lambda v: s.projector(v, s.saliency.scores(v, self.factors)),
            s.projector.params,
            config,
            total_updates,
        )

    def attach(self, optimizer: torch.optim.Optimizer) -> list:  # noqa: D102
        return self.admm.attach(optimizer)

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"admm": self.admm.state_dict(), **super().state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: D102
        self.admm.load_state_dict(state["admm"])

    def rank_state(self) -> dict[str, Any] | None:  # noqa: D102
        return self.admm.state_dict()
