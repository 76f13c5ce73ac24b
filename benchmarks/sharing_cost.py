"""What sharing crossbars across layers costs: per-layer mapping against network packing of one model.

For a pruned ``model.pt`` this places the weights twice, per layer (:func:`pimprune.mapping.network.
pack_layers`) and network-wide (:func:`pimprune.mapping.network.pack_network`), and costs every
*activation* of each placement (a layer driving its rows of one crossbar and reading its columns,
docs/design.md section 4) with the hardware model's per-crossbar energy (ADC conversions of the columns
read, DACs of the rows driven, index registers and muxes of a sub-row input index), times the layer's
MVMs per image. Latency and throughput come from :func:`pimprune.hardware.latency.latency`, where the
layers that share a crossbar form one serialised stage of an ISAAC pipeline (layer-by-layer execution
pays nothing for sharing); a layer whose blocks share physical columns on one crossbar needs several
activations in series (``serial``), which multiplies its MVM time.

    python benchmarks/sharing_cost.py results/headline/packed-1pt/model.pt --crossbar 32x32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_main  # noqa: E402


def _energy_pj(placement, hw, mvms: dict[str, int], rows_of: dict[str, int]) -> float:
    """Energy per inference (pJ) of every activation of ``placement`` (one cost call per layer)."""
    from pimprune.hardware.cost import crossbar_energy_pj
    from pimprune.mapping.network import activations

    per_layer: dict[str, list] = {}
    for a in activations(placement):
        per_layer.setdefault(a.layer, []).append((a.driven_rows, a.read_cols))
    total = 0.0
    for layer, acts in per_layer.items():
        driven, read = np.array(acts).T
        bits = max(1, math.ceil(math.log2(max(rows_of[layer], 2))))
        parts = crossbar_energy_pj(hw, driven, read, index_bits_per_row=bits)
        total += mvms[layer] * float(sum(v.sum() for v in parts.values()))
    return total


def cost_of(placement, hw, mvms: dict[str, int], rows_of: dict[str, int]) -> dict:
    """Energy, latency (both execution models) and activations of one placement."""
    from pimprune.hardware.latency import latency
    from pimprune.mapping.network import activation_summary, crossbar_layers

    summary = activation_summary(placement)
    serial = {n: max(1, s["serial"]) for n, s in summary.items()}
    shared = [set(g) for g in {frozenset(g) for g in crossbar_layers(placement)} if len(g) > 1]
    merged = _merge(shared)
    report = latency({n: s["crossbars"] for n, s in summary.items()}, {n: mvms[n] * serial[n] for n in summary},
                     hw, shared=merged, total_crossbars=placement.n_crossbars)
    return {
        "crossbars": placement.n_crossbars,
        "activations_per_image": int(sum(mvms[n] * s["activations"] for n, s in summary.items())),
        "max_serial_activations": max(serial.values()),
        "shared_groups": sorted(sorted(g) for g in merged),
        "energy_nj": round(_energy_pj(placement, hw, mvms, rows_of) / 1e3, 2),
        "latency_us": {m: round(report[m].latency_us, 2) for m in ("layer_by_layer", "pipelined")},
        "throughput_ips": {m: round(report[m].throughput_ips, 1) for m in ("layer_by_layer", "pipelined")},
    }


def _merge(groups: list[set[str]]) -> list[set[str]]:
    """Groups that share a layer are one stage (sharing is transitive for the pipeline)."""
    out: list[set[str]] = []
    for g in groups:
        hit = [o for o in out if o & g]
        for o in hit:
            out.remove(o)
            g = g | o
        out.append(g)
    return out


def main(argv=None) -> int:
    from pimprune.geometry import Crossbar
    from pimprune.hardware.config import load_preset
    from pimprune.hardware.cost import layer_mvms
    from pimprune.mapping.matrices import extract_layers
    from pimprune.mapping.network import pack_layers, pack_network
    from pimprune.training.checkpoint import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--crossbar", default="32x32")
    p.add_argument("--hardware", default="isaac")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    model, meta = load_model(args.model)
    xbar, hw, spec = Crossbar.parse(args.crossbar), load_preset(args.hardware), meta["spec"]
    layers = extract_layers(model)
    mats = {lay.name: lay.matrix() for lay in layers}
    mvms = layer_mvms(model, (1, spec["in_channels"], spec["input_size"], spec["input_size"]))
    rows_of = {lay.name: lay.rows for lay in layers}
    scheme = meta.get("scheme", "subrow")
    out = {"model": args.model, "crossbar": str(xbar), "scheme": scheme, "hardware": args.hardware,
           "layer": cost_of(pack_layers(mats, xbar, scheme), hw, mvms, rows_of),
           "network": cost_of(pack_network(mats, xbar, scheme), hw, mvms, rows_of)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(script_main(main))
