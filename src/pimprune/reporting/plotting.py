"""Plots of a crossbar sweep (matplotlib, Agg backend, imported only when plotting).

:func:`plot_sweep` takes the dictionary of :meth:`pimprune.workflows.sweep.SweepResult.as_dict`
(or a loaded ``sweep.json``) and writes two figures:

- ``sweep_energy.png``: energy per inference and occupied crossbars against the
  crossbar size in cells, one line per aspect ratio ``R/C``, the sweet spot
  (lowest energy) marked;
- ``sweep_breakdown.png``: energy per inference of each geometry as stacked
  bars by component (array, ADC, DAC, ...).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from pimprune.errors import ConfigError

__all__ = ["plot_sweep"]

ENERGY_PLOT = "sweep_energy.png"
BREAKDOWN_PLOT = "sweep_breakdown.png"
_DPI = 120


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "plots need matplotlib; install it (pip install 'pimprune[plot]') or pass --no-plot"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _aspect_label(rows: int, cols: int) -> str:
    f = Fraction(rows, cols)
    return f"R/C = {f.numerator}/{f.denominator}" if f.denominator != 1 else f"R/C = {f.numerator}"


def plot_sweep(result: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the sweep plots into ``out_dir``.

    Args:
        result: A sweep as a dictionary (``results`` entries with ``rows``, ``cols``,
            ``energy_nj``, ``crossbars_pruned``, ``crossbars_dense``,
            ``energy_breakdown``; ``sweet_spot``).
        out_dir: Output folder (created if missing).

    Returns:
        The two image paths.

    Raises:
        ConfigError: if matplotlib is not installed.
    """
    from pimprune.training.checkpoint import ensure_dir

    plt = _pyplot()
    out = ensure_dir(out_dir)
    rows = list(result["results"])
    best = result.get("sweet_spot", {}).get("energy")
    title = f"{result.get('model', '')}: {result.get('pattern', '')} ({result.get('mode', '')})"
    return [_plot_energy(plt, rows, best, title, out / ENERGY_PLOT), _plot_breakdown(plt, rows, best, title, out)]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    from pimprune.training.checkpoint import atomic_write

    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=_DPI))
    plt.close(fig)
    return path


def _plot_energy(plt: Any, rows: list[Mapping[str, Any]], best: str | None, title: str, path: Path) -> Path:
    """Energy and crossbars vs cells, one line per aspect ratio; the sweet spot starred."""
    by_aspect: dict[Fraction, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by_aspect[Fraction(int(r["rows"]), int(r["cols"]))].append(r)
    fig, (ax_e, ax_x) = plt.subplots(1, 2, figsize=(12, 4.6))
    for aspect in sorted(by_aspect):
        pts = sorted(by_aspect[aspect], key=lambda r: int(r["rows"]) * int(r["cols"]))
        cells = [int(r["rows"]) * int(r["cols"]) for r in pts]
        label = _aspect_label(aspect.numerator, aspect.denominator)
        ax_e.plot(cells, [r["energy_nj"] / 1e3 for r in pts], "o-", label=label)
        line = ax_x.plot(cells, [r["crossbars_pruned"] for r in pts], "o-", label=label)[0]
        ax_x.plot(cells, [r["crossbars_dense"] for r in pts], ":", color=line.get_color(), alpha=0.6)
    for r in rows:
        if r["crossbar"] == best:
            cells = int(r["rows"]) * int(r["cols"])
            ax_e.plot(
                [cells], [r["energy_nj"] / 1e3], "*", color="red", markersize=18, label=f"sweet spot {best}", zorder=5
            )
            ax_e.annotate(best, (cells, r["energy_nj"] / 1e3), textcoords="offset points", xytext=(6, 8), color="red")
    for ax in (ax_e, ax_x):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("crossbar size (cells R*C)")
        ax.grid(True, which="both", alpha=0.3)
    ax_e.set_ylabel("energy per inference (uJ)")
    ax_e.set_title("energy (pruned)")
    ax_x.set_yscale("log")
    ax_x.set_ylabel("crossbars (solid: pruned, dotted: dense)")
    ax_x.set_title("occupied crossbars")
    ax_e.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(plt, fig, path)


def _plot_breakdown(plt: Any, rows: list[Mapping[str, Any]], best: str | None, title: str, out: Path) -> Path:
    """Energy breakdown, stacked bars per geometry."""
    components = list(rows[0]["energy_breakdown"]) if rows else []
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(rows) + 2), 4.8))
    labels = [r["crossbar"] for r in rows]
    bottom = [0.0] * len(rows)
    for comp in components:
        vals = [r["energy_breakdown"][comp] / 1e3 for r in rows]
        ax.bar(labels, vals, bottom=bottom, label=comp)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    if best in labels:
        i = labels.index(best)
        ax.annotate("sweet spot", (i, bottom[i]), textcoords="offset points", xytext=(0, 6), ha="center", color="red")
    ax.set_ylabel("energy per inference (uJ)")
    ax.set_xlabel("crossbar RxC")
    ax.set_title(f"energy breakdown — {title}")
    ax.tick_params(axis="x", rotation=60)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(plt, fig, out / BREAKDOWN_PLOT)
