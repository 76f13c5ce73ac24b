"""ADMM for crossbar-aligned pruning (Zhang et al., ECCV 2018, structured variants).

The constrained problem ``min loss(W) s.t. W in S`` (``S``: the weights a
pattern's projection can produce within the crossbar budget) is split into
``W`` and an auxiliary ``Z in S`` with scaled dual ``U``. Each training step
minimises the augmented loss

    loss(W) + sum_l (rho / 2) * ||W_l - Z_l + U_l||^2

and every ``update_every`` steps

    Z <- Proj_S(W + U)          (the pattern's projection: the Z-step)
    U <- U + W - Z              (the dual update)
    rho <- rho * growth          (up to ``rho_final``)

The penalty is applied on the optimizer side: :meth:`ADMM.attach` registers a
step pre-hook that adds ``rho * (W - Z + U)`` (the closed-form gradient of the
penalty) to each parameter's gradient, and a post-hook that runs the Z/U
updates, so a user's own training loop needs no change. :meth:`ADMM.penalty`
gives the same term as a loss for loops that prefer it (do not use both).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from pimprune.errors import ConfigError
from pimprune.pruning.masking import raw_parameter

Projection = Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class ADMMConfig:
    """ADMM hyper-parameters.

    Attributes:
        rho: Initial penalty weight (1 / weight units squared; dimensionless
            relative to the loss).
        rho_final: Penalty weight reached by the last Z-update (geometric ramp).
        update_every: Optimizer steps between Z/U updates.
    """

    rho: float = 1e-3
    rho_final: float = 1e-1
    update_every: int = 100

    def __post_init__(self) -> None:
        if not (self.rho > 0 and self.rho_final >= self.rho):
            raise ConfigError(
                f"ADMM rho must be > 0 and rho_final >= rho, got {self.rho} and {self.rho_final}"
            )
        if self.update_every < 1:
            raise ConfigError(f"ADMM update_every must be >= 1 step, got {self.update_every}")


class ADMM:
    """ADMM state (Z, U, rho) for the parameters a projection constrains.

    Args:
        model: The model being trained (masked parameters are handled).
        projection: Callable mapping ``{param name: tensor}`` to boolean masks for
            the same names (e.g. :class:`pimprune.pruning.budgets.Projector`).
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
