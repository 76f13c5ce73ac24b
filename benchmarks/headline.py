"""Issue-10 protocol: long-schedule recipes, ablations and the headline ladder, chosen on a validation split.

Every run starts from the shipped dense model (or ``--dense``), trains on ``--limit-train`` images with
``--validation`` training images held out (a fixed split), and gets the same number of epochs
(``--epochs``, pruning + retraining). A run is named ``RECIPE@PATTERN@TARGET[@FIELD=VALUE...]``, for
example ``ft@subrow@16``, ``kd-rewind@crossbar@4`` or ``kd@subrow@40@packing=network`` (extra
:class:`pimprune.workflows.config.PruneConfig` string fields); ``control`` is the dense model given the same recipe with
nothing pruned, and ``capacity@subrow@16`` is unstructured pruning (global magnitude, first conv and
classifier dense) keeping as many weights as the finished ``<best recipe>@subrow@16`` run.

Recipes (all one-shot unless named; ``E`` = ``--epochs``):

- ``ft``: one-shot, masked fine-tuning for E epochs at lr 0.01 (cosine);
- ``rewind``: learning-rate rewinding (Renda et al. 2020): fine-tuning at the dense model's lr 0.1;
- ``kd``: ``ft`` with distillation from the dense model (weight 0.9, T 4);
- ``kd-rewind``: both;
- ``gradual`` / ``admm``: E/2 pruning epochs (cubic schedule / ADMM, lr 0.01) + E/2 retraining, with kd.

Finished runs are reused (the folder's result.json); a killed run continues from its checkpoint.
The table (markdown and JSON) is written to ``--out``. Loss is measured from the better of the
dense model and the control run, on the test split; choices are made on ``accuracy_val``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import add_prune_run_args, cached_prune, script_main  # noqa: E402


@dataclass(frozen=True)
class Recipe:
    method: str = "oneshot"
    lr: float = 0.01
    distill: float = 0.0
    split: bool = False  # half the epochs pruning (gradual / admm), half retraining


RECIPES = {
    "ft": Recipe(),
    "rewind": Recipe(lr=0.1),
    "kd": Recipe(distill=0.9),
    "kd-rewind": Recipe(lr=0.1, distill=0.9),
    "gradual": Recipe(method="gradual", distill=0.9, split=True),
    "admm": Recipe(method="admm", distill=0.9, split=True),
}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_prune_run_args(p)
    p.add_argument("--crossbar", default="32x32")
    p.add_argument("--epochs", type=int, default=30, help="pruning + retraining epochs of every run")
    p.add_argument("--runs", default="", help="comma-separated run names RECIPE@PATTERN@TARGET, control, "
                   "capacity@PATTERN@TARGET[@RECIPE]")
    p.add_argument("--out", required=True)
    p.add_argument("--publish", default="", help="comma-separated FOLDER=RUN: copy the finished run's model.pt, "
                   "model.json, result.json (and placement.json) to results/headline/FOLDER")
    p.set_defaults(validation=5000, limit_train=20000, bn_recalibrate=50)
    return p.parse_args(argv)


def _fields(args, recipe: Recipe, pattern: str, target: float) -> dict:
    pe = args.epochs // 2 if recipe.split else 0
    return dict(pattern=pattern, crossbar=args.crossbar, target_compression=target, method=recipe.method,
                prune_epochs=pe, retrain_epochs=args.epochs - pe, prune_lr=recipe.lr, retrain_lr=recipe.lr,
                distill=recipe.distill)


def _kept_weights(folder: Path, keep_dense=("first", "last")) -> int:
    """Non-zero weights of the prunable layers of a finished run's model."""
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
    from pimprune.pruning.budgets import Projector, PruneTarget
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


def _parse(name: str) -> list[str]:
    """``name`` split at ``@`` and checked; a bad name is a one-line ConfigError."""
    import dataclasses

    from pimprune.errors import ConfigError
    from pimprune.workflows.config import PruneConfig

    parts = name.split("@")
    bad = ConfigError(f"run name {name!r} must be control[@RECIPE], capacity@PATTERN@TARGET[@RECIPE] or "
                      f"RECIPE@PATTERN@TARGET[@FIELD=VALUE...] with RECIPE one of {', '.join(RECIPES)}")
    recipes = [parts[1] if parts[0] == "control" and len(parts) > 1 else None,
               parts[3] if parts[0] == "capacity" and len(parts) > 3 else None,
               parts[0] if parts[0] not in ("control", "capacity") else None]
    if any(r is not None and r not in RECIPES for r in recipes):
        raise bad
    if parts[0] != "control":
        try:
            float(parts[2])
        except (IndexError, ValueError):
            raise bad from None
    if parts[0] not in ("control", "capacity"):
        names = {f.name for f in dataclasses.fields(PruneConfig)}
        if any("=" not in f or f.split("=", 1)[0] not in names for f in parts[3:]):
            raise bad
    return parts


