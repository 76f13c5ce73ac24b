"""Hardware: the crossbar accelerator's configuration (:mod:`pimprune.hardware.config`) and its costing."""
