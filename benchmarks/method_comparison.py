"""ADMM vs gradual vs one-shot pruning at equal total epochs, for several epoch budgets.

Every method starts from the same dense checkpoint and gets the same number of
epochs (pruning + retraining; one-shot spends all of them retraining). Writes
``method_comparison.json`` and ``.md`` to ``--out``; finished runs are skipped,
so a killed benchmark continues when started again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import add_prune_run_args, cached_prune, epoch_budgets, script_main

from pimprune.training.checkpoint import save_json, save_text
from pimprune.training.runtime import provenance


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_prune_run_args(p)
    p.add_argument("--pattern", default="subrow")
    p.add_argument("--crossbar", default="32x32")
    p.add_argument("--target", type=float, default=16.0)
    p.add_argument("--budgets", default="1+2,4+4", help="prune+retrain epochs, comma-separated")
    p.add_argument("--methods", default="admm,gradual,oneshot")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    rows = []
    for pe, re_ in epoch_budgets(args.budgets):
        for method in args.methods.split(","):
            tag = "" if args.saliency == "auto" else f"_{args.saliency}"
            folder = out / "runs" / f"{args.pattern}_{method}_{pe}+{re_}_{args.target:g}x_{args.crossbar}{tag}"
            res = cached_prune(args, folder, pattern=args.pattern, crossbar=args.crossbar,
                               target_compression=args.target, method=method, prune_epochs=pe, retrain_epochs=re_)
            rows.append({"method": method, "saliency": res.get("saliency", "magnitude"),
                         "prune_epochs": pe, "retrain_epochs": re_, "total_epochs": pe + re_,
                         "compression": res["compression"], "accuracy_dense": res["accuracy_dense"],
                         "accuracy_pruned": res["accuracy_pruned"], "loss_points": res["accuracy_loss_points"]})
            print(rows[-1], flush=True)
    lines = [f"{args.pattern} on {args.crossbar}, target {args.target:g}x, saliency {rows[0]['saliency']}, "
             f"dense accuracy {100 * rows[0]['accuracy_dense']:.2f}%", "",
             "| epochs (prune+retrain) | method | compression | accuracy | loss (pt) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['prune_epochs']}+{r['retrain_epochs']} | {r['method']} | {r['compression']:.2f}x | "
                     f"{100 * r['accuracy_pruned']:.2f}% | {r['loss_points']:+.2f} |")
    winners = {}
    for total in sorted({r["total_epochs"] for r in rows}):
        best = max((r for r in rows if r["total_epochs"] == total), key=lambda r: r["accuracy_pruned"])
        winners[str(total)] = best["method"]
    lines += ["", "Winner per total epochs: " + ", ".join(f"{k}: {v}" for k, v in winners.items())]
    save_json({"rows": rows, "winners": winners, "command": " ".join(["python"] + sys.argv),
               "provenance": provenance()}, out / "method_comparison.json")
    save_text("\n".join(lines) + "\n", out / "method_comparison.md")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
