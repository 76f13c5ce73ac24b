"""``pimprune map``: weight matrices and crossbar counts of a model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar, parse_geometries
from pimprune.mapping.counting import SCHEMES, NetworkCount, count_geometries
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import PACKINGS, NetworkPlacement, activation_summary, pack_layers, pack_network


def add_parser(sub) -> None:
    """Register ``map``."""
    p = sub.add_parser(
        "map",
        help="count the crossbars a model occupies",
        description="Print each mapped layer (matrix rows x cols, groups, crossbars) and totals. "
        "For a pruned checkpoint also the compacted counts, packing bound and compression.",
    )
    p.add_argument("model", help="torchvision/pimprune model name, or a pimprune model.pt (or its folder)")
    p.add_argument("--crossbar", action="append", default=None, metavar="RxC",
                   help="crossbar geometry, repeatable or comma-separated (default 128x128)")
    p.add_argument("--scheme", default=None, choices=[s for s in SCHEMES if s != "dense"],
                   help="compaction to report for a pruned model (default: the one it was pruned for)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes, for a model name (default 1000)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels, for a model name (default 3)")
    p.add_argument("--input-size", type=int, default=224, help="input size in px, for a model name")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier, for a model name")
    p.add_argument("--packing", default="layer", choices=PACKINGS,
                   help="layer: each layer on crossbars of its own (the paper's mapping, default); "
                   "network: blocks of all layers share crossbars (prints both counts)")
    p.add_argument("--verify", action="store_true",
                   help="compute every layer through the crossbars of --packing and compare with the model")
    p.add_argument("--placement", default=None, metavar="FILE.json",
                   help="write the placement of --packing (one --crossbar only)")
    p.add_argument("--numerics", default="isaac", metavar="PRESET|FILE",
                   help="numerics of the physical array count (weight and cell bits, sign arrays; default isaac)")
    p.add_argument("--weight-bits", type=int, default=None, metavar="B",
                   help="weight bits of this model, for the physical compression (default: the bits it was "
                   "trained for with prune --weight-bits, else the preset's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def resolve_model(args: argparse.Namespace):
    """A model and its metadata from a name or a checkpoint path."""
    from pimprune.training.checkpoint import load_model

    path = Path(args.model)
    looks_like_path = path.suffix in {".pt", ".pth"} or "/" in args.model or path.exists()
    if looks_like_path:
        model, meta = load_model(path)
        return model, meta, str(path)
    from pimprune.training.models import ModelSpec, create_model

    spec = ModelSpec(
        name=args.model,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
        input_size=args.input_size,
        width=args.width,
    )
    return create_model(spec), {"spec": spec.to_dict()}, args.model


def run(args: argparse.Namespace) -> int:
    """Count and print; optionally pack the whole network, verify and write the placement."""
    geometries = parse_geometries(
        [g for item in (args.crossbar or ["128x128"]) for g in item.split(",") if g.strip()]
    )
    if args.placement is not None and len(geometries) != 1:
        raise ConfigError("--placement writes one placement; give exactly one --crossbar")
    if args.placement is not None and not args.placement.strip():
        raise ConfigError("--placement is empty; pass a file name such as placement.json")
    model, meta, label = resolve_model(args)
    dense_numerics, numerics = _numerics(args, meta)
    layers = extract_layers(model)
    masks = {lay.name: lay.matrix() != 0 for lay in layers}
    pruned = any(not bool(m.all()) for m in masks.values())
    scheme = args.scheme or meta.get("scheme") or "subrow"
    schemes = SCHEMES if pruned else ("dense",)
    results = count_geometries(layers, geometries, masks if pruned else None, schemes)
    packings = [_packings(layers, x, scheme if pruned else "dense", args.packing) for x in geometries]
    if args.verify:
        for pk in packings:
            _verify(model, pk[args.packing], _example_shape(args, meta))
    if args.placement is not None:
        from pimprune.training.checkpoint import save_text

        save_text(json.dumps(packings[0][args.packing].as_json()) + "\n", args.placement)
    if args.json:
        out = _as_json(label, meta, results, pruned, scheme)
        for entry, pk, nc in zip(out["results"], packings, results, strict=True):
            entry["packing"] = args.packing
            entry["packings"] = {name: _packing_json(pl) for name, pl in pk.items()}
            physical = physical_arrays(nc, scheme if pruned else "dense", dense_numerics, numerics)
            entry["physical_compression"] = physical["compression"]
            entry["physical_arrays"] = physical
        print(json.dumps(out))
    else:
        for nc, pk in zip(results, packings, strict=True):
            _print_table(label, nc, pruned, scheme)
            _print_physical(physical_arrays(nc, scheme if pruned else "dense", dense_numerics, numerics))
            _print_packings(pk)
    return 0


def _numerics(args: argparse.Namespace, meta: dict):
    """The preset's numerics (the dense reference) and the model's (``--weight-bits``, else its trained bits)."""
    from pimprune.hardware.numerics import load_numerics, numerics_with_overrides

    preset = load_numerics(args.numerics)
    bits = args.weight_bits if args.weight_bits is not None else (meta.get("quantization") or {}).get("weight_bits")
    if bits is None:
        return preset, preset
    return preset, numerics_with_overrides(preset, {"weight_bits": bits})


def physical_arrays(nc: NetworkCount, scheme: str, dense_numerics, numerics) -> dict:
    """:func:`pimprune.hardware.numerics.physical_summary` of a count: dense at the preset's bits, mapped at its own."""
    from pimprune.hardware.numerics import physical_summary

    return physical_summary(nc.total("dense"), nc.total(scheme), dense_numerics, numerics)


