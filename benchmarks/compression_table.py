"""Compression table: each pattern pruned along a ladder of targets, side by side.

For every pattern and target compression this runs ``pimprune prune`` (in
process) from the same dense checkpoint with the same epochs, then reports per
pattern the highest compression whose accuracy loss is at most 0.5 and 1 point.
A control row fine-tunes the dense model for the same extra epochs (target 1:
nothing pruned), so the loss is not flattered by the extra training.

Finished runs (``result.json`` present) are skipped, so a killed benchmark
continues where it stopped when started again with the same arguments.

CPU protocol (2 cores, about an hour): see docs/results.md for the command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness import add_prune_run_args, cached_prune, numbers, script_main

from pimprune.errors import ConfigError
from pimprune.training.checkpoint import save_json, save_text
from pimprune.training.runtime import provenance


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_prune_run_args(p)
    p.add_argument("--patterns", default="subrow,subcolumn,row,filter,crossbar,unstructured")
    p.add_argument("--targets", default="4,8,16,24,32", help="comma-separated target compressions")
    p.add_argument("--crossbar", default="32x32")
    p.add_argument("--method", default="auto")
    p.add_argument("--allocation", default="global", choices=["global", "uniform"])
    p.add_argument("--prune-epochs", type=int, default=1)
    p.add_argument("--retrain-epochs", type=int, default=2)
    p.add_argument("--prune-lr", type=float, default=0.01)
    p.add_argument("--retrain-lr", type=float, default=0.01)
    p.add_argument("--no-control", action="store_true", help="skip the dense control row")
    p.add_argument("--out", required=True, help="results folder")
    return p.parse_args(argv)


def _run(args, out: Path, pattern: str, target: float, method: str) -> dict:
    tag = "" if args.allocation == "global" and args.retrain_lr == 0.01 else f"_{args.allocation}_lr{args.retrain_lr:g}"
    tag += "" if args.saliency == "auto" else f"_{args.saliency}"
    folder = out / "runs" / f"{pattern}_{method}_{target:g}x_{args.crossbar}{tag}"
    return cached_prune(
        args, folder, pattern=pattern, crossbar=args.crossbar, target_compression=target, method=method,
        allocation=args.allocation, prune_epochs=args.prune_epochs, retrain_epochs=args.retrain_epochs,
        prune_lr=args.prune_lr, retrain_lr=args.retrain_lr,
    )


def best_at(rows: list[dict], bound: float) -> dict | None:
    ok = [r for r in rows if r["accuracy_loss_points"] <= bound]
    return max(ok, key=lambda r: r["compression"]) if ok else None


def markdown(summary: dict) -> str:
    lines = [
        f"Dense accuracy {100 * summary['accuracy_dense']:.2f}% ({summary['epochs']['dense']} epochs); "
        f"each run: {summary['epochs']['prune']} pruning + {summary['epochs']['retrain']} retraining epochs"
        f" (method {summary['method']}), crossbar {summary['crossbar']}.",
        "",
    ]
    if summary.get("control"):
        c = summary["control"]
        lines += [f"Control (dense, same extra epochs, nothing pruned): {100 * c['accuracy_pruned']:.2f}% "
                  f"({c['accuracy_loss_points']:+.2f} points loss).", ""]
    lines += [
        "| pattern | best compression, loss <= 0.5 pt | accuracy | best compression, loss <= 1 pt | accuracy |",
        "|---|---|---|---|---|",
    ]
    for pattern, info in summary["patterns"].items():
        cells = []
        for key in ("le_0.5", "le_1.0"):
            r = info[key]
            if r:
                cells += [f"{r['compression']:.2f}x ({r['crossbars_pruned']} crossbars)",
                          f"{100 * r['accuracy_pruned']:.2f}%"]
            else:
                cells += ["-", "-"]
        lines.append(f"| {pattern} | " + " | ".join(cells) + " |")
    lines += ["", "All runs:", "",
              "| pattern | method | saliency | target | compression | crossbars | accuracy | loss (pt) |",
              "|---|---|---|---|---|---|---|---|"]
    for pattern, info in summary["patterns"].items():
        for r in info["runs"]:
            lines.append(
                f"| {pattern} | {r['method']} | {r['saliency']} | {r['target_compression']:g} | "
                f"{r['compression']:.2f}x | "
                f"{r['crossbars_pruned']} | {100 * r['accuracy_pruned']:.2f}% | {r['accuracy_loss_points']:+.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    t0 = time.time()
    patterns = [p for p in args.patterns.split(",") if p]
    targets = numbers(args.targets, "--targets")
    summary: dict = {"command": " ".join(["python"] + sys.argv), "crossbar": args.crossbar,
                     "method": args.method, "patterns": {}}
    control = None if args.no_control else _run(args, out, "subrow", 1.0, args.method)
    summary["control"] = control
    runs: dict[str, list[dict]] = {p: [] for p in patterns}
    # target-major order: every pattern gets the easy targets first, and the summary is
    # rewritten after every run, so a cut-short benchmark still leaves a consistent table
    for target in targets:
        for pattern in patterns:
            try:
                res = _run(args, out, pattern, target, args.method)
            except ConfigError as exc:  # e.g. filter pruning cannot reach the target
                print(f"{pattern} {target:g}x: not reachable: {exc}", flush=True)
                summary.setdefault("unreachable", {})[f"{pattern} {target:g}x"] = str(exc)
                continue
            runs[pattern].append({k: res[k] for k in (
                "method", "saliency", "target_compression", "compression", "crossbars_pruned", "crossbars_dense",
                "accuracy_dense", "accuracy_pruned", "accuracy_loss_points", "epochs")})
            summary["accuracy_dense"] = res["accuracy_dense"]
            summary["epochs"] = {"dense": res["epochs"]["dense"], "prune": args.prune_epochs,
                                 "retrain": args.retrain_epochs}
            print(f"{pattern} {target:g}x -> {res['compression']}x, loss {res['accuracy_loss_points']:+.2f} pt",
                  flush=True)
            summary["patterns"] = {
                p: {"runs": r, "le_0.5": best_at(r, 0.5), "le_1.0": best_at(r, 1.0)} for p, r in runs.items() if r
            }
            summary["wall_time_s"] = round(time.time() - t0, 1)
            summary["provenance"] = provenance()
            save_json(summary, out / "compression_table.json")
            save_text(markdown(summary), out / "compression_table.md")
    if "accuracy_dense" not in summary:
        raise ConfigError("none of the runs could be made (every target unreachable); lower --targets")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
