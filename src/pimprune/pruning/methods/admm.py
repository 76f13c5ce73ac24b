"""``admm``: ADMM epochs (:mod:`pimprune.pruning.admm`), then the hard prune to the projection.

The Z-step projects ``W + U`` in the saliency-weighted norm (the same allocation as
the final hard prune). Its settings are :class:`pimprune.pruning.admm.ADMMConfig`;
``update_every`` is derived from the session's updates per epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from pimprune.pruning.admm import ADMM, ADMMConfig
from pimprune.pruning.methods.base import PruneMethod, register_method


@register_method
class AdmmMethod(PruneMethod):
    """ADMM epochs, then the hard prune to the projection."""

    name = "admm"
    Settings = ADMMConfig

    def setup(self, resumed: Mapping[str, Any] | None) -> None:  # noqa: D102
        super().setup(resumed)
        s = self.session
        config = dataclasses.replace(self.settings, update_every=s.every)
        total_updates = max(1, s.prune_epochs * s.steps_per_epoch // s.every)
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