def _bits(b: int | None) -> str:
    return "fp32" if b is None else f"{b}-bit"


def _print_physical(ph: dict) -> None:
    bits = _bits
    ratio = "n/a" if ph["compression"] is None else f"{ph['compression']:.2f}x"
    print(
        f"physical arrays ({ph['numerics']} numerics, {ph['cell_bits']}-bit cells, x{ph['sign_arrays']} sign arrays): "
        f"dense {ph['arrays_dense']} at {bits(ph['dense_weight_bits'])} weights -> {ph['arrays']} at "
        f"{bits(ph['weight_bits'])}: physical compression {ratio}"
    )


def _packings(layers, xbar: Crossbar, scheme: str, packing: str) -> dict[str, NetworkPlacement]:
    """Per-layer placement, and the network one when asked for."""
    mats = {lay.name: lay.matrix() for lay in layers}
    out = {"layer": pack_layers(mats, xbar, scheme)}
    if packing == "network":
        out["network"] = pack_network(mats, xbar, scheme)
    return out


def _example_shape(args: argparse.Namespace, meta: dict) -> tuple[int, int, int, int]:
    spec = meta.get("spec") or {}
    size = int(spec.get("input_size", args.input_size))
    return (2, int(spec.get("in_channels", args.in_channels)), size, size)


def _verify(model, placement: NetworkPlacement, shape: tuple[int, ...]) -> None:
    """Simulate every layer through ``placement``; a mismatch is a one-line error (exit 2)."""
    import torch

    from pimprune.mapping.network_sim import NetworkVerifyError, verify_network
    from pimprune.mapping.packing import PackingError
    from pimprune.mapping.simulate import SimulationMismatch

    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    try:
        report = verify_network(model, placement, example)
    except (SimulationMismatch, PackingError) as exc:
        raise NetworkVerifyError(f"verification failed: {exc}") from None
    print(
        f"verified {len(report.errors)} layers through {placement.n_crossbars} {placement.xbar} crossbars "
        f"({placement.packing} packing): largest error {report.max_error:.3g}",
        file=sys.stderr,
    )


def _packing_json(pl: NetworkPlacement) -> dict:
    summary = activation_summary(pl)
    return {
        "total_crossbars": pl.n_crossbars,
        "cell_bound": pl.bound(),
        "cells": pl.cells_used(),
        "activations": sum(s["activations"] for s in summary.values()),
        "layers": summary,
    }


def _print_packings(pk: dict[str, NetworkPlacement]) -> None:
    for name, pl in pk.items():
        acts = sum(s["activations"] for s in activation_summary(pl).values())
        print(
            f"{name} packing: {pl.n_crossbars} crossbars (bound ceil(cells/(R*C)) = {pl.bound()}), "
            f"{acts} activations per input vector"
        )
    print()


def _as_json(label: str, meta: dict, results: list[NetworkCount], pruned: bool, scheme: str) -> dict:
    out = {"model": label, "pruned": pruned, "pattern": meta.get("pattern"), "scheme": scheme, "results": []}
    for nc in results:
        d = nc.as_dict()
        entry = {"crossbar": d["crossbar"], "total_crossbars": d["total_crossbars"],
                 "total_crossbars_conv": d["total_crossbars_conv"], "layers": d["layers"]}
        if pruned:
            entry.update(
                crossbars_pruned=nc.total(scheme),
                compression=d["compression"][scheme],
                compression_conv=d["compression_conv"][scheme],
                packing_bound_per_layer=d["packing_bound_per_layer"],
                packing_bound_network=d["packing_bound_network"],
                compacted=d["compacted"],
                compression_by_scheme=d["compression"],
                nnz=d["nnz"],
                weights=d["weights"],
            )
        out["results"].append(entry)
    return out


def _print_table(label: str, nc: NetworkCount, pruned: bool, scheme: str) -> None:
    head = f"{label} on {nc.crossbar} crossbars"
    print(head)
    cols = f"{'layer':<34} {'rows x cols':>13} {'groups':>6} {'crossbars':>9}"
    if pruned:
        cols += f" {scheme:>10} {'bound':>6} {'density':>8}"
    print(cols)
    print("-" * len(cols))
    for lc in nc.layers:
        line = f"{lc.name:<34} {f'{lc.rows}x{lc.cols}':>13} {lc.groups:>6} {lc.dense:>9}"
        if pruned:
            line += f" {lc.counts[scheme]:>10} {lc.bound:>6} {lc.nnz / lc.weights:>8.3f}"
        print(line)
    print("-" * len(cols))
    print(f"total crossbars (dense): {nc.total('dense')}  (conv layers: {nc.total('dense', 'conv')})")
    if pruned:
        print(
            f"pruned, {scheme} compaction: {nc.total(scheme)}  compression {nc.compression(scheme):.2f}x "
            f"(conv layers {nc.compression(scheme, 'conv'):.2f}x)  packing bound {nc.bound()}"
        )
        others = "  ".join(f"{s} {nc.total(s)}" for s in SCHEMES if s != "dense")
        print(f"every compaction: {others}")
    print()
