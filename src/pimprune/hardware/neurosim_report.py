"""Read DNN+NeuroSim V1.4's console report and sum it up beside pimprune's own figures.

NeuroSim prints everything to stdout in µm², ns, pJ and µW (the lines matched below are those
of its ``main.cpp`` at :data:`pimprune.hardware.neurosim.NEUROSIM_COMMIT`). In its default
pipelined mode the "latency per image" it prints is the pipeline's clock cycle (the slowest
layer); the layers' latencies summed give the time of one image through every layer.
Sub-arrays are not printed: :func:`subarrays` computes them from the tiles of each line and the
tile and PE sizes of the floorplan (a novel-mapped tile is ``K*K`` PEs, a conventional one
``(tile / PE)^2`` PEs; a PE of ``P x P`` cells holds ``ceil(P / rows) * ceil(P / cols)`` sub-arrays).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pimprune.hardware.neurosim import MappingCheck

__all__ = ["FAILURE", "NeuroSimReport", "parse_report", "subarrays", "summarize"]

#: What NeuroSim prints when its floorplan fails (it then crashes).
FAILURE = "SubArray Size is too large"
#: A number as C++ streams print it.
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan))"
#: Chip-level values: name -> line pattern.
_SUMMARY = {
    "chip_area_um2": r"ChipArea : " + _NUM + r"um\^2",
    "cim_array_area_um2": r"Chip total CIM array : " + _NUM + r"um\^2",
    "clock_period_ns": r"Chip clock period is: " + _NUM + r"ns",
    "cycle_ns": r"Chip (?:pipeline-system-clock-cycle|layer-by-layer readLatency) \(per image\) is: " + _NUM + "ns",
    "dynamic_energy_pj": r"Chip (?:pipeline-system|total) readDynamicEnergy(?: \(per image\))? is: " + _NUM + "pJ",
    "leakage_energy_pj": r"Chip (?:pipeline-system|total) leakage Energy(?: \(per image\))? is: " + _NUM + "pJ",
    "tops_per_w": r"Energy Efficiency TOPS/W \((?:Pipelined|Layer-by-Layer) Process\): " + _NUM,
    "fps": r"Throughput FPS \((?:Pipelined|Layer-by-Layer) Process\): " + _NUM,
    "memory_utilization_pct": r"Memory Utilization of Whole Chip: " + _NUM + " %",
}
#: Floorplan sizes: name -> line pattern of ``AxB`` or ``AxBxC``.
_SIZES = {
    "cm_tile": r"Desired Conventional Mapped Tile Storage Size: (\d+)x(\d+)",
    "cm_pe": r"Desired Conventional PE Storage Size: (\d+)x(\d+)",
    "nm_tile": r"Desired Novel Mapped Tile Storage Size: (\d+)x(\d+)x(\d+)",
    "subarray": r"User-defined SubArray Size: (\d+)x(\d+)",
}
#: Per-layer values: name -> pattern (group 1 the 1-based layer, group 2 the value).
_LAYER = {
    "latency_ns": r"layer(\d+)'s readLatency is: " + _NUM + "ns",
    "dynamic_energy_pj": r"layer(\d+)'s readDynamicEnergy is: " + _NUM + "pJ",
    "leakage_energy_pj": r"layer(\d+)'s leakageEnergy is: " + _NUM + "pJ",
}
#: Headers of the floorplan sections whose ``layerN: value`` lines are per-layer values.
_SECTIONS = {
    "# of tile used for each layer": "tiles",
    "Speed-up of each layer": "speedup",
    "Utilization of each layer": "utilization",
}
_SECTION_LINE = re.compile(r"layer(\d+): " + _NUM + r"\s*$")
#: Unit conversions.
_UM2_PER_MM2, _PJ_PER_NJ = 1e6, 1e3


@dataclass
class NeuroSimReport:
    """The parts of a NeuroSim report the comparison uses.

    Attributes:
        error: Why the run failed (``None`` if it did not).
        values: Chip-level values (keys of the patterns above, NeuroSim's units).
        sizes: Floorplan sizes (``cm_tile``, ``cm_pe``, ``nm_tile`` = ``(K*K, P, P)``, ``subarray``).
        layers: Per line (in order): ``tiles``, ``speedup``, ``utilization``, ``latency_ns``,
            ``dynamic_energy_pj``, ``leakage_energy_pj``.
    """

    error: str | None
    values: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    layers: list[dict[str, float]] = field(default_factory=list)


def _per_layer(lines: list[str]) -> dict[int, dict[str, float]]:
    """Per-layer values of the floorplan sections and the layer estimates."""
    out: dict[int, dict[str, float]] = {}
    section = None
    for line in lines:
        header = next((name for text, name in _SECTIONS.items() if text in line and line.startswith("---")), None)
        if header or line.startswith("Memory Utilization") or "FloorPlan Done" in line:
            section = header
            continue
        match = _SECTION_LINE.match(line)
        if section and match:
            out.setdefault(int(match.group(1)), {})[section] = float(match.group(2))
        for name, pattern in _LAYER.items():
            match = re.match(pattern, line)
            if match:
                out.setdefault(int(match.group(1)), {})[name] = float(match.group(2))
    return out


def parse_report(text: str) -> NeuroSimReport:
    """Parse the stdout of NeuroSim's ``main``.

    A report without a chip area (a crash, a cut-off run) has ``error`` set.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    report = NeuroSimReport(error=None)
    for name, pattern in _SUMMARY.items():
        for line in lines:
            match = re.match(pattern, line)
            if match:
                report.values[name] = float(match.group(1))
    for name, pattern in _SIZES.items():
        for line in lines:
            match = re.match(pattern, line)
            if match:
                report.sizes[name] = tuple(int(g) for g in match.groups())
    per_layer = _per_layer(lines)
    report.layers = [per_layer[i] for i in sorted(per_layer)]
    if FAILURE in text:
        report.error = f"{FAILURE} (NeuroSim's floorplan failed)"
    elif "chip_area_um2" not in report.values:
        report.error = "no chip area in the report (NeuroSim stopped early)"
    return report


def subarrays(report: NeuroSimReport, check: MappingCheck) -> list[int]:
    """Sub-arrays of every line: its tiles times the sub-arrays of one of its (novel or conventional) tiles."""
    rows, cols = report.sizes["subarray"]

    def per_pe(size: int) -> int:
        return math.ceil(size / rows) * math.ceil(size / cols)

    per_tile = {}
    if "nm_tile" in report.sizes:
        pes, size, _ = report.sizes["nm_tile"]
        per_tile[True] = pes * per_pe(size)
    tile, pe = report.sizes["cm_tile"][0], report.sizes["cm_pe"][0]
    per_tile[False] = (tile // pe) ** 2 * per_pe(pe)
    pairs = zip(report.layers, check.novel, strict=True)
    return [int(layer.get("tiles", 0)) * per_tile[novel] for layer, novel in pairs]


def summarize(report: NeuroSimReport, check: MappingCheck) -> dict[str, Any]:
    """The comparison's figures of one run: area, sub-arrays and tiles, energy and latency per image."""
    v = report.values
    dyn, leak = v["dynamic_energy_pj"], v["leakage_energy_pj"]
    arrays = subarrays(report, check)
    return {
        "area_mm2": v["chip_area_um2"] / _UM2_PER_MM2,
        "cim_array_area_mm2": v.get("cim_array_area_um2", math.nan) / _UM2_PER_MM2,
        "subarrays": sum(arrays),
        "tiles": int(sum(layer.get("tiles", 0) for layer in report.layers)),
        "dynamic_energy_nj": dyn / _PJ_PER_NJ,
        "leakage_energy_nj": leak / _PJ_PER_NJ,
        "energy_nj": (dyn + leak) / _PJ_PER_NJ,
        "cycle_ns": v["cycle_ns"],
        "latency_sum_ns": sum(layer.get("latency_ns", 0.0) for layer in report.layers),
        "memory_utilization_pct": v.get("memory_utilization_pct", math.nan),
        "tops_per_w": v.get("tops_per_w", math.nan),
        "novel_mapped_lines": sum(check.novel),
        "subarrays_per_line": arrays,
        "tiles_per_line": [int(layer.get("tiles", 0)) for layer in report.layers],
    }
