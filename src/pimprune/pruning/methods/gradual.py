"""``gradual``: the target compression ramps up along a cubic schedule (Zhu & Gupta 2017).

During the pruning epochs the masks are re-projected every ``PruneSession.every``
optimizer steps at the compression of the current step (the projector is
re-targeted, not rebuilt); rank 0's masks win.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pimprune.pruning.masking import apply_masks
from pimprune.pruning.methods.base import PruneMethod, PruneSession, register_method


def gradual_target(target: float, t: float) -> float:
    """Compression after fraction ``t`` of the pruning epochs (cubic kept-fraction ramp)."""
    keep_final = 1.0 / target
    keep = keep_final + (1.0 - keep_final) * (1.0 - min(max(t, 0.0), 1.0)) ** 3
    return 1.0 / keep


@register_method
class Gradual(PruneMethod):
    """Re-projects masks every few steps with a shrinking budget (rank 0's masks win)."""

    name = "gradual"

    def __init__(self, session: PruneSession, settings: Any = None) -> None:
        super().__init__(session, settings)
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
