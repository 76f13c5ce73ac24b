"""Wall time of crossbar counting (:func:`pimprune.mapping.counting.count_geometries`).

For each model (torchvision-shaped, 224 px, fresh seeded weights) over the 25
geometries of the default grid (rows and columns in 32, 64, 128, 256, 512) it
times, as the median of ``--repeats`` runs:

- ``dense_only``: the unpruned network, ``schemes=("dense",)`` (shapes only,
  what ``pimprune map MODEL`` does);
- ``all_schemes_random``: every scheme of :data:`pimprune.mapping.counting.SCHEMES` on
  masks that keep each weight with probability 0.3 (scattered zeros);
- ``all_schemes_subrow``: every scheme on sub-row masks (each layer projected
  with the ``subrow`` pattern on 128x128 to half its dense crossbars), the
  structure a PIM-Prune model has.

Masks are built once, outside the timing. The machine is often shared: the
median, the fastest run and the CPU time are reported together.

Usage::

    python benchmarks/bench_counting.py [--models resnet18,resnet50] [--repeats 5]
        [--threads 2] [--json OUT]
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from harness import json_main, time_call

from pimprune.geometry import Crossbar, grid
from pimprune.mapping.counting import SCHEMES, count_geometries, dense_count
from pimprune.mapping.matrices import LayerMatrix, extract_layers
from pimprune.pruning.patterns import get_pattern
from pimprune.workflows.sweep import load_sweep_model

SIDES = [32, 64, 128, 256, 512]
#: Keep probability of the random masks.
RANDOM_DENSITY = 0.3
#: Geometry and budget share of the sub-row masks.
SUBROW_XBAR = Crossbar(128, 128)
SUBROW_BUDGET_SHARE = 0.5


def random_masks(layers: list[LayerMatrix], density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Layer name -> ``(g, M, N)`` mask keeping each weight with probability ``density``."""
    gen = torch.Generator().manual_seed(seed)
    return {lay.name: torch.rand(lay.groups, lay.rows, lay.cols, generator=gen) < density for lay in layers}


def subrow_masks(layers: list[LayerMatrix], xbar: Crossbar, share: float) -> dict[str, torch.Tensor]:
    """Layer name -> the ``subrow`` projection of its weights to ``share`` of its dense crossbars."""
    pattern = get_pattern("subrow")
    out = {}
    for lay in layers:
        budget = max(1, int(share * dense_count(lay.rows, lay.cols, lay.groups, xbar)))
        out[lay.name] = pattern.project(lay.matrix(), xbar, budget)
    return out


def bench_model(name: str, repeats: int) -> dict[str, Any]:
    """Time counting one model on the 25 geometries."""
    model, label, _shape = load_sweep_model(name)
    layers = extract_layers(model)
    geoms = grid(SIDES, SIDES)
    rand = random_masks(layers, RANDOM_DENSITY)
    sub = subrow_masks(layers, SUBROW_XBAR, SUBROW_BUDGET_SHARE)
    count_geometries(layers, geoms[:1], masks=rand)  # warm-up
    return {
        "model": label,
        "layers": len(layers),
        "weights": sum(lay.groups * lay.rows * lay.cols for lay in layers),
        "geometries": len(geoms),
        "dense_only": time_call(lambda: count_geometries(layers, geoms, schemes=("dense",)), repeats, 4),
        "all_schemes_random": time_call(
            lambda: count_geometries(layers, geoms, masks=rand, schemes=SCHEMES), repeats, 4
        ),
        "all_schemes_subrow": time_call(
            lambda: count_geometries(layers, geoms, masks=sub, schemes=SCHEMES), repeats, 4
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print JSON."""
    return json_main("bench_counting", __doc__.splitlines()[0], bench_model, default_repeats=5, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