def run_one(args, name: str) -> dict:
    out = Path(args.out)
    parts = _parse(name)
    if parts[0] == "control":
        fields = _fields(args, RECIPES[parts[1] if len(parts) > 1 else "ft"], "subrow", 1.0)
    elif parts[0] == "capacity":
        pattern = parts[1]
        ref = out / f"{parts[3] if len(parts) > 3 else 'kd'}@{pattern}@{parts[2]}"
        if not (ref / "result.json").exists():
            raise SystemExit(f"error: {name} needs the finished run {ref}")
        fields = _fields(args, RECIPES[parts[3] if len(parts) > 3 else "kd"], "unstructured",
                         _unstructured_target(args, _kept_weights(ref)))
        fields["saliency"] = "magnitude"
    else:
        fields = _fields(args, RECIPES[parts[0]], parts[1], float(parts[2]))
        fields.update({k: v for k, v in (p.split("=", 1) for p in parts[3:])})  # e.g. packing=network
    return cached_prune(args, out / name, **fields)


def _row(name: str, r: dict, ref: float) -> dict:
    return {
        "run": name, "pattern": r["pattern"], "target": r["target_compression"], "compression": r["compression"],
        "network_compression": (r.get("network_packing") or {}).get("compression"),
        "energy_nj": (r.get("hardware") or {}).get("energy_nj"),
        "crossbars": r["crossbars_pruned"], "val": r.get("accuracy_val"), "test": r["accuracy_pruned"],
        "loss_points": round(100 * (ref - r["accuracy_pruned"]), 2), "epochs": r["epochs"],
        "wall_time_s": r["wall_time_s"],
    }


def table(args) -> dict:
    out = Path(args.out)
    results = {d.name: json.loads((d / "result.json").read_text()) for d in sorted(out.iterdir())
               if (d / "result.json").exists()}
    dense = next(iter(results.values()))["accuracy_dense"] if results else None
    control = results.get("control", {}).get("accuracy_pruned")
    ref = max(a for a in (dense, control) if a is not None) if results else None
    rows = [_row(n, r, ref) for n, r in results.items()]
    summary = {"reference_accuracy": ref, "dense_accuracy": dense, "control_accuracy": control,
               "epochs_per_run": args.epochs, "limit_train": args.limit_train, "validation": args.validation,
               "crossbar": args.crossbar, "rows": rows}
    lines = ["| run | pattern | compression (per layer) | crossbars | network packing | val acc | test acc | "
             "loss (pt) | energy nJ | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["pattern"], r["compression"] or 0, r["run"])):
        lines.append(f"| {r['run']} | {r['pattern']} | {r['compression']} | {r['crossbars']} | "
                     f"{r['network_compression'] or '-'} | {r['val']} | {r['test']} | {r['loss_points']} | "
                     f"{r['energy_nj'] or '-'} | {r['wall_time_s']} |")
    (out / "headline.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "headline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def publish(args, pairs: str, dest: Path = Path("results/headline")) -> None:
    """Copy finished runs into the committed headline folders."""
    import shutil

    for pair in (p for p in pairs.split(",") if p.strip()):
        if "=" not in pair:
            from pimprune.errors import ConfigError

            raise ConfigError(f"--publish takes FOLDER=RUN pairs, got {pair!r}")
        folder, run = pair.split("=", 1)
        src = Path(args.out) / run
        if not (src / "result.json").exists():
            raise SystemExit(f"error: {run} has not finished in {args.out}")
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for name in ("model.pt", "model.json", "result.json", "placement.json"):
            if (src / name).exists():
                shutil.copy2(src / name, dest / folder / name)
        (dest / folder / "RUN").write_text(run + "\n")


def main(argv=None) -> int:
    args = parse(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    for name in names:  # every name checked before anything is written
        _parse(name)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for name in names:
        run_one(args, name)
    table(args)
    publish(args, args.publish)
    return 0


if __name__ == "__main__":
    raise SystemExit(script_main(main))
