"""Headline protocol: long-schedule recipes, ablations, seeds and the headline ladder, chosen on validation.

Every run starts from ``--dense`` (a dense model that never saw the validation images), trains on
``--limit-train`` images with ``--validation`` training images held out (the fixed split the dense model
was trained without), and gets the same number of epochs (``--epochs``, pruning + retraining). Run names,
recipes, seeds and the selection rules are those of :mod:`pimprune.workflows.headline`, e.g.
``kd@subrow-channel@16``, ``kd@crossbar@8@packing=network@seed=2``, ``control``, ``capacity@subrow@16``.
``--seeds 0,1,2`` runs every name once per seed.

Finished runs are reused (the folder's result.json); a killed run continues from its checkpoint.
Written to ``--out``: ``headline.md`` / ``headline.json`` (every run, every family x target cell with
mean and standard deviation over seeds, and each headline row's choice: the highest compression whose
mean validation loss is within its bound among the cells with ``--min-seeds`` seeds, with its mean test loss).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import add_prune_run_args, cached_prune, script_main  # noqa: E402

from pimprune.workflows.config import PruneConfig  # noqa: E402
from pimprune.workflows.headline import (  # noqa: E402
    References,
    RunName,
    cells,
    headline_table,
    parse_run_name,
    run_name,
    with_seeds,
)

CONFIG_FIELDS = [f.name for f in dataclasses.fields(PruneConfig)]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_prune_run_args(p)
    p.add_argument("--crossbar", default="32x32")
    p.add_argument("--epochs", type=int, default=30, help="pruning + retraining epochs of every run")
    p.add_argument("--runs", default="", help="comma-separated run names RECIPE@PATTERN@TARGET[@FIELD=VALUE], "
                   "control, capacity@PATTERN@TARGET[@RECIPE]")
    p.add_argument("--seeds", default="", help="comma-separated seeds: every run once per seed (default: --seed)")
    p.add_argument("--min-seeds", type=int, default=3, help="seeds a cell needs to be chosen for a headline row "
                   "(default 3; cells with fewer stay in the ladder)")
    p.add_argument("--out", required=True)
    p.add_argument("--publish", default="", help="comma-separated FOLDER=RUN: copy the finished run's model.pt, "
                   "model.json, result.json (and placement.json) to results/headline/FOLDER")
    p.set_defaults(validation=5000, limit_train=20000, bn_recalibrate=50)
    return p.parse_args(argv)


def _kept_weights(folder: Path) -> int:
    """Non-zero weights of the prunable layers (all but the first conv and the classifier) of a finished run."""
    import torch

    from pimprune.mapping.matrices import extract_layers
    from pimprune.training.checkpoint import load_model

    model, _ = load_model(folder / "model.pt")
    layers = extract_layers(model)
    skip = {layers[0].name, layers[-1].name}
    return int(sum(int(torch.count_nonzero(ly.module.weight)) for ly in layers if ly.name not in skip))


def _unstructured_target(args, kept: int) -> float:
    """Target compression at which global-magnitude unstructured pruning keeps ``kept`` weights (bisection)."""
    import torch

    from pimprune.geometry import Crossbar
    from pimprune.pruning.projector import Projector
    from pimprune.pruning.target import PruneTarget
    from pimprune.training.checkpoint import load_model

    model, meta = load_model(args.dense)
    spec = meta["spec"]
    example = torch.zeros(1, spec["in_channels"], spec["input_size"], spec["input_size"])
    weights = {n: p.detach() for n, p in model.named_parameters()}
    lo, hi = 1.0, 400.0
    for _ in range(40):
        mid = (lo * hi) ** 0.5
        proj = Projector(model, PruneTarget("unstructured", Crossbar.parse(args.crossbar), mid), example)
        masks = proj({n: weights[n] for n in proj.params})
        total = int(sum(int(m.sum()) for m in masks.values()))
        lo, hi = (mid, hi) if total > kept else (lo, mid)
    return round(hi, 4)


def run_one(args, name: str) -> dict:
    out = Path(args.out)
    run: RunName = parse_run_name(name, CONFIG_FIELDS)
    seeded = argparse.Namespace(**{**vars(args), "seed": run.seed})
    if run.kind == "control":
        fields = dataclasses.replace(run, pattern="subrow", target=1.0).prune_fields(args.epochs, args.crossbar)
    elif run.kind == "capacity":
        # the pruned run whose kept weights it matches (with its fields, e.g. packing=network)
        ref = out / run_name(dataclasses.replace(run, kind="prune"))
        if not (ref / "result.json").exists():
            raise SystemExit(f"error: {name} needs the finished run {ref}")
        target = _unstructured_target(args, _kept_weights(ref))
        fields = dataclasses.replace(run, pattern="unstructured", target=target, fields=()).prune_fields(
            args.epochs, args.crossbar)
        fields["saliency"] = "magnitude"
    else:
        fields = run.prune_fields(args.epochs, args.crossbar)
    return cached_prune(seeded, out / name, **fields)


def _run_row(name: str, r: dict, ref: References) -> dict:
    return {
        "run": name, "pattern": r["pattern"], "target": r["target_compression"], "compression": r["compression"],
        "network_compression": (r.get("network_packing") or {}).get("compression"),
        "energy_nj": (r.get("hardware") or {}).get("energy_nj"), "crossbars": r["crossbars_pruned"],
        "val": r.get("accuracy_val"), "test": r["accuracy_pruned"], "seed": r.get("seed"),
        "val_loss": None if r.get("accuracy_val") is None else round(100 * (ref.val - r["accuracy_val"]), 2),
        "loss_points": round(100 * (ref.test - r["accuracy_pruned"]), 2), "epochs": r["epochs"],
        "wall_time_s": r["wall_time_s"],
    }


def _fmt(mean, std) -> str:
    return "-" if mean is None else f"{mean:.2f} +- {std:.2f}"


def _markdown(runs: list[dict], all_cells, chosen: list[dict]) -> list[str]:
    lines = ["## Headline rows (chosen on validation; test loss over seeds)", "",
             "| row | bound (pt) | chosen | compression | network packing | seeds | val loss | test loss | claims |",
             "|---|---|---|---|---|---|---|---|---|"]
    for h in chosen:
        c = h["chosen"]
        if c is None:
            lines.append(f"| {h['row']} | {h['bound']} | none within the bound | | | | | | no |")
            continue
        lines.append(f"| {h['row']} | {h['bound']} | {c['family']} @ {c['target']:g} | {c['compression']} | "
                     f"{c['network_compression'] or '-'} | {c['seeds']} | "
                     f"{_fmt(c['val_loss_mean'], c['val_loss_std'])} | {_fmt(c['test_loss_mean'], c['test_loss_std'])}"
                     f" | {'yes' if h['claims_bound'] else 'no'} |")
    lines += ["", "## Cells (family x target, mean +- std over seeds, losses in points)", "",
              "| family | target | compression | network packing | crossbars | seeds | val loss | test loss |",
              "|---|---|---|---|---|---|---|---|"]
    for c in (c.as_dict() for c in all_cells):
        lines.append(f"| {c['family']} | {c['target']:g} | {c['compression']} | {c['network_compression'] or '-'} | "
                     f"{c['crossbars']} | {c['seeds']} | {_fmt(c['val_loss_mean'], c['val_loss_std'])} | "
                     f"{_fmt(c['test_loss_mean'], c['test_loss_std'])} |")
    lines += ["", "## Runs", "", "| run | pattern | compression | crossbars | network packing | val acc | test acc | "
              "val loss | test loss | energy nJ | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["pattern"], r["compression"] or 0, r["run"])):
        lines.append(f"| {r['run']} | {r['pattern']} | {r['compression']} | {r['crossbars']} | "
                     f"{r['network_compression'] or '-'} | {r['val']} | {r['test']} | {r['val_loss']} | "
                     f"{r['loss_points']} | {r['energy_nj'] or '-'} | {r['wall_time_s']} |")
    return lines


def table(args) -> dict:
    out = Path(args.out)
    results = {d.name: json.loads((d / "result.json").read_text()) for d in sorted(out.iterdir())
               if (d / "result.json").exists()}
    if not results:
        return {}
    ref = References.from_results(results)
    runs = [_run_row(n, r, ref) for n, r in results.items()]
    all_cells = cells(results, CONFIG_FIELDS, ref)
    chosen = headline_table(all_cells, args.min_seeds)
    first = next(iter(results.values()))
    summary = {"reference": dataclasses.asdict(ref), "dense_accuracy": first["accuracy_dense"],
               "dense_accuracy_val": first.get("accuracy_dense_val"), "epochs_per_run": args.epochs,
               "limit_train": args.limit_train, "validation": args.validation, "crossbar": args.crossbar,
               "headline": chosen, "cells": [c.as_dict() for c in all_cells], "runs": runs}
    lines = _markdown(runs, all_cells, chosen)
    (out / "headline.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "headline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def publish(args, pairs: str, dest: Path = Path("results/headline")) -> None:
    """Copy finished runs into the committed headline folders."""
    import shutil

    for pair in (p for p in pairs.split(",") if p.strip()):
        folder, run = pair.split("=", 1)
        src = Path(args.out) / run
        if not (src / "result.json").exists():
            raise SystemExit(f"error: {run} has not finished in {args.out}")
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for name in ("model.pt", "model.json", "result.json", "placement.json"):
            if (src / name).exists():
                shutil.copy2(src / name, dest / folder / name)
        (dest / folder / "RUN").write_text(run + "\n")


def _check_publish(pairs: str) -> None:
    from pimprune.errors import ConfigError

    for pair in (p for p in pairs.split(",") if p.strip()):
        if "=" not in pair:
            raise ConfigError(f"--publish takes FOLDER=RUN pairs, got {pair!r}")


def main(argv=None) -> int:
    args = parse(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or [args.seed]
    except ValueError:
        from pimprune.errors import ConfigError

        raise ConfigError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {args.seeds!r}") from None
    names = with_seeds(names, seeds, CONFIG_FIELDS)  # every name checked before anything is written
    _check_publish(args.publish)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for name in names:
        run_one(args, name)
    table(args)
    publish(args, args.publish)
    return 0


if __name__ == "__main__":
    raise SystemExit(script_main(main))
