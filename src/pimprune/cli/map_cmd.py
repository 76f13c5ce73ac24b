"""``pimprune map``: weight matrices and crossbar counts of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pimprune.geometry import parse_geometries
from pimprune.mapping.counting import SCHEMES, NetworkCount, count_geometries
from pimprune.mapping.matrices import extract_layers


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
    """Count and print."""
    geometries = parse_geometries(
        [g for item in (args.crossbar or ["128x128"]) for g in item.split(",") if g.strip()]
    )
    model, meta, label = resolve_model(args)
    layers = extract_layers(model)
    masks = {lay.name: lay.matrix() != 0 for lay in layers}
    pruned = any(not bool(m.all()) for m in masks.values())
    scheme = args.scheme or meta.get("scheme") or "subrow"
    schemes = SCHEMES if pruned else ("dense",)
    results = count_geometries(layers, geometries, masks if pruned else None, schemes)
    if args.json:
        print(json.dumps(_as_json(label, meta, results, pruned, scheme)))
    else:
        for nc in results:
            _print_table(label, nc, pruned, scheme)
    return 0


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
                packing_bound=d["packing_bound"],
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
