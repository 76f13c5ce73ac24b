"""What sharing crossbars and whole tiles cost: per-layer mapping against network packing of one model.

For a pruned ``model.pt`` this places the weights twice (and the unpruned shapes once, densely): per
layer (:func:`pimprune.mapping.network.pack_layers`) and network-wide
(:func:`pimprune.mapping.network.pack_network`). It proves each placement
(:func:`pimprune.mapping.network.check_placement`) and costs it as the hardware pays it
(:func:`pimprune.hardware.placement_cost.placement_cost`: one activation per piece with its ADC reads,
the digital adds of partial sums, the index tables with their layer tags, the placement's own
crossbars for area; latency on the chip with layers that share crossbars as one stage holding the
union of their crossbars), then the tiles each takes under both tile policies
(:func:`pimprune.hardware.chip.chip_report`). It prints a Markdown table (docs/hardware.md, "What
sharing costs and what tiles cost") and the JSON.

    python benchmarks/sharing_cost.py results/headline/packed-1pt/model.pt --crossbar 32x32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_main  # noqa: E402


def cost_of(placement, mats, hw, mvms: dict[str, int]) -> dict:
    """Energy, area, tiles, latency (both execution models) and activations of one placement."""
    from pimprune.hardware.chip import chip_report
    from pimprune.hardware.placement_cost import placement_cost

    cost = placement_cost(placement, mats, hw, mvms)
    lbl, pipe = cost.latency["layer_by_layer"], cost.latency["pipelined"]
    return {
        "crossbars": placement.n_crossbars,
        "activations_per_image": int(sum(cost.mvms[n] * a for n, a in cost.activations.items())),
        "adds_per_image": int(sum(cost.mvms[n] * a for n, a in cost.adds.items())),
        "stages": len(cost.stage_crossbars),
        "energy_nj": round(cost.energy_nj, 2),
        "energy_breakdown_nj": {k: round(v, 2) for k, v in cost.energy_breakdown.items()},
        "chip": chip_report(cost.stage_crossbars, hw, placement.xbar, cost.area_mm2),
        "latency_us": {"layer_by_layer": round(lbl.latency_us, 2), "pipelined": round(pipe.latency_us, 2)},
        "throughput_ips": {"layer_by_layer": round(lbl.throughput_ips, 1), "pipelined": round(pipe.throughput_ips, 1)},
    }


def table(out: dict) -> str:
    """The Markdown table of docs/hardware.md."""
    lines = [
        "| placement of the same weights | crossbars | built tiles, tile-per-layer / shared | area occupied "
        "(mm^2) | area built, tile-per-layer / shared (mm^2) | energy / image (nJ) | layer-by-layer latency (us) "
        "| pipelined latency (us) | pipelined throughput (images/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = (("dense", "unpruned network, dense tiling"), ("layer", "pruned, per layer (the paper's mapping)"),
            ("network", "pruned, network packing"))
    for key, label in rows:
        r = out[key]
        chip, lat = r["chip"], r["latency_us"]
        lines.append(
            f"| {label} | {r['crossbars']} | {chip['tiles']['tile-per-layer']} / {chip['tiles']['shared']} "
            f"| {chip['area_occupied_mm2']:.4f} | {chip['area_built_mm2']['tile-per-layer']:.4f} / "
            f"{chip['area_built_mm2']['shared']:.4f} | {r['energy_nj']:.0f} | {lat['layer_by_layer']:.1f} "
            f"| {lat['pipelined']:.1f} | {r['throughput_ips']['pipelined']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    from pimprune.geometry import Crossbar
    from pimprune.hardware.config import load_preset
    from pimprune.hardware.cost import layer_mvms
    from pimprune.mapping.matrices import extract_layers
    from pimprune.mapping.network import check_placement, pack_layers, pack_network
    from pimprune.training.checkpoint import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--crossbar", default="32x32")
    p.add_argument("--hardware", default="isaac")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    model, meta = load_model(args.model)
    xbar, hw, spec = Crossbar.parse(args.crossbar), load_preset(args.hardware), meta["spec"]
    mats = {lay.name: lay.matrix() for lay in extract_layers(model)}
    mvms = layer_mvms(model, (1, spec["in_channels"], spec["input_size"], spec["input_size"]))
    scheme = meta.get("scheme", "subrow")
    out = {"model": args.model, "crossbar": str(xbar), "scheme": scheme, "hardware": args.hardware}
    dense = {name: torch.ones_like(m) for name, m in mats.items()}
    for key, pack, weights, how in (("dense", pack_layers, dense, "dense"), ("layer", pack_layers, mats, scheme),
                                    ("network", pack_network, mats, scheme)):
        placement = pack(weights, xbar, how)
        check_placement(placement, weights)
        out[key] = cost_of(placement, weights, hw, mvms)
    text = json.dumps(out, indent=2)
    print(table(out) + "\n\n" + text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(script_main(main))
