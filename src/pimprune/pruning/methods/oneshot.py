"""``oneshot``: project once, then retrain with masks for the pruning and retraining epochs."""

from __future__ import annotations

from pimprune.pruning.methods.base import PruneMethod, register_method


@register_method
class OneShot(PruneMethod):
    """Project once, retrain with masks for every epoch."""

    name = "oneshot"
    trains_while_pruning = False
