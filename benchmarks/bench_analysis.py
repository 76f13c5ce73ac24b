"""Wall time of crossbar counting (``pimprune map``) and of the design-space sweep.

For each model (torchvision-shaped ResNet18 / ResNet50 at 224 px, fresh
weights) over the 25 geometries of the default grid (rows and columns in
32, 64, 128, 256, 512) it times, as the median of ``--repeats`` runs:

- ``map_dense``: counting the unpruned network on every geometry (shapes only,
  what ``pimprune map MODEL`` does);
- ``map_all_schemes``: counting a pruned network under every scheme on every
  geometry (what ``pimprune map CHECKPOINT`` does for a pruned model);
- ``sweep``: ``pimprune sweep MODEL`` in projection mode (subrow, keep 90% of
  the weight energy): per geometry the projection, the bisection over the
  budget, the packing statistics and the cost model; plus the share of that
  time spent in each stage (from one profiled run).

Usage::

    python benchmarks/bench_analysis.py [--models resnet18,resnet50] [--repeats 3]
        [--threads 2] [--json OUT]

Prints one JSON object (and writes it to ``--json``). The machine is often
shared: the median of several runs and the CPU time are reported together.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
from collections.abc import Callable
from typing import Any

import torch
from harness import json_main, time_call

from pimprune.geometry import grid
from pimprune.hardware.config import load_preset
from pimprune.mapping.counting import SCHEMES, count_geometries
from pimprune.mapping.matrices import extract_layers
from pimprune.workflows.sweep import ProjectionPruner, load_sweep_model, run_sweep

SIDES = [32, 64, 128, 256, 512]

#: Stage name -> function names (``file:function``) whose cumulative time it is.
STAGES = {
    "projection_units": ("patterns.py", "units"),
    "projection_masks": ("patterns.py", "mask"),
    "budget_bisection": ("sweep.py", "_bisect_budget"),
    "packing_stats": ("packing.py", "crossbar_stats"),
    "forward_mvm_count": ("cost.py", "layer_mvms"),
}


def _stage_shares(fn: Callable[[], Any]) -> dict[str, float]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = max(v[3] for v in stats.values())
    out = {}
    for stage, (file, func) in STAGES.items():
        cum = sum(v[3] for (f, _line, name), v in stats.items() if f.endswith(file) and name == func)
        out[stage] = round(cum / total, 3)
    return out


def bench_model(name: str, repeats: int) -> dict[str, Any]:
    """Time map counting and the sweep of one model."""
    model, label, shape = load_sweep_model(name)
    layers = extract_layers(model)
    geoms = grid(SIDES, SIDES)
    hw = load_preset("isaac")

    def sweep() -> Any:
        pruner = ProjectionPruner(model, "subrow", torch.zeros(1, *shape), keep_energy=0.9)
        return run_sweep(
            model, geoms, hw, shape, pruner, pattern="subrow", criterion={"keep_energy": 0.9}, progress=False
        )

    result = sweep()  # warm-up, and the masks of a pruned network for map_all_schemes
    pruned = ProjectionPruner(model, "subrow", torch.zeros(1, *shape))(geoms[12]).model
    pruned_layers = extract_layers(pruned)
    return {
        "model": label,
        "weights": sum(lay.groups * lay.rows * lay.cols for lay in layers),
        "geometries": len(geoms),
        "map_dense": time_call(lambda: count_geometries(layers, geoms, schemes=("dense",)), repeats),
        "map_all_schemes": time_call(lambda: count_geometries(pruned_layers, geoms, schemes=SCHEMES), repeats),
        "sweep": time_call(sweep, repeats),
        "sweep_stage_share": _stage_shares(sweep),
        "sweet_spot": result.sweet_spot,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print JSON."""
    return json_main("bench_analysis", __doc__.splitlines()[0], bench_model, default_repeats=3, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
