"""Pruning methods as registered objects: ``oneshot``, ``gradual`` and ``admm``.

A method is one module here (a :class:`PruneMethod` subclass decorated with
:func:`register_method`, with its settings dataclass if it has settings) plus its
name in the import line below, which registers it; ``PruneConfig`` and
``pimprune prune``'s ``--method`` choices and options pick it up. Every method gets
the same number of epochs (pruning + retraining), so they compare at equal cost.
"""

from pimprune.pruning.methods import admm, gradual, oneshot  # noqa: F401 - registers the methods
from pimprune.pruning.methods.base import (
    AUTO,
    AUTO_METHOD_BY_EPOCHS,
    PRUNE_METHODS,
    PruneMethod,
    PruneSession,
    auto_method,
    create_method,
    method_choices,
    method_settings,
    register_method,
    resolve_method,
    setting,
    settings_from_options,
    settings_types,
)

__all__ = [
    "AUTO",
    "AUTO_METHOD_BY_EPOCHS",
    "PRUNE_METHODS",
    "PruneMethod",
    "PruneSession",
    "auto_method",
    "create_method",
    "method_choices",
    "method_settings",
    "register_method",
    "resolve_method",
    "setting",
    "settings_from_options",
    "settings_types",
]
