"""Design-space table: per crossbar geometry, the compression reached at a loss bound, and its cost.

For every geometry ``R x C`` (rows and columns from the lists given) this prunes
the same dense checkpoint along a ladder of target compressions with masked
retraining (``pimprune prune`` in process, the same epochs everywhere), keeps
the highest compression whose accuracy loss is at most ``--bound`` points,
and costs that pruned network with the hardware model (energy, area and
latency per inference, :func:`pimprune.hardware.cost.network_cost`). The sweet spot is
the geometry of least energy (and of least area, and of least energy-delay)
among those that reached the bound.

The ladder of a geometry stops at the first target whose loss exceeds the
bound by more than ``--stop-margin`` points (losses grow with the target).
Finished runs are skipped, so a killed benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness import add_prune_run_args, cached_prune, numbers, script_main

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.config import load_preset
from pimprune.hardware.cost import network_cost
from pimprune.pruning.patterns import get_pattern
from pimprune.training.checkpoint import load_model, save_json, save_text
from pimprune.training.runtime import provenance


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_prune_run_args(p)
    p.add_argument("--pattern", default="subrow")
    p.add_argument("--rows", default="32,64,128,256", help="crossbar rows, comma-separated")
    p.add_argument("--cols", default="32,64,128", help="crossbar columns, comma-separated")
    p.add_argument("--targets", default="2,4,8,16", help="ladder of target compressions")
    p.add_argument("--bound", type=float, default=1.0, help="accuracy loss bound (points)")
    p.add_argument("--stop-margin", type=float, default=1.0, help="stop a ladder once loss > bound + margin")
    p.add_argument("--method", default="oneshot")
    p.add_argument("--prune-epochs", type=int, default=1)
    p.add_argument("--retrain-epochs", type=int, default=2)
    p.add_argument("--hardware", default="isaac", help="hardware preset or .yaml/.json file")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def _cost(model_path: Path, xbar: Crossbar, scheme: str, hw, input_shape) -> dict:
    model, _ = load_model(model_path)
    return network_cost(model, xbar, scheme, hw, input_shape).as_dict(layers=False)


def markdown(summary: dict) -> str:
    lines = [
        f"{summary['pattern']} ({summary['method']}, "
        f"{summary['epochs']['prune']}+{summary['epochs']['retrain']} epochs), "
        f"loss bound {summary['bound']:g} point(s), dense accuracy {100 * summary['accuracy_dense']:.2f}%, "
        f"hardware {summary['hardware']}.",
        "",
        "| crossbar | dense xb | best compression within bound | xb | loss (pt) | energy (nJ) | area (mm^2) "
        "| latency (us) | dense energy (nJ) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in summary["geometries"]:
        b = g["best"]
        if b is None:
            lines.append(f"| {g['crossbar']} | {g['crossbars_dense']} | none | - | - | - | - | - | "
                         f"{g['dense_cost']['energy_nj']:.1f} |")
            continue
        c = b["cost"]
        lines.append(
            f"| {g['crossbar']} | {g['crossbars_dense']} | {b['compression']:.2f}x | {b['crossbars_pruned']} | "
            f"{b['accuracy_loss_points']:+.2f} | {c['energy_nj']:.1f} | {c['area_mm2']:.4f} | {c['latency_us']:.2f} | "
            f"{g['dense_cost']['energy_nj']:.1f} |"
        )
    if summary.get("sweet_spot"):
        s = summary["sweet_spot"]
        lines += ["", f"Sweet spot: least energy {s['energy']}, least area {s['area']}, least energy-delay {s['edp']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    t0 = time.time()
    hw = load_preset(args.hardware)
    scheme = get_pattern(args.pattern).scheme
    dense_model, meta = load_model(args.dense)
    spec = meta["spec"]
    input_shape = (spec["in_channels"], spec["input_size"], spec["input_size"])
    targets = sorted(numbers(args.targets, "--targets"))
    geos = [Crossbar.parse(f"{r.strip()}x{c.strip()}") for r in args.rows.split(",") for c in args.cols.split(",")]
    summary: dict = {
        "command": " ".join(["python"] + sys.argv), "pattern": args.pattern, "method": args.method,
        "bound": args.bound, "hardware": args.hardware, "targets": targets,
        "epochs": {"prune": args.prune_epochs, "retrain": args.retrain_epochs}, "geometries": [],
    }
    for xbar in geos:
        dense_cost = network_cost(dense_model, xbar, "dense", hw, input_shape).as_dict(layers=False)
        runs, best = [], None
        for target in targets:
            folder = out / "runs" / f"{args.pattern}_{args.method}_{target:g}x_{xbar}"
            try:
                res = cached_prune(args, folder, pattern=args.pattern, crossbar=str(xbar), target_compression=target,
                                   method=args.method, prune_epochs=args.prune_epochs,
                                   retrain_epochs=args.retrain_epochs)
            except ConfigError as exc:
                print(f"{xbar} {target:g}x: not reachable: {exc}", flush=True)
                break
            row = {k: res[k] for k in ("target_compression", "compression", "crossbars_pruned",
                                       "accuracy_pruned", "accuracy_loss_points")}
            runs.append(row)
            summary["accuracy_dense"] = res["accuracy_dense"]
            loss = res["accuracy_loss_points"]
            print(f"{xbar} {target:g}x -> {res['compression']}x, loss {loss:+.2f} pt", flush=True)
            if res["accuracy_loss_points"] <= args.bound:
                best = {**row, "cost": _cost(folder / "model.pt", xbar, scheme, hw, input_shape)}
            elif res["accuracy_loss_points"] > args.bound + args.stop_margin:
                break
        summary["geometries"].append({"crossbar": str(xbar), "crossbars_dense": dense_cost["crossbars"],
                                      "dense_cost": dense_cost, "runs": runs, "best": best})
        reached = [g for g in summary["geometries"] if g["best"]]
        if reached:
            summary["sweet_spot"] = {
                "energy": min(reached, key=lambda g: g["best"]["cost"]["energy_nj"])["crossbar"],
                "area": min(reached, key=lambda g: g["best"]["cost"]["area_mm2"])["crossbar"],
                "edp": min(reached, key=lambda g: g["best"]["cost"]["edp"])["crossbar"],
            }
        summary["wall_time_s"] = round(time.time() - t0, 1)
        summary["provenance"] = provenance()
        save_json(summary, out / "design_space.json")
        save_text(markdown(summary), out / "design_space.md")
    if "accuracy_dense" not in summary:
        raise ConfigError("none of the runs could be made (every target unreachable); lower --targets")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
