"""Physical-compression headline: on-chip accuracy of quantization-aware runs, chosen on validation.

Every finished run in ``--out`` that was retrained for its own weight bits (``prune --weight-bits``,
run names ``...@weight_bits=4``) is evaluated **on the chip** at those bits (the ``--numerics``
preset, lossless ADC, lognormal cell variation ``--sigma``, ``--repeats`` device samples) on the
fixed validation split; seeds of one run name form a cell (mean over seeds and samples). The row
``physical-1pt`` picks the highest *physical* compression (dense crossbars at the preset's 16-bit
weights over the run's arrays at its own bits) whose mean on-chip validation loss from the fp32
dense model is within ``--bound`` points; only the chosen cell is evaluated on the test split.

Evaluations are cached beside each run (``onchip-<split>-s<sigma>.json``). Written: ``physical.json``
and ``physical.md`` in ``--out``; ``--publish`` copies the chosen seed-0 run to
``results/headline/physical-1pt`` with its ``onchip.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_main  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder of finished headline runs (benchmarks/headline.py --out)")
    p.add_argument("--numerics", default="isaac")
    p.add_argument("--sigma", type=float, default=0.05, help="cell variation sigma (default 0.05)")
    p.add_argument("--repeats", type=int, default=5, help="device samples per evaluation (default 5)")
    p.add_argument("--bound", type=float, default=1.0, help="points of accuracy (default 1)")
    p.add_argument("--validation", type=int, default=5000)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--publish", action="store_true", help="copy the chosen run to results/headline/physical-1pt")
    return p.parse_args(argv)


def on_chip(args, folder: Path, split: str) -> dict:
    """The cached on-chip evaluation of ``folder``'s model on ``split`` (validation or test)."""
    from pimprune.workflows.config import RunConfig
    from pimprune.workflows.onchip_eval import OnChipEval, run_onchip_evaluate

    cache = folder / f"onchip-{split}-s{args.sigma:g}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    run = RunConfig(dataset=args.dataset, batch_size=500, device=args.device, augment=False,
                    validation=args.validation if split == "validation" else 0)
    settings = OnChipEval(numerics=args.numerics, overrides=(("numerics.variation_sigma", args.sigma),),
                          repeats=args.repeats)
    res = run_onchip_evaluate(str(folder / "model.pt"), run, settings)
    cache.write_text(json.dumps(res, indent=2) + "\n")
    return res


def cells(args) -> dict[str, list[dict]]:
    """Run name without its seed -> the rows of its finished quantization-aware seeds."""
    out: dict[str, list[dict]] = {}
    for folder in sorted(Path(args.out).iterdir()):
        if not (folder / "result.json").exists():
            continue
        r = json.loads((folder / "result.json").read_text())
        if not r.get("quantization") or not r["quantization"].get("weight_bits"):
            continue
        chip = on_chip(args, folder, "validation")
        row = {"run": folder.name, "folder": str(folder), "weight_bits": r["quantization"]["weight_bits"],
               "train_noise": r["quantization"]["train_noise"], "compression": r["compression"],
               "physical_compression": r["physical"]["compression"], "val_fp32": r["accuracy_val"],
               "val_onchip": chip["accuracy_mean"], "val_onchip_std": chip["accuracy_std"],
               "dense_val": r["accuracy_dense_val"], "dense_test": r["accuracy_dense"],
               "test_fp32": r["accuracy_pruned"], "epochs": r["epochs"]}
        row["val_loss"] = round(100 * (row["dense_val"] - row["val_onchip"]), 2)
        out.setdefault(folder.name.split("@seed=")[0], []).append(row)
    return out


def choose(args, all_cells: dict[str, list[dict]]) -> dict | None:
    """The cell with the highest physical compression whose mean on-chip validation loss is within the bound."""
    fit = [(statistics.fmean(r["physical_compression"] for r in rows),
            -statistics.fmean(r["val_loss"] for r in rows), name) for name, rows in all_cells.items()
           if statistics.fmean(r["val_loss"] for r in rows) <= args.bound]
    if not fit:
        return None
    name = max(fit)[2]  # the highest physical compression; on a tie the lower validation loss
    rows = all_cells[name]
    tests = [on_chip(args, Path(r["folder"]), "test") for r in rows]
    losses = [round(100 * (r["dense_test"] - t["accuracy_mean"]), 2) for r, t in zip(rows, tests, strict=True)]
    return {"cell": name, "seeds": len(rows), "physical_compression": statistics.fmean(
        r["physical_compression"] for r in rows), "compression": statistics.fmean(r["compression"] for r in rows),
        "val_loss_mean": round(statistics.fmean(r["val_loss"] for r in rows), 2),
        "test_onchip": [t["accuracy_mean"] for t in tests], "test_loss": losses,
        "test_loss_mean": round(statistics.fmean(losses), 2), "claims_bound": statistics.fmean(losses) <= args.bound,
        "onchip_test": tests}  # fmt: skip


def markdown(args, all_cells, chosen) -> list[str]:
    lines = [f"## physical-1pt (on-chip: {args.numerics} numerics at the run's bits, lossless ADC, sigma "
             f"{args.sigma:g}, {args.repeats} device samples; losses from the fp32 dense model)", "",
             "| run | weight bits | train noise | compression | physical | val fp32 | val on-chip | val loss |",
             "|---|---|---|---|---|---|---|---|"]
    for rows in all_cells.values():
        for r in rows:
            lines.append(f"| {r['run']} | {r['weight_bits']} | {r['train_noise']} | {r['compression']} | "
                         f"{r['physical_compression']} | {r['val_fp32']} | {r['val_onchip']:.4f} +- "
                         f"{r['val_onchip_std']:.4f} | {r['val_loss']} |")
    lines.append("")
    if chosen is None:
        lines.append(f"No cell is within {args.bound} point on validation.")
    else:
        lines.append(f"Chosen on validation: **{chosen['cell']}**, {chosen['physical_compression']:.2f}x physical "
                     f"({chosen['compression']:.2f}x crossbars), {chosen['seeds']} seed(s); on-chip test loss "
                     f"{chosen['test_loss_mean']} points ({'claims' if chosen['claims_bound'] else 'misses'} the "
                     f"{args.bound}-point bound).")
    return lines


def publish(chosen: dict, all_cells: dict, dest: Path = Path("results/headline/physical-1pt")) -> None:
    row = all_cells[chosen["cell"]][0]
    src = Path(row["folder"])
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "model.json", "result.json", "placement.json"):
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)
    (dest / "onchip.json").write_text(json.dumps(chosen["onchip_test"][0], indent=2) + "\n")
    (dest / "RUN").write_text(row["run"] + "\n")


def main(argv=None) -> int:
    args = parse(argv)
    all_cells = cells(args)
    chosen = choose(args, all_cells)
    summary = {"settings": {k: v for k, v in vars(args).items() if k != "publish"}, "cells": all_cells,
               "chosen": {k: v for k, v in chosen.items() if k != "onchip_test"} if chosen else None}
    lines = markdown(args, all_cells, chosen)
    (Path(args.out) / "physical.json").write_text(json.dumps(summary, indent=2) + "\n")
    (Path(args.out) / "physical.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.publish and chosen is not None:
        publish(chosen, all_cells)
    return 0


if __name__ == "__main__":
    raise SystemExit(script_main(main))
