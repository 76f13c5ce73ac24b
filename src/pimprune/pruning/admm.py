"""ADMM for crossbar-aligned pruning (Zhang et al., ECCV 2018, structured variants).

``min loss(W) s.t. W in S`` is split into ``W`` and ``Z in S`` with scaled dual ``U``:
each step minimises ``loss(W) + (rho/2) ||W - Z + U||^2``, and every ``update_every``
steps ``Z <- Proj_S(W + U)`` (the pattern's projection), ``U <- U + W - Z`` and rho
grows towards ``rho_final``. :meth:`ADMM.attach` applies the penalty on the optimizer
side (its closed-form gradient in a step pre-hook, the Z/U updates in a post-hook),
so a training loop needs no change; :meth:`ADMM.penalty` is the same term as a loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from pimprune.errors import ConfigError
from pimprune.pruning.masking import raw_parameter

Projection = Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class ADMMConfig:
    """ADMM hyper-parameters (also the settings of the ``admm`` pruning method).

    Attributes:
        rho: Initial penalty weight (1 / weight units squared; dimensionless
            relative to the loss).
        rho_final: Penalty weight reached by the last Z-update (geometric ramp).
        update_every: Optimizer steps between Z/U updates (the ``admm`` method derives
            it from its updates per epoch: not an option).
    """

    rho: float = field(default=1e-3, metadata={"help": "initial ADMM penalty", "positive": True})
    rho_final: float = field(default=1e-1, metadata={"help": "final ADMM penalty", "positive": True})
    update_every: int = field(default=100, metadata={"option": False})

    def __post_init__(self) -> None:
        if not (self.rho > 0 and self.rho_final >= self.rho):
            raise ConfigError(
                f"ADMM rho must be > 0 and rho_final >= rho, got {self.rho} and {self.rho_final}"
            )
        if self.update_every < 1:
            raise ConfigError(f"ADMM update_every must be >= 1 step, got {self.update_every}")

    @classmethod
    def from_options(cls, **values: float) -> ADMMConfig:
        """The settings of command-line options: a final penalty below the initial one is raised to it."""
        if "rho" in values and "rho_final" in values:
            values["rho_final"] = max(values["rho_final"], values["rho"])
        return cls(**values)


class ADMM:
    """ADMM state (Z, U, rho) for the parameters a projection constrains.

    Args:
        model: The model being trained (masked parameters are handled).
        projection: Callable mapping ``{param name: tensor}`` to boolean masks for
            the same names (e.g. :class:`pimprune.pruning.projector.Projector`).
        names: Parameter names to constrain.
        config: Hyper-parameters.
        total_updates: Planned number of Z-updates, for the rho ramp.
    """

    def __init__(
        self,
        model: nn.Module,
        projection: Projection,
        names: list[str],
        config: ADMMConfig,
        total_updates: int = 1,
    ) -> None:
        self.model = model
        self.projection = projection
        self.names = list(names)
        self.config = config
        self.rho = config.rho
        self.growth = (config.rho_final / config.rho) ** (1.0 / max(total_updates - 1, 1))
        self.steps = 0
        self.updates = 0
        self.masks: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            w = self._weights()
            self.masks = {k: v.bool() for k, v in self.projection(w).items()}
            self.Z = {n: (w[n] * self.masks[n]).clone() for n in self.names}
            self.U = {n: torch.zeros_like(w[n]) for n in self.names}
        self._sync()

    def _weights(self) -> dict[str, torch.Tensor]:
        return {n: raw_parameter(self.model, n) for n in self.names}

    def penalty(self) -> torch.Tensor:
        """``sum (rho/2) ||W - Z + U||^2`` as a differentiable loss term."""
        w = self._weights()
        total = sum(((w[n] - self.Z[n] + self.U[n]) ** 2).sum() for n in self.names)
        return 0.5 * self.rho * total

    @torch.no_grad()
    def add_penalty_grad(self) -> None:
        """Add the penalty's gradient ``rho (W - Z + U)`` to every constrained parameter."""
        for n, p in self._weights().items():
            g = self.rho * (p - self.Z[n] + self.U[n])
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)

    @torch.no_grad()
    def update(self) -> None:
        """One Z-step (projection of W + U) and dual update; then grow rho."""
        w = self._weights()
        v = {n: w[n] + self.U[n] for n in self.names}
        self.masks = {k: m.bool() for k, m in self.projection(v).items()}
        for n in self.names:
            self.Z[n] = v[n] * self.masks[n]
            self.U[n] = v[n] - self.Z[n]  # = U + W - Z
        self._sync()
        self.updates += 1
        self.rho = min(self.rho * self.growth, self.config.rho_final)

    def _sync(self) -> None:
        """Make Z, U and masks bit-identical on every rank (rank 0's copy wins)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for n in self.names:
                dist.broadcast(self.Z[n], 0)
                dist.broadcast(self.U[n], 0)
                m = self.masks[n].to(torch.uint8)
                dist.broadcast(m, 0)
                self.masks[n] = m.bool()

    @torch.no_grad()
    def primal_residual(self) -> float:
        """``sqrt(sum ||W - Z||^2) / sqrt(sum ||W||^2)``: how far W is from the constraint."""
        w = self._weights()
        num = sum(float(((w[n] - self.Z[n]) ** 2).sum()) for n in self.names)
        den = sum(float((w[n] ** 2).sum()) for n in self.names) or 1.0
        return (num / den) ** 0.5

    def attach(self, optimizer: torch.optim.Optimizer) -> list:
        """Hook into ``optimizer``: penalty gradient before each step, Z/U updates after.

        Returns:
            The hook handles (call ``.remove()`` on each to detach).
        """

        def pre(_opt, _args, _kwargs):
            self.add_penalty_grad()

        def post(_opt, _args, _kwargs):
            self.steps += 1
            if self.steps % self.config.update_every == 0:
                self.update()

        return [optimizer.register_step_pre_hook(pre), optimizer.register_step_post_hook(post)]

    def state_dict(self) -> dict:
        """Tensors and counters for checkpoints (loads with ``weights_only=True``)."""
        return {
            "Z": {n: t.clone() for n, t in self.Z.items()},
            "U": {n: t.clone() for n, t in self.U.items()},
            "masks": {n: t.clone() for n, t in self.masks.items()},
            "rho": self.rho,
            "steps": self.steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict`."""
        # a checkpoint is read onto the CPU: every tensor goes to its parameter's device (e.g. a GPU)
        dev = {n: w.device for n, w in self._weights().items()}
        self.Z = {n: t.to(dev.get(n, t.device), copy=True) for n, t in state["Z"].items()}
        self.U = {n: t.to(dev.get(n, t.device), copy=True) for n, t in state["U"].items()}
        self.masks = {n: t.to(dev.get(n, t.device), torch.bool, copy=True) for n, t in state["masks"].items()}
        self.rho = float(state["rho"])
        self.steps = int(state["steps"])
        self.updates = int(state["updates"])
