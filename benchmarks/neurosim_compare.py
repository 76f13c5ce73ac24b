"""Side by side: DNN+NeuroSim V1.4 and pimprune's hardware model on the same dense and pruned models.

For every model and every sub-array row count ``R`` this exports the model for NeuroSim on
``R x 128`` crossbars (``pimprune export neurosim``: real test images of the model's data set),
runs NeuroSim's ``main`` on it (``nice -n 10``, with a time limit; a geometry that takes longer
is skipped and said so), parses its report (chip area, sub-arrays and tiles used, dynamic +
leakage energy per image, pipeline cycle and summed layer latency, memory utilisation) and sets
it beside pimprune's own figures for the same model and geometry (:func:`pimprune.hardware.cost.
network_cost` under the model's scheme, crossbars by :func:`pimprune.mapping.counting.count_network`).
The ratios pruned / dense of each tool are the comparison: the absolute figures model
different hardware (NeuroSim: 22 nm SRAM, 8-bit weights bit-sliced over 8 columns; pimprune's
preset: ISAAC). An export NeuroSim's floorplan cannot place is refused before running (the
reason is recorded); ``--neurosim-conventional`` names a second NeuroSim build with
``novelMapping = false;`` in ``Param.cpp`` that runs every geometry again under conventional mapping.

    python benchmarks/neurosim_compare.py --neurosim PATH/TO/NeuroSIM/main --rows 64,128,256 \\
        --out results/neurosim_compare
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Models compared by default: label=path (the first is the dense reference).
DEFAULT_MODELS = ",".join(
    ["dense=src/pimprune/assets/demo_dense/model.pt"]
    + [f"{row}=results/headline/{row}/model.pt" for row in ("subrow-1pt", "coarse-1pt", "packed-1pt")]
)
#: Seconds one NeuroSim run may take before its geometry is skipped.
DEFAULT_TIMEOUT_S = 180
#: Figures compared as pruned / dense ratios: (label, NeuroSim key, pimprune key).
#: NeuroSim's latency is its pipeline cycle (``latency``) or its layers summed (``latency sum``), pimprune's its
#: layers one after the other; its arrays are sub-arrays, pimprune's logical crossbars.
RATIOS = (
    ("energy", "energy_nj", "energy_nj"),
    ("area", "area_mm2", "area_mm2"),
    ("latency", "cycle_ns", "latency_us"),
    ("latency sum", "latency_sum_ns", "latency_us"),
    ("arrays", "subarrays", "crossbars"),
    ("tiles", "tiles", "tiles_exported"),
    ("built area", "area_mm2", "built_cells_exported"),
    ("built area (own mapping)", "area_mm2", "built_cells_own"),
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--neurosim", required=True, help="NeuroSim's main (Inference_pytorch/NeuroSIM/main)")
    p.add_argument("--neurosim-conventional", default=None,
                   help="optional second build of main with novelMapping = false; in Param.cpp")
    p.add_argument("--neurosim-layer-by-layer", default=None,
                   help="optional third build with novelMapping = false; and pipeline = false; (no pipeline copies: "
                   "NeuroSim's tiles are then the tile-per-layer policy pimprune charges)")
    p.add_argument("--models", default=DEFAULT_MODELS, help="label=model.pt,... (the first is the dense reference)")
    p.add_argument("--rows", default="64,128,256", help="sub-array rows, comma-separated")
    p.add_argument("--out", required=True, help="folder for neurosim_compare.json and .md")
    p.add_argument("--images", type=int, default=1, help="test images per export (NeuroSim runs image 1)")
    p.add_argument("--hardware", default="isaac", help="pimprune hardware preset or .yaml/.json file")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per NeuroSim run")
    p.add_argument("--logs", action="store_true", help="also keep NeuroSim's reports in OUT/logs/")
    return p.parse_args(argv)


def _models(spec: str) -> dict[str, Path]:
    from pimprune.errors import ConfigError

    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise ConfigError(f"--models: expected label=path, got {item!r}")
        out[label] = Path(path)
    if not out:
        raise ConfigError("--models: no model given")
    return out


def neurosim_tile_hw(hw, side: int, rows: int):
    """``hw`` organised as NeuroSim's chip: tile per layer, ``(side/R) x (side/128)`` sub-arrays per tile.

    NeuroSim keeps a weight's 8 bits in 8 adjacent columns of one ``R x 128`` sub-array, so a sub-array
    holds ``R x 16`` weights: pimprune counts logical ``R x 16`` crossbars of one array each.
    """
    import dataclasses

    from pimprune.hardware.chip import chip_preset
    from pimprune.hardware.config import merge_fields
    from pimprune.hardware.neurosim import SUBARRAY_COLS

    ns = chip_preset(dataclasses.replace(hw, weight_bits=hw.cell_bits, signed="offset"), "neurosim")
    per_tile = (side // rows) * (side // SUBARRAY_COLS)
    return dataclasses.replace(ns, chip=merge_fields(type(ns.chip), ns.chip, {"arrays_per_tile": per_tile}, "chip."))


def _pimprune(model, meta: dict, shape, xbar, hw) -> dict[str, Any]:
    """pimprune's own figures of one model on one geometry (per-layer mapping under the model's scheme).

    ``subarrays_own``: each layer's ``R x 16``-weight sub-arrays under pimprune's own mapping (its scheme).
    """
    from pimprune.geometry import Crossbar
    from pimprune.hardware.cost import network_cost
    from pimprune.hardware.neurosim import DEFAULT_BITS, SUBARRAY_COLS
    from pimprune.mapping.counting import count_network
    from pimprune.mapping.matrices import extract_layers

    scheme = meta.get("scheme") or "dense"
    cost = network_cost(model, xbar, scheme, hw, shape)
    layers = extract_layers(model)
    crossbars = count_network(layers, xbar, schemes=(scheme,)).total(scheme)
    sub = count_network(layers, Crossbar(xbar.rows, SUBARRAY_COLS // DEFAULT_BITS), schemes=(scheme,))
    return {"scheme": scheme, "crossbars": crossbars, "energy_nj": cost.energy_nj, "area_mm2": cost.area_mm2,
            "latency_us": cost.latency_us, "subarrays_own": [lc.counts[scheme] for lc in sub.layers]}


def _run_neurosim(main: str, export, timeout: float) -> tuple[str | None, str, dict | None, float]:
    """Run the export's script; returns (error or None, NeuroSim's report, its summary, seconds)."""
    from pimprune.hardware.neurosim_report import parse_report, summarize

    folder = export.out.resolve()
    cmd = ["nice", "-n", "10", str(folder / "run_neurosim.sh"), str(Path(main).resolve())]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, cwd=folder, check=False)
    except subprocess.TimeoutExpired:
        return f"skipped: NeuroSim took over {timeout:.0f} s", "", None, time.perf_counter() - start
    seconds = time.perf_counter() - start
    report = parse_report(done.stdout)
    if report.error or done.returncode:
        last = (done.stdout.strip().splitlines() or [""])[-1][:200]
        error = f"NeuroSim failed (exit {done.returncode}): {report.error}; last output: {last!r}"
        return error, done.stdout, None, seconds
    return None, done.stdout, summarize(report, export.check), seconds


def _export_figures(export, rows: int) -> dict[str, int]:
    """What the exported lines need before NeuroSim tiles them.

    ``kept_matrix_crossbars``: pimprune's logical ``rows x 128`` crossbars of the lines' matrices (the
    union of kept rows of a compacted layer); ``needed_subarrays``: NeuroSim's ``rows x 128`` sub-arrays
    of the same matrices with ``weight_bits`` columns per weight, before whole tiles and pipeline copies.
    """
    from pimprune.hardware.neurosim import DEFAULT_BITS, SUBARRAY_COLS

    def arrays(line, cols_per_weight: int) -> int:
        m, n = line.weight.shape
        return math.ceil(m / rows) * math.ceil(n * cols_per_weight / SUBARRAY_COLS)

    per_line = [arrays(line, DEFAULT_BITS) for line in export.lines]
    return {
        "lines": len(export.lines),
        "novel_mapped_lines": sum(export.check.novel),
        "kept_matrix_crossbars": sum(arrays(line, 1) for line in export.lines),
        "needed_subarrays": sum(per_line),
        "subarrays_per_line": per_line,
    }


def _tiles(export, rows: int, subarrays_own: list[int], hw) -> dict[str, Any]:
    """Tiles of pimprune's tile-per-layer policy on NeuroSim's organisation (chip.neurosim_tile_design).

    The tile side comes from the exported lines as NeuroSim chooses it; ``built_cells_*`` is tiles x side^2,
    the built area in cells, for the exported matrices and for pimprune's own mapping.
    """
    from pimprune.hardware.chip import neurosim_tile_design, tiles_needed

    side, tiles = neurosim_tile_design([tuple(line.weight.shape) for line in export.lines], rows)
    own = tiles_needed(subarrays_own, neurosim_tile_hw(hw, side, rows))
    return {"tile_side": side, "tiles_exported": tiles, "built_cells_exported": tiles * side * side,
            "tiles_own": own, "built_cells_own": own * side * side}


def _one(label: str, loaded, rows: int, mapping: str, main: str, args, work: Path, hw) -> dict[str, Any]:
    """Export, run and cost one model on one geometry under one mapping."""
    from pimprune.errors import ConfigError
    from pimprune.geometry import Crossbar
    from pimprune.hardware.export import export_neurosim
    from pimprune.hardware.neurosim import SUBARRAY_COLS

    model, _meta, shape, images, note, pim = loaded
    row = {"model": label, "rows": rows, "mapping": mapping, "pimprune": pim[rows]}
    folder = work / f"{label}-{rows}-{mapping}"
    try:
        export = export_neurosim(model, shape, Crossbar(rows, SUBARRAY_COLS), folder, label=label, images=images,
                                 image_note=note, mapping="novel" if mapping == "novel" else "conventional")
    except ConfigError as exc:
        return {**row, "status": "refused", "reason": str(exc)}
    row["export"] = _export_figures(export, rows)
    row["pimprune"] = {**row["pimprune"], **_tiles(export, rows, row["pimprune"]["subarrays_own"], hw)}
    error, text, summary, seconds = _run_neurosim(main, export, args.timeout)
    shutil.rmtree(folder, ignore_errors=True)
    row["neurosim_seconds"] = round(seconds, 2)
    if args.logs and text:
        (Path(args.out) / "logs").mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "logs" / f"{label}-{rows}-{mapping}.txt").write_text(text)
    if error:
        return {**row, "status": "skipped" if error.startswith("skipped") else "failed", "reason": error}
    return {**row, "status": "ok", "neurosim": summary}


def _load(path: Path, images: int, rows: list[int], hw) -> tuple:
    """Model, meta, input shape, test images and pimprune's figures at every row count."""
    from pimprune.geometry import Crossbar
    from pimprune.hardware.export import example_images
    from pimprune.hardware.neurosim import SUBARRAY_COLS
    from pimprune.training.checkpoint import load_model

    model, meta = load_model(path)
    spec = meta["spec"]
    shape = (int(spec["in_channels"]), int(spec["input_size"]), int(spec["input_size"]))
    x, note = example_images(meta.get("dataset"), images, shape)
    pim = {r: _pimprune(model, meta, shape, Crossbar(r, SUBARRAY_COLS), hw) for r in rows}
    return model, meta, shape, x, note, pim


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b and math.isfinite(a) and math.isfinite(b) else None


