"""pimprune: crossbar-aligned pruning for processing-in-memory accelerators.

PIM-Prune (Chu et al., DAC 2020) prunes convolutional networks at a
granularity aligned with the crossbar (sub-rows and sub-columns), compacts the
surviving segments into fewer crossbars and explores the crossbar geometry
with an energy/area model. See ``docs/`` and the README.
"""

__version__ = "0.1.0"

from pimprune.errors import PimpruneError
from pimprune.geometry import Crossbar

__all__ = ["__version__", "Crossbar", "PimpruneError"]
