"""Headline experiments: named pruning runs, seeds, and compressions chosen on the validation split.

A run is named ``RECIPE@PATTERN@TARGET[@FIELD=VALUE...]`` (``kd@subrow@16@packing=network@seed=1``),
``control[@RECIPE]`` (the dense model given the same epochs, nothing pruned) or
``capacity@PATTERN@TARGET[@RECIPE]`` (unstructured pruning keeping as many weights as that run).
Runs that differ only in target and seed form a *family*; a headline row picks, among its families,
the highest compression whose **mean validation loss** over seeds is within the row's bound, and
reports the mean and spread of the test loss of the seeds at that compression (docs/design.md,
section 8: choices on validation, the test split read once per reported model).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pimprune.errors import ConfigError
from pimprune.pruning.quantization import QuantConfig


@dataclass(frozen=True)
class Recipe:
    """How a run trains after pruning (all runs get the same total epochs)."""

    method: str = "oneshot"
    lr: float = 0.01
    distill: float = 0.0
    split: bool = False  # half the epochs pruning (gradual / admm), half retraining


#: ``ft`` fine-tuning; ``rewind`` lr rewinding (Renda et al. 2020); ``kd`` distillation from the dense
#: model (weight 0.9, T 4); ``gradual`` / ``admm``: half the epochs pruning, half retraining, with kd.
RECIPES: dict[str, Recipe] = {
    "ft": Recipe(),
    "rewind": Recipe(lr=0.1),
    "kd": Recipe(distill=0.9),
    "kd-rewind": Recipe(lr=0.1, distill=0.9),
    "gradual": Recipe(method="gradual", distill=0.9, split=True),
    "admm": Recipe(method="admm", distill=0.9, split=True),
}

#: Run-name fields that are not pruning-config fields.
RUN_FIELDS = ("seed",)

#: Run-name fields of quantization-aware retraining (``@weight_bits=4@train_noise=0.05``), typed.
QUANT_FIELDS: dict[str, Any] = {f.name: {"weight_bits": int, "input_bits": int, "train_noise": float}.get(f.name, str)
                                for f in dataclasses.fields(QuantConfig)}


@dataclass(frozen=True)
class RunName:
    """A parsed run name."""

    kind: str  # "prune", "control" or "capacity"
    recipe: str
    pattern: str = "subrow"
    target: float = 1.0
    fields: tuple[tuple[str, str], ...] = ()
    seed: int = 0

    @property
    def family(self) -> str:
        """The name without target and seed: runs of one family differ only in compression and seed."""
        extra = "".join(f"@{k}={v}" for k, v in self.fields)
        if self.kind == "control":
            return f"control@{self.recipe}"
        return f"{self.kind}@{self.recipe}@{self.pattern}{extra}"

    def prune_fields(self, epochs: int, crossbar: str) -> dict[str, Any]:
        """:class:`~pimprune.workflows.config.PruneConfig` fields of this run (not capacity's target)."""
        recipe = RECIPES[self.recipe]
        pe = epochs // 2 if recipe.split else 0
        out = dict(pattern=self.pattern, crossbar=crossbar, target_compression=self.target, method=recipe.method,
                   prune_epochs=pe, retrain_epochs=epochs - pe, prune_lr=recipe.lr, retrain_lr=recipe.lr,
                   distill=recipe.distill)
        quant = {k: QUANT_FIELDS[k](v) for k, v in self.fields if k in QUANT_FIELDS}
        out.update({k: v for k, v in self.fields if k not in QUANT_FIELDS})
        if quant:
            out["quant"] = quant
        return out


def parse_run_name(name: str, config_fields: Iterable[str]) -> RunName:
    """``name`` parsed and checked against the recipes and ``config_fields``; a bad name is a ConfigError."""
    bad = ConfigError(f"run name {name!r} must be control[@RECIPE][@seed=N], capacity@PATTERN@TARGET[@RECIPE] "
                      f"or RECIPE@PATTERN@TARGET[@FIELD=VALUE...] with RECIPE one of {', '.join(RECIPES)}")
    parts = name.split("@")
    extra = [p for p in parts if "=" in p]
    head = [p for p in parts if "=" not in p]
    names = set(config_fields) | set(RUN_FIELDS) | set(QUANT_FIELDS)
    if any(p.split("=", 1)[0] not in names for p in extra):
        raise bad
    kv = dict(p.split("=", 1) for p in extra)
    try:
        seed = int(kv.pop("seed", 0))
    except ValueError:
        raise bad from None
    try:
        for k in set(kv) & set(QUANT_FIELDS):
            QUANT_FIELDS[k](kv[k])
    except ValueError:
        raise bad from None
    fields = tuple(sorted(kv.items()))
    if head[0] == "control":
        recipe = head[1] if len(head) > 1 else "ft"
        if recipe not in RECIPES or len(head) > 2 or fields:
            raise bad
        return RunName("control", recipe, seed=seed)
    kind = "capacity" if head[0] == "capacity" else "prune"
    recipe = (head[3] if len(head) > 3 else "kd") if kind == "capacity" else head[0]
    if recipe not in RECIPES or len(head) < 3 or len(head) > (4 if kind == "capacity" else 3):
        raise bad
    try:
        target = float(head[2])
    except ValueError:
        raise bad from None
    return RunName(kind, recipe, head[1], target, fields, seed)


def run_name(parsed: RunName) -> str:
    """The canonical name of a parsed run (seed 0 is left out, so earlier caches stay valid)."""
    if parsed.kind == "control":
        base = f"control@{parsed.recipe}" if parsed.recipe != "ft" else "control"
    elif parsed.kind == "capacity":
        base = f"capacity@{parsed.pattern}@{parsed.target:g}@{parsed.recipe}"
    else:
        base = f"{parsed.recipe}@{parsed.pattern}@{parsed.target:g}"
    base += "".join(f"@{k}={v}" for k, v in parsed.fields)
    return base + (f"@seed={parsed.seed}" if parsed.seed else "")


def with_seeds(names: Sequence[str], seeds: Sequence[int], config_fields: Iterable[str]) -> list[str]:
    """Every name once per seed (a name that fixes its own seed is kept as it is)."""
    fields = list(config_fields)
    out: list[str] = []
    for name in names:
        parsed = parse_run_name(name, fields)
        explicit = "@seed=" in name
        for s in ([parsed.seed] if explicit else seeds):
            full = run_name(dataclasses.replace(parsed, seed=s))
            if full not in out:
                out.append(full)
    return out


@dataclass
class Cell:
    """The seeds of one family at one target: means and spreads of what the runs measured."""

    family: str
    target: float
    runs: list[str] = field(default_factory=list)
    compressions: list[float] = field(default_factory=list)
    network_compressions: list[float] = field(default_factory=list)
    crossbar_counts: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)

    @property
    def seeds(self) -> int:
        """How many seeds ran."""
        return len(self.runs)

    @property
    def compression(self) -> float | None:
        """Per-layer compression, mean over seeds (seeds may keep slightly different crossbars)."""
        return _mean(self.compressions)

    @property
    def network_compression(self) -> float | None:
        """Network-packing compression, mean over seeds (None without network packing)."""
        return _mean(self.network_compressions)

    @property
    def crossbars(self) -> float | None:
        """Crossbars under the per-layer mapping, mean over seeds."""
        return _mean(self.crossbar_counts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary: mean and standard deviation (over seeds) of each loss, in points."""
        return {"family": self.family, "target": self.target, "runs": self.runs, "seeds": self.seeds,
                "compression": self.compression, "network_compression": self.network_compression,
                "crossbars": self.crossbars, **_stats("val_loss", self.val_loss),
                **_stats("test_loss", self.test_loss)}


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _stats(name: str, values: Sequence[float]) -> dict[str, float | None]:
    mean = round(statistics.fmean(values), 3) if values else None
    std = round(statistics.stdev(values), 3) if len(values) > 1 else (0.0 if values else None)
    return {f"{name}_mean": mean, f"{name}_std": std}


@dataclass(frozen=True)
class References:
    """Accuracies losses are measured from: the better of the dense model and the control, per split."""

    val: float
    test: float

    @classmethod
    def from_results(cls, results: Mapping[str, Mapping[str, Any]]) -> References:
        """References from finished runs (every run records the dense model's accuracies)."""
        if not results:
            raise ConfigError("no finished runs to measure losses from")
        first = next(iter(results.values()))
        controls = [r for n, r in results.items() if n.split("@")[0] == "control"]
        val = [first.get("accuracy_dense_val") or 0.0] + [r.get("accuracy_val") or 0.0 for r in controls]
        test = [first["accuracy_dense"]] + [r["accuracy_pruned"] for r in controls]
        control_val = statistics.fmean(val[1:]) if controls else 0.0
        control_test = statistics.fmean(test[1:]) if controls else 0.0
        return cls(val=max(val[0], control_val), test=max(test[0], control_test))


def cells(results: Mapping[str, Mapping[str, Any]], config_fields: Iterable[str], ref: References) -> list[Cell]:
    """Finished runs grouped by family and target, seeds together."""
    fields = list(config_fields)
    grouped: dict[tuple[str, float], Cell] = {}
    for name, r in results.items():
        parsed = parse_run_name(name, fields)
        cell = grouped.setdefault((parsed.family, parsed.target), Cell(parsed.family, parsed.target))
        cell.runs.append(name)
        for values, value in ((cell.compressions, r.get("compression")),
                              (cell.network_compressions, (r.get("network_packing") or {}).get("compression")),
                              (cell.crossbar_counts, r.get("crossbars_pruned"))):
            if value is not None:
                values.append(value)
        if r.get("accuracy_val") is not None:
            cell.val_loss.append(round(100 * (ref.val - r["accuracy_val"]), 2))
        cell.test_loss.append(round(100 * (ref.test - r["accuracy_pruned"]), 2))
    return sorted(grouped.values(), key=lambda c: (c.family, c.target))


@dataclass(frozen=True)
class Headline:
    """A headline row: the best of some families within a loss bound, by one compression metric."""

    name: str
    families: tuple[str, ...]
    bound: float  # points of accuracy
    metric: str = "compression"  # or "network_compression"


def select(all_cells: Sequence[Cell], row: Headline, min_seeds: int = 1) -> Cell | None:
    """The cell of ``row``'s families with the highest compression whose mean validation loss is within bound."""
    fit = [c for c in all_cells if c.family in row.families and c.seeds >= min_seeds and c.val_loss
           and statistics.fmean(c.val_loss) <= row.bound and getattr(c, row.metric) is not None]
    return max(fit, key=lambda c: (getattr(c, row.metric), -statistics.fmean(c.val_loss)), default=None)


def claims(cell: Cell, row: Headline) -> bool:
    """Whether the chosen cell claims the row's bound: its mean *test* loss over seeds is within it."""
    return bool(cell.test_loss) and statistics.fmean(cell.test_loss) <= row.bound


def _families(recipe: str, patterns: Sequence[str], extra: str = "") -> tuple[str, ...]:
    return tuple(f"prune@{recipe}@{p}{extra}" for p in patterns)


COARSE = ("filter", "row", "crossbar")
SUBROW = ("subrow", "subrow-channel")
#: Coarse patterns also tried with the output guard (``--guard outputs``; for ``row`` it is the default guard).
GUARDED = ("crossbar",)

#: The committed headline rows (results/headline/<name>), each with the families it chooses from.
HEADLINES: tuple[Headline, ...] = (
    Headline("subrow-0.5pt", _families("kd", SUBROW), 0.5),
    Headline("subrow-1pt", _families("kd", SUBROW), 1.0),
    Headline("coarse-1pt", (*_families("kd", COARSE), *_families("kd", GUARDED, "@guard=outputs")), 1.0),
    Headline("packed-1pt", _families("kd", SUBROW, "@packing=network"), 1.0, "network_compression"),
    Headline("packed-coarse-1pt", (*_families("kd", COARSE, "@packing=network"),
                                   *_families("kd", GUARDED, "@guard=outputs@packing=network")),
             1.0, "network_compression"),
)


def headline_table(all_cells: Sequence[Cell], min_seeds: int = 1) -> list[dict[str, Any]]:
    """Each headline row's choice (on validation) with its test losses over seeds and whether it claims its bound.

    Only cells with at least ``min_seeds`` seeds may be chosen; the others stay in the ladder.
    """
    rows = []
    for row in HEADLINES:
        cell = select(all_cells, row, min_seeds)
        rows.append({"row": row.name, "bound": row.bound, "metric": row.metric,
                     "chosen": cell.as_dict() if cell else None, "claims_bound": claims(cell, row) if cell else False})
    return rows