def ratios(runs: list[dict], dense: str) -> list[dict]:
    """Pruned / dense ratios of both tools for every pruned model, row count and mapping."""
    ref = {(r["rows"], r["mapping"]): r for r in runs if r["model"] == dense}
    out = []
    for run in runs:
        base = ref.get((run["rows"], run["mapping"]))
        if run["model"] == dense or base is None:
            continue
        entry = {"model": run["model"], "rows": run["rows"], "mapping": run["mapping"], "pimprune": {},
                 "neurosim": None if run["status"] != "ok" or base["status"] != "ok" else {}}
        for name, ns_key, pim_key in RATIOS:
            entry["pimprune"][name] = _ratio(run["pimprune"].get(pim_key), base["pimprune"].get(pim_key))
            if entry["neurosim"] is not None:
                entry["neurosim"][name] = _ratio(run["neurosim"][ns_key], base["neurosim"][ns_key])
        if entry["neurosim"] is None:
            entry["reason"] = run.get("reason") or base.get("reason")
        out.append(entry)
    return out


def _fmt(v: Any) -> str:
    """A figure for the tables: thousands separated, 3 significant digits below 100."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, int) or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _ratio_table(doc: dict) -> list[str]:
    head = " | ".join(f"{name} NS | {name} pim" for name, _, _ in RATIOS)
    out = [f"| model | rows | mapping | {head} |", "|---|---|---|" + "---|---|" * len(RATIOS)]
    for r in doc["ratios"]:
        ns_r = r["neurosim"] or {}
        cells = [f"{_cell(ns_r.get(name))} | {_cell(r['pimprune'][name])}" for name, _, _ in RATIOS]
        out.append(f"| {r['model']} | {r['rows']} | {r['mapping']} | " + " | ".join(cells) + " |")
    return out


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _absolute_table(doc: dict) -> list[str]:
    out = [
        "| model | rows | mapping | NeuroSim: area mm² | sub-arrays | (needed) | tiles | energy nJ (dyn + leak) | "
        "cycle ns | summed layers ns | memory util. % | run s | pimprune: energy nJ | area mm² | latency us | "
        "crossbars | (kept matrices) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        n, p = r.get("neurosim"), r["pimprune"]
        keys = ("area_mm2", "subarrays", "tiles", "energy_nj", "cycle_ns", "latency_sum_ns", "memory_utilization_pct")
        ns_cells = [_fmt(n[k]) for k in keys] + [_fmt(r.get("neurosim_seconds"))] if n else [r["status"]] + ["-"] * 7
        ex = r.get("export", {})
        ns_cells.insert(2, _fmt(ex.get("needed_subarrays")))
        pim = [_fmt(p[k]) for k in ("energy_nj", "area_mm2", "latency_us", "crossbars")]
        pim.append(_fmt(ex.get("kept_matrix_crossbars")))
        out.append(f"| {r['model']} | {r['rows']} | {r['mapping']} | " + " | ".join(ns_cells + pim) + " |")
    return out


def markdown(doc: dict) -> str:
    """The side-by-side tables."""
    out = [
        "# DNN+NeuroSim V1.4 beside pimprune's hardware model",
        "",
        f"NeuroSim commit {doc['neurosim']['commit']} (`Param.cpp` defaults: 22 nm SRAM, pipelined; `novel` "
        "mapping is its default, `conventional` a build with `novelMapping = false;`), "
        f"{doc['weight_bits']}-bit weights and inputs, run on {doc['machine']} on {doc['date']}. "
        f"pimprune: preset `{doc['hardware']}`, each model's scheme, per-layer mapping, crossbars R x 128. "
        f"Inputs: image 1 of {doc['images']} per model ({doc['inputs']}).",
        "",
        "## Pruned / dense ratios",
        "",
        "NS = NeuroSim, pim = pimprune. latency: NeuroSim's pipeline cycle (its latency per image); latency sum: "
        "NeuroSim's layer latencies summed; pimprune's latency is its layers one after the other in both. "
        "arrays: NeuroSim's sub-arrays used (tiles x sub-arrays per tile), pimprune's logical crossbars.",
        "",
        *_ratio_table(doc),
        "",
        "## Absolute figures",
        "",
        "(needed): sub-arrays the lines' matrices need at 8 columns per weight, before NeuroSim rounds every "
        "layer up to whole tiles and copies layers to balance its pipeline. (kept matrices): pimprune's crossbars "
        "for the exported matrices, i.e. the union of the rows kept by any column of a layer, against its own "
        "sub-row packing (crossbars).",
        "",
        *_absolute_table(doc),
    ]
    reasons = [r for r in doc["runs"] if r["status"] != "ok"]
    if reasons:
        out += ["", "Not run:", ""]
        out += [f"- {r['model']} at {r['rows']} rows ({r['mapping']}): {r['reason']}" for r in reasons]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write ``neurosim_compare.json`` and ``.md``."""
    from pimprune.errors import ConfigError
    from pimprune.hardware.config import load_preset
    from pimprune.hardware.neurosim import DEFAULT_BITS, NEUROSIM_COMMIT

    args = parse(argv)
    models = _models(args.models)
    rows = [int(r) for r in args.rows.split(",") if r.strip()]
    mains = {"novel": args.neurosim, "conventional": args.neurosim_conventional,
             "layer-by-layer": args.neurosim_layer_by_layer}
    for mapping, path in mains.items():
        if path and not os.access(path, os.X_OK):
            raise ConfigError(f"NeuroSim's main for {mapping} mapping is not an executable file: {path}")
    hw = load_preset(args.hardware)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, notes = [], {}
    with tempfile.TemporaryDirectory(dir=out, prefix=".work") as tmp:
        for label, path in models.items():
            loaded = _load(path, args.images, rows, hw)
            notes[label] = loaded[4]
            for r in rows:
                for mapping, main_path in mains.items():
                    if main_path:
                        runs.append(_one(label, loaded, r, mapping, main_path, args, Path(tmp), hw))
                        print(f"{label} {r} {mapping}: {runs[-1]['status']}", file=sys.stderr, flush=True)
    doc = {
        "neurosim": {"commit": NEUROSIM_COMMIT, "main": mains},
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU ({platform.platform()})",
        "date": dt.date.today().isoformat(),
        "hardware": args.hardware, "weight_bits": DEFAULT_BITS, "images": args.images,
        "inputs": "; ".join(sorted(set(notes.values()))),
        "models": {k: str(v) for k, v in models.items()}, "dense": next(iter(models)),
        "runs": runs, "ratios": ratios(runs, next(iter(models))),
    }
    (out / "neurosim_compare.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "neurosim_compare.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except Exception as exc:  # a user error: one line, exit 2
        from pimprune.errors import PimpruneError

        if not isinstance(exc, PimpruneError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
