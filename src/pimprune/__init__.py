"""pimprune: crossbar-aligned pruning for processing-in-memory accelerators.

PIM-Prune (Chu et al., DAC 2020) prunes convolutional networks at a
granularity aligned with the crossbar (sub-rows and sub-columns), compacts the
surviving segments into fewer crossbars and explores the crossbar geometry
with an energy/area model. See ``docs/`` and the README.

The package is grouped by concept (``docs/design.md`` has the map):
``mapping`` (matrices, counting, packing, simulator), ``pruning`` (patterns,
budgets, saliency, dependency, masking, ADMM, methods), ``hardware`` (model,
cost, sweep), ``training`` (data, models, loops, checkpoints, runtime),
``workflows`` (pipeline, demo, sweep), ``reporting`` and ``cli``.
"""

__version__ = "0.2.0"

from pimprune.errors import PimpruneError
from pimprune.geometry import Crossbar

__all__ = ["__version__", "Crossbar", "PimpruneError"]
