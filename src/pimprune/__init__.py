"""pimprune: crossbar-aligned pruning for processing-in-memory accelerators.

PIM-Prune (Chu et al., DAC 2020) prunes convolutional networks at a
granularity aligned with the crossbar (sub-rows and sub-columns), compacts the
surviving segments into fewer crossbars and explores the crossbar geometry
with an energy/area model. See ``docs/`` and the README.

The package is grouped by concept (``docs/design.md`` has the map):
``mapping`` (matrices, counting, packing, simulator), ``pruning`` (patterns,
budgets, saliency, dependency, masking, ADMM, methods), ``hardware`` (model,
cost, sweep), ``training`` (data, models, loops, checkpoints, runtime),
``reporting`` and ``cli``. The flat module paths of earlier versions
(``pimprune.counting``, ``pimprune.budgets``, ...) still import, as aliases.
"""

__version__ = "0.2.0"

import importlib
import importlib.abc
import importlib.util
import sys

from pimprune.errors import PimpruneError
from pimprune.geometry import Crossbar

__all__ = ["__version__", "Crossbar", "PimpruneError"]

#: Earlier flat module paths -> where the module lives now.
MOVED_MODULES = {
    "matrices": "mapping.matrices",
    "counting": "mapping.counting",
    "packing": "mapping.packing",
    "simulate": "mapping.simulate",
    "patterns": "pruning.patterns",
    "budgets": "pruning.budgets",
    "saliency": "pruning.saliency",
    "dependency": "pruning.dependency",
    "masking": "pruning.masking",
    "admm": "pruning.admm",
    "cost": "hardware.cost",
    "sweep": "hardware.sweep",
    "data": "training.data",
    "models": "training.models",
    "checkpoint": "training.checkpoint",
    "runtime": "training.runtime",
    "report": "reporting.report",
    "plotting": "reporting.plotting",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``pimprune.<old>`` as the module at its new path (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        head, _, tail = fullname.partition(".")
        if head != __name__ or tail not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):  # noqa: D102
        return None

    def exec_module(self, module):  # noqa: D102
        # the import system returns what sys.modules holds under the name once this returns
        new = MOVED_MODULES[module.__name__.partition(".")[2]]
        sys.modules[module.__name__] = importlib.import_module(f"{__name__}.{new}")


sys.meta_path.append(_MovedModuleFinder())
