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

import argparse
import cProfile
import json
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from pimprune.counting import SCHEMES, count_geometries
from pimprune.geometry import grid
from pimprune.hardware import load_preset
from pimprune.matrices import extract_layers
from pimprune.sweep import ProjectionPruner, load_sweep_model, run_sweep

SIDES = [32, 64, 128, 256, 512]

#: Stage name -> function names (``file:function``) whose cumulative time it is.
STAGES = {
    "projection_units": ("patterns.py", "units"),
    "projection_masks": ("patterns.py", "mask"),
    "budget_bisection": ("sweep.py", "_bisect_budget"),
    "packing_stats": ("packing.py", "crossbar_stats"),
    "forward_mvm_count": ("cost.py", "layer_mvms"),
}


def _time(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "cpu_median_s": round(statistics.median(cpus), 3),
        "runs": repeats,
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
        "map_dense": _time(lambda: count_geometries(layers, geoms, schemes=("dense",)), repeats),
        "map_all_schemes": _time(lambda: count_geometries(pruned_layers, geoms, schemes=SCHEMES), repeats),
        "sweep": _time(sweep, repeats),
        "sweep_stage_share": _stage_shares(sweep),
        "sweet_spot": result.sweet_spot,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,resnet50", help="comma-separated model names")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--json", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {
        "benchmark": "bench_analysis",
        "machine": {
            "cpu_count_torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
        "results": [bench_model(m.strip(), args.repeats) for m in args.models.split(",") if m.strip()],
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
