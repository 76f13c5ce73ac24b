"""Sweep outputs: CSV, a readable table with the sweet spots, and the files of ``--out``."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from pimprune.hardware.cost import COMPONENTS
from pimprune.workflows.sweep import METRICS, SweepResult

_CSV_FIELDS = (
    "crossbar",
    "rows",
    "cols",
    "cells",
    "aspect",
    "crossbars_dense",
    "crossbars_network",
    "crossbars_pruned",
    "compression",
    "target_compression",
    "kept_energy",
    "energy_nj",
    "area_mm2",
    "latency_us",
    "latency_pipelined_us",
    "throughput_pipelined_ips",
    "latency_dense_us",
    "fits_on_chip",
    "edp",
    "energy_dense_nj",
    "area_dense_mm2",
    "silenced_outputs",
)

#: Columns of the network packing's cost and of the chip's tiles (nested in the JSON): name -> path.
_NESTED_FIELDS = {
    "energy_network_nj": ("network", "energy_nj"),
    "area_network_mm2": ("network", "area_mm2"),
    "latency_network_us": ("network", "latency_layer_by_layer_us"),
    "latency_pipelined_network_us": ("network", "latency_pipelined_us"),
    "tiles_tile_per_layer": ("chip", "per_layer", "tiles", "tile-per-layer"),
    "tiles_shared": ("chip", "per_layer", "tiles", "shared"),
    "area_built_tile_per_layer_mm2": ("chip", "per_layer", "area_built_mm2", "tile-per-layer"),
    "area_built_shared_mm2": ("chip", "per_layer", "area_built_mm2", "shared"),
    "tiles_network_tile_per_layer": ("chip", "network", "tiles", "tile-per-layer"),
    "tiles_network_shared": ("chip", "network", "tiles", "shared"),
    "tiles_dense_tile_per_layer": ("chip", "dense", "tiles", "tile-per-layer"),
}


def _nested(d: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def to_csv(result: SweepResult) -> str:
    """The sweep as CSV text, one row per geometry (energy components as ``energy_<c>_nj``).

    Besides the per-layer mapping's fields: its network packing's cost and the tiles of both
    mappings and of the dense network (:data:`_NESTED_FIELDS`).
    """
    buf = io.StringIO()
    fields = [*_CSV_FIELDS, *_NESTED_FIELDS, *(f"energy_{c}_nj" for c in COMPONENTS)]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in result.results:
        d = r.as_dict()
        row = {k: d.get(k) for k in _CSV_FIELDS}
        row.update({k: _nested(d, path) for k, path in _NESTED_FIELDS.items()})
        row["cells"] = r.crossbar.cells
        row["aspect"] = round(r.crossbar.aspect, 6)
        row.update({f"energy_{c}_nj": d["energy_breakdown"][c] for c in COMPONENTS})
        writer.writerow(row)
    return buf.getvalue()


def _tiles(chip: dict) -> str:
    tiles = _nested(chip, ("per_layer", "tiles")) or {}
    return f"{tiles.get('tile-per-layer', '-')}/{tiles.get('shared', '-')}"


def format_table(result: SweepResult) -> str:
    """A readable table of the sweep, the sweet spots marked."""
    spots = result.sweet_spot
    head = (
        f"{'crossbar':>9} {'dense':>7} {'pruned':>7} {'network':>7} {'compr':>7} {'kept':>6} "
        f"{'energy uJ':>10} {'vs dense':>8} {'area mm2':>9} {'tiles':>11} {'lat ms':>7} {'pipe/s':>8} "
        f"{'EDP uJ*ms':>10}  best"
    )
    lines = [
        f"{result.mode} sweep of {result.model}: pattern {result.pattern}, "
        + ", ".join(f"{k} {v:g}" for k, v in result.criterion.items())
        + f", hardware {result.hardware}, input {'x'.join(map(str, result.input_shape))}",
        head,
        "-" * len(head),
    ]
    for r in result.results:
        marks = [m for m in METRICS if spots.get(m) == str(r.crossbar)]
        kept = "-" if math.isnan(r.kept_energy) else f"{r.kept_energy:.3f}"
        lines.append(
            f"{r.crossbar!s:>9} {r.crossbars_dense:>7} {r.crossbars_pruned:>7} {r.crossbars_network:>7} "
            f"{r.compression:>6.2f}x {kept:>6} {r.energy_nj / 1e3:>10.1f} "
            f"{r.energy_nj / r.energy_dense_nj:>8.3f} {r.area_mm2:>9.3f} {_tiles(r.chip):>11} "
            f"{r.latency_us / 1e3:>7.3f} {r.throughput_pipelined_ips:>8.0f} {r.edp / 1e6:>10.2f}  "
            f"{','.join(marks)}".rstrip()
        )
    lines.append("sweet spot: " + ", ".join(f"{m} {g}" for m, g in spots.items()))
    lines.append("tiles: per-layer mapping, tile-per-layer / shared (network packing: sweep.json 'chip')")
    return "\n".join(lines)


def write_outputs(result: SweepResult, out_dir: str | Path, plots: bool = True) -> list[Path]:
    """Write ``sweep.json``, ``sweep.csv`` and (with matplotlib) the plots into ``out_dir``.

    Returns:
        The files written.
    """
    from pimprune.training.checkpoint import save_json, save_text

    out = Path(out_dir)
    files = [save_json(result.as_dict(), out / "sweep.json"), save_text(to_csv(result), out / "sweep.csv")]
    if plots:
        from pimprune.reporting.plotting import plot_sweep

        files.extend(plot_sweep(result.as_dict(), out))
    return files
