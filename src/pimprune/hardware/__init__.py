"""Hardware: the crossbar accelerator model (configuration, presets), its costing and the design-space sweep.

The configuration and presets live in :mod:`pimprune.hardware.model` and are re-exported here.
"""

from pimprune.hardware.model import *  # noqa: F403
from pimprune.hardware.model import __all__  # noqa: F401
