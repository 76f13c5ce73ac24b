"""The train / prune / evaluate pipeline behind the command line.

``run_train`` trains a dense baseline; ``run_prune`` takes a dense model (a
checkpoint, or trains one), prunes it to a crossbar budget with one of three
methods and retrains it with masks:

- ``admm``: ADMM epochs (:mod:`pimprune.pruning.admm`), then hard pruning to the
  projection and masked retraining;
- ``oneshot``: project once, then masked retraining for all epochs;
- ``gradual``: the crossbar budget shrinks along a cubic schedule (Zhu &
  Gupta 2017) during the pruning epochs, masks re-projected every few steps,
  then masked retraining.

Every method gets the same number of epochs (pruning epochs + retraining
epochs), so they compare at equal cost.

Input is checked before anything is written: settings, names, the data, a
dense checkpoint and the crossbar target are all validated first, and an
error leaves the output folder as it was.

Resuming: each epoch ends with an atomic ``checkpoint.pt`` in the output
folder holding the stage (``dense`` -> ``admm``/``gradual`` -> ``retrain``),
the epoch, weights, masks, optimizer, scheduler, ADMM or gradual state, torch
RNG state and the log. ``resume=True`` continues a run killed at any moment
from it (a run killed before its first checkpoint starts over) and ends with
the same result as an uninterrupted run with the same seed: data order and
augmentation depend only on the seed and the epoch, and the dense weights the
projector sees are kept in the checkpoint. A checkpoint written with other
settings, or by another number of processes, is refused.

Under torchrun (``torchrun --nproc_per_node N -m pimprune prune ...``) the
model is wrapped in DDP (NCCL on GPUs, gloo on CPUs), each rank trains on its
shard of every epoch, ADMM's Z/U and all masks come from rank 0, BatchNorm
statistics are copied from rank 0 after each epoch, test accuracy counts every
test sample once, and only rank 0 writes files and prints progress.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pimprune.errors import CheckpointError, ConfigError, OutputError, TrainingError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count_network
from pimprune.mapping.matrices import extract_layers
from pimprune.pruning.admm import ADMM, ADMMConfig
from pimprune.pruning.masking import apply_masks, get_masks
from pimprune.training.checkpoint import (
    ensure_dir,
    load_json,
    load_model,
    load_tensors,
    plain_state_dict,
    remove_stale_temps,
    save_json,
    save_model,
    save_tensors,
)
from pimprune.training.loops import Execution, OptimConfig, evaluate, make_optimizer, seed_everything, train_epoch
from pimprune.training.runtime import Runtime, init_runtime, provenance

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"

#: Version of the layout of ``checkpoint.pt``; other versions are not resumed.
CHECKPOINT_FORMAT = 2

#: Debug hook: when this environment variable names a folder, every rank writes
#: its ADMM state, masks and weights there (``<tag>.rank<r>.pt``), so that tests
#: can prove the ranks agree. Not for normal use.
RANK_DUMP_ENV = "PIMPRUNE_RANK_DUMP"

#: Pruning methods; ``auto`` picks by the epoch budget (see :func:`auto_method`).
METHODS = ("auto", "admm", "oneshot", "gradual")

#: ``auto``: ``(minimum pruning + retraining epochs, method)`` pairs. Each entry is
#: the method that won the measured comparison at that epoch budget (docs/results.md:
#: subrow, 32x32, 8x, Fashion-MNIST, ResNet18 width 0.25, auto saliency); a budget takes
#: the entry of the largest measured budget not above it. One-shot won at 3 and 6 epochs
#: (ADMM and gradual pruning lost 0.06-0.5 point; with magnitude saliency gradual had won at 3).
AUTO_METHOD_BY_EPOCHS: tuple[tuple[int, str], ...] = ((0, "oneshot"),)

#: RunConfig fields that may change between a run and its resumption.
_FREE_ON_RESUME = ("resume", "device", "out", "data_dir")


@dataclass
class RunConfig:
    """Model, data and run settings shared by train and prune.

    Attributes:
        model: Model name (see ``pimprune.training.models``).
        width: Channel width multiplier.
        stem_stride: Stride of the first conv (None: the model's default).
        dataset: Dataset name (see ``pimprune.training.data``).
        data_dir: Folder of the dataset files (None: the default search).
        batch_size: Mini-batch size per process (samples).
        augment: Random crop + flip on training batches.
        limit_train: Use only the first N training images (None: all).
        limit_test: Use only the first N test images (None: all).
        validation: Training images held out for validation (a fixed split, see
            :func:`pimprune.training.data.validation_split`; 0: none). With a validation split,
            per-epoch accuracy is measured on it and the test split only once at the end.
        seed: Random seed of everything.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        out: Output folder.
        resume: Continue the run saved in ``out``.
        epochs: Dense training epochs (train) / dense baseline epochs (prune, when no
            dense checkpoint is given).
        optim: Optimizer of dense training.
        eval_each_epoch: Evaluate on the test split after every epoch (else only
            at the end of each run; saves time in benchmarks and the demo).
        execution: Mixed precision and memory format of the training and
            evaluation steps (:class:`pimprune.training.loops.Execution`).
    """

    model: str = "resnet18"
    width: float = 1.0
    stem_stride: int | None = None
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    batch_size: int = 128
    augment: bool = True
    limit_train: int | None = None
    limit_test: int | None = None
    validation: int = 0
    seed: int = 0
    device: str = "auto"
    out: str = "runs/out"
    resume: bool = False
    epochs: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval_each_epoch: bool = True
    execution: Execution = field(default_factory=Execution)

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 0, 100_000)
        _check_int("batch size", self.batch_size, 1, 1 << 20)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("validation", self.validation, 0, 1 << 40)
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            if v is not None:
                _check_int(name.replace("_", "-"), v, 1, 1 << 40)
        w = self.width
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and 0 < w <= 8):
            raise ConfigError(f"width must be a number in (0, 8], got {w}")
        if self.stem_stride is not None:
            _check_int("stem stride", self.stem_stride, 1, 64)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model name is empty; pass e.g. --model resnet18")
        if not isinstance(self.out, str):
            raise ConfigError(f"output folder must be a path, got {self.out!r}")


@dataclass
class PruneConfig:
    """What to prune and how.

    Attributes:
        pattern: Sparsity pattern (see ``pimprune.pruning.patterns``).
        crossbar: Crossbar geometry ``RxC``.
        target_compression: Network-wide target: dense crossbars / pruned crossbars.
        allocation: ``global``, ``uniform`` or ``file`` (per-layer YAML budgets).
        budgets_file: YAML file of per-layer budgets for ``allocation="file"``.
        keep_dense: Layers left dense: ``first`` (first conv), ``last`` (classifier) or names.
        method: ``auto``, ``admm``, ``oneshot`` or ``gradual``.
        dense: Dense checkpoint (``model.pt`` with ``model.json``); None trains one.
        prune_epochs: ADMM / gradual epochs (one-shot retrains for them instead).
        retrain_epochs: Masked retraining epochs.
        prune_lr: Learning rate of the pruning epochs.
        retrain_lr: Learning rate of masked retraining.
        admm: ADMM hyper-parameters (``update_every`` is derived from
            ``updates_per_epoch``).
        updates_per_epoch: Z/U updates (ADMM) or mask updates (gradual) per epoch.
        bn_recalibrate: Training batches used to re-estimate the batch-norm
            statistics right after hard pruning (0: keep the dense statistics). The
            pruned network's activations differ from the dense one's, and stale
            statistics can drop a briefly retrained model to chance accuracy.
        saliency: What the masks keep (:mod:`pimprune.pruning.saliency`): ``auto`` (the
            measured best for the pattern), ``magnitude``, ``activation`` or ``fisher``.
            Used by one-shot and gradual pruning and by ADMM (its Z-steps project
            in the saliency-weighted norm, and the final hard prune).
        saliency_batches: Training batches read to compute a data-driven saliency.
        distill: Knowledge distillation from the dense model during the pruning and
            retraining epochs: weight of the distillation term in [0, 1] (0: off).
        distill_temperature: Distillation temperature.
    """

    pattern: str = "subrow"
    crossbar: str = "32x32"
    target_compression: float = 8.0
    allocation: str = "global"
    budgets_file: str | None = None
    keep_dense: tuple[str, ...] = ("first", "last")
    method: str = "auto"
    dense: str | None = None
    prune_epochs: int = 2
    retrain_epochs: int = 2
    prune_lr: float = 0.01
    retrain_lr: float = 0.01
    admm: ADMMConfig = field(default_factory=ADMMConfig)
    updates_per_epoch: int = 4
    bn_recalibrate: int = 50
    saliency: str = "auto"
    saliency_batches: int = 16
    distill: float = 0.0
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        from pimprune.pruning.patterns import PATTERNS
        from pimprune.pruning.saliency import resolve_saliency

        PATTERNS.get(self.pattern)
        resolve_saliency(self.saliency, self.pattern)
        Crossbar.parse(self.crossbar)
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        t = self.target_compression
        if isinstance(t, bool) or not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 1):
            raise ConfigError(f"target compression must be a finite number >= 1 (dense / pruned crossbars), got {t}")
        _check_int("prune epochs", self.prune_epochs, 0, 100_000)
        _check_int("retrain epochs", self.retrain_epochs, 0, 100_000)
        _check_int("updates per epoch", self.updates_per_epoch, 1, 100_000)
        _check_int("bn recalibrate batches", self.bn_recalibrate, 0, 1_000_000)
        _check_int("saliency batches", self.saliency_batches, 1, 1_000_000)
        if isinstance(self.distill, bool) or not (isinstance(self.distill, (int, float)) and 0 <= self.distill <= 1):
            raise ConfigError(f"distillation weight must be in [0, 1], got {self.distill}")
        if not (math.isfinite(self.distill_temperature) and 0 < self.distill_temperature <= 100):
            raise ConfigError(f"distillation temperature must be in (0, 100], got {self.distill_temperature}")
        for name in ("prune_lr", "retrain_lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 < v <= 10):
                raise ConfigError(f"{name.replace('_', ' ')} must be in (0, 10], got {v}")


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def auto_method(total_epochs: int) -> str:
    """The method that won the measured comparison for this epoch budget (docs/results.md)."""
    method = AUTO_METHOD_BY_EPOCHS[0][1]
    for min_epochs, name in AUTO_METHOD_BY_EPOCHS:
        if total_epochs >= min_epochs:
            method = name
    return method


def config_dict(obj: Any) -> dict:
    """A dataclass config as plain JSON data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


# --------------------------------------------------------------------------- output folder

#: What an output folder holds at the start of a run.
FRESH, RESUME, FINISHED = "fresh", "resume", "finished"


def _check_output(out: Path, resume: bool) -> str:
    """Classify ``out`` (without writing anything) or raise :class:`OutputError`.

    Returns:
        ``fresh`` (start a new run), ``resume`` (a checkpoint to continue) or
        ``finished`` (``resume`` on a finished run: nothing to do).
    """
    if not str(out).strip():
        raise OutputError("the output folder is empty; pass --out FOLDER")
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == out else f"cannot be created: {parent} is a file"
                raise OutputError(f"--out {out} {what}; choose a folder")
            break
    has_ckpt = (out / CHECKPOINT).exists()
    has_result = (out / RESULT).exists()
    if not resume:
        if has_result:
            raise OutputError(f"{out} already holds a finished run ({RESULT}); choose another --out")
        if has_ckpt:
            raise OutputError(
                f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another --out"
            )
        return FRESH
    if has_result:
        return FINISHED
    if has_ckpt:
        return RESUME
    return FRESH


def _open_output(out: Path) -> None:
    """Create ``out`` and clear temporary files a killed write left there (rank 0)."""
    ensure_dir(out)
    remove_stale_temps(out)


# --------------------------------------------------------------------------- helpers


@dataclass
class _Context:
    rt: Runtime
    run: RunConfig
    out: Path
    status: str
    train_loader: Any
    test_loader: Any
    info: Any
    spec: Any
    example: torch.Tensor
    identity: dict = field(default_factory=dict)
    val_loader: Any = None
    distill: Any = None

    @property
    def monitor_loader(self) -> Any:
        """Where per-epoch accuracy is measured: the validation split if there is one, else the test split."""
        return self.val_loader if self.val_loader is not None else self.test_loader


def _prepare(run: RunConfig, rt: Runtime) -> _Context:
    """Check the output folder, load the data and describe the model; writes nothing."""
    from pimprune.training.data import make_loaders, make_validation_loader
    from pimprune.training.models import ModelSpec

    out = Path(run.out)
    status = rt.on_main(lambda: _check_output(out, run.resume))
    seed_everything(run.seed)
    train_loader, test_loader, info = make_loaders(
        run.dataset,
        batch_size=run.batch_size,
        data_dir=run.data_dir,
        augment=run.augment,
        seed=run.seed,
        device=rt.device,
        rank=rt.rank,
        world_size=rt.world_size,
        limit_train=run.limit_train,
        limit_test=run.limit_test,
        validation=run.validation,
    )
    val_loader = None
    if run.validation:
        val_loader = make_validation_loader(
            run.dataset, run.batch_size, run.validation, run.data_dir, rt.device, rt.rank, rt.world_size
        )
    spec = ModelSpec(
        name=run.model,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        input_size=info.input_size,
        width=run.width,
        stem_stride=run.stem_stride,
    )
    example = torch.zeros(1, info.in_channels, info.input_size, info.input_size)
    return _Context(rt, run, out, status, train_loader, test_loader, info, spec, example, val_loader=val_loader)


def _new_model(ctx: _Context) -> nn.Module:
    """A freshly initialised model (same weights for the same seed)."""
    from pimprune.training.models import create_model

    seed_everything(ctx.run.seed)
    return ctx.run.execution.model(create_model(ctx.spec).to(ctx.rt.device))


def _finished(ctx: _Context) -> dict:
    """The saved result of a finished run (``--resume`` on it does nothing more)."""
    result = ctx.rt.on_main(lambda: load_json(ctx.out / RESULT))
    if ctx.rt.is_main:
        (ctx.out / CHECKPOINT).unlink(missing_ok=True)
        remove_stale_temps(ctx.out)
        print(f"{ctx.out} holds a finished run; nothing to resume ({RESULT} kept)", flush=True)
    return result


def _wrap(model: nn.Module, rt: Runtime) -> nn.Module:
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [rt.device.index] if rt.device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    return model


def _cpu_clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _first_difference(saved: Any, now: Any, prefix: str = "") -> str | None:
    """The first setting (dotted path) where two identity dicts differ, or None."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now)):
            diff = _first_difference(saved.get(key), now.get(key), f"{prefix}{key}.")
            if diff is not None:
                return diff
        return None
    if saved != now:
        return f"{prefix[:-1]} (was {saved!r}, now {now!r})"
    return None


class _Checkpointer:
    """Reads (rank 0, then shared) and writes (rank 0) the resumable state of a run."""

    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx
        self.path = ctx.out / CHECKPOINT
        self.state: dict = {}
        self.resumed_from: dict | None = None
        if ctx.status == RESUME:
            self.state = ctx.rt.on_main(self._load)
            self.resumed_from = {"stage": self.state.get("stage"), "epoch": self.state.get("epoch")}
            if ctx.rt.is_main:
                where = f"{self.state['stage']} epoch {self.state['epoch']}" if "stage" in self.state else "the start"
                print(f"resuming {ctx.out} after {where}", flush=True)
        elif ctx.run.resume and ctx.rt.is_main:
            print(f"nothing to resume in {ctx.out} (no {CHECKPOINT}); starting the run", flush=True)

    def _load(self) -> dict:
        state = load_tensors(self.path)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{self.path} is not a run checkpoint of this pimprune version; "
                "delete it to start over or choose another --out"
            )
        diff = _first_difference(state.get("identity"), self.ctx.identity)
        if diff is not None:
            raise CheckpointError(
                f"{self.path} was written by a run with other settings: {diff}; "
                "resume with the same arguments or choose another --out"
            )
        return state

    @property
    def log(self) -> list[dict]:
        """The per-epoch log so far."""
        return list(self.state.get("log", []))

    def save(self, **state: Any) -> None:
        """Merge ``state`` into the checkpoint and write it atomically (rank 0)."""
        self.state = {
            **self.state,
            **state,
            "format": CHECKPOINT_FORMAT,
            "identity": self.ctx.identity,
        }
        if self.ctx.rt.is_main:
            save_tensors(self.state, self.path)
        self.ctx.rt.barrier()


def _stage_lr_option(stage: str) -> str:
    return {"dense": "--lr", "retrain": "--retrain-lr"}.get(stage, "--admm-lr")


def _run_stage(
    ctx: _Context,
    ck: _Checkpointer,
    model: nn.Module,
    stage: str,
    epochs: int,
    optim: OptimConfig,
    epoch_offset: int,
    attach: Callable[[torch.optim.Optimizer], Any] | None = None,
    state_extra: Callable[[], dict] | None = None,
    load_extra: Callable[[dict], None] | None = None,
) -> None:
    """Train ``model`` for one stage with a checkpoint after each epoch; resumes mid-stage."""
    if epochs == 0:
        return
    net = _wrap(model, ctx.rt)
    opt, sched = make_optimizer(model, optim, epochs, len(ctx.train_loader))
    start = 0
    if ck.state.get("stage") == stage:
        start = int(ck.state["epoch"])
        opt.load_state_dict(ck.state["optimizer"])
        sched.load_state_dict(ck.state["scheduler"])
        if load_extra is not None:
            load_extra(ck.state)
        _set_rng_state(ck.state.get("rng"))
    if attach is not None:
        attach(opt)
    for epoch in range(start, epochs):
        ctx.train_loader.set_epoch(epoch_offset + epoch)
        desc = f"{stage} {epoch + 1}/{epochs}"
        try:
            stats = train_epoch(
                net, ctx.train_loader, opt, sched, optim, ctx.rt.device, desc=desc, execution=ctx.run.execution,
                distill=ctx.distill if stage != "dense" else None,
            )
        except TrainingError as exc:
            kept = (
                f"the last good checkpoint ({ck.state['stage']} epoch {ck.state['epoch']}) stays in {ck.path}"
                if "stage" in ck.state
                else "no epoch had finished"
            )
            raise TrainingError(f"{exc} ({_stage_lr_option(stage)}) and run again in a new --out; {kept}") from None
        ctx.rt.sync_module(model)
        test_acc = None
        if ctx.run.eval_each_epoch or epoch + 1 == epochs:
            test_acc = evaluate(
                model, ctx.monitor_loader, ctx.rt.device, desc=f"{stage} eval", execution=ctx.run.execution
            )["accuracy"]
        row = {
            "stage": stage,
            "epoch": epoch + 1,
            "train_loss": round(stats["loss"], 5),
            "train_accuracy": round(stats["accuracy"], 5),
            ("val_accuracy" if ctx.val_loader is not None else "test_accuracy"): (
                None if test_acc is None else round(test_acc, 5)
            ),
        }
        if ctx.rt.is_main:
            shown = "-" if test_acc is None else f"{test_acc:.4f}"
            split = "val" if ctx.val_loader is not None else "test"
            print(
                f"[{stage}] epoch {epoch + 1}/{epochs}  loss {stats['loss']:.4f}  "
                f"train acc {stats['accuracy']:.4f}  {split} acc {shown}",
                flush=True,
            )
        extra = state_extra() if state_extra is not None else {}
        ck.save(
            stage=stage,
            epoch=epoch + 1,
            model=_cpu_clone(model.state_dict()),
            masks=_cpu_clone(get_masks(model)),
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            rng=_rng_state(),
            log=[*ck.log, row],
            **extra,
        )


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader, batches: int, device: torch.device) -> None:
    """Re-estimate batch-norm running statistics on up to ``batches`` training batches.

    The statistics are reset and averaged over the batches (cumulative average);
    weights are not touched.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        model(x.to(device, non_blocking=True))
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.train(was_training)


def _restore_model(model: nn.Module, ck: _Checkpointer) -> None:
    """Load the checkpointed weights (and masks) into ``model``."""
    masks = ck.state.get("masks") or {}
    if masks:
        apply_masks(model, masks)
    model.load_state_dict(ck.state["model"])


def _dump_rank_state(rt: Runtime, tag: str, tensors: Callable[[], dict]) -> None:
    """The :data:`RANK_DUMP_ENV` debug hook: this rank's tensors to ``<tag>.rank<r>.pt``."""
    folder = os.environ.get(RANK_DUMP_ENV)
    if folder:
        save_tensors(tensors(), Path(folder) / f"{tag}.rank{rt.rank}.pt")


def _loader_shard(loader: Any) -> torch.Tensor | None:
    indices = getattr(loader, "indices", None)
    return indices().clone() if callable(indices) else None


def _resolved(ctx: _Context, **extra: Any) -> dict:
    """Settings the run derived from its configuration (for result files)."""
    return {
        "device": str(ctx.rt.device),
        "world_size": ctx.rt.world_size,
        "batch_size_per_process": ctx.run.batch_size,
        "global_batch_size": ctx.run.batch_size * ctx.rt.world_size,
        "steps_per_epoch": len(ctx.train_loader),
        "train_samples": ctx.info.train_size,
        "test_samples": ctx.info.test_size,
        "spec": ctx.spec.to_dict(),
        **extra,
    }


# --------------------------------------------------------------------------- train


def run_train(run: RunConfig) -> dict:
    """Train a dense baseline; writes ``model.pt``, ``model.json``, ``result.json``.

    Returns:
        The result dictionary also written to ``result.json`` (on every rank).
    """
    t0 = time.time()
    rt = init_runtime(run.device)
    try:
        ctx = _prepare(run, rt)
        if ctx.status == FINISHED:
            return _finished(ctx)
        model = _new_model(ctx)
        ctx.identity = {"kind": "train", "run": _identity(run), "world_size": rt.world_size}
        rt.on_main(lambda: _open_output(ctx.out))
        ck = _Checkpointer(ctx)
        if ck.state:
            _restore_model(model, ck)
        _run_stage(ctx, ck, model, "dense", run.epochs, run.optim, 0)
        test = evaluate(model, ctx.test_loader, rt.device, desc="final eval", execution=run.execution)
        result = {
            "kind": "train",
            "model": run.model,
            "dataset": run.dataset,
            "accuracy": test["accuracy"],
            "accuracy_val": _validation_accuracy(ctx, model),
            "validation_samples": run.validation,
            "epochs": {"dense": run.epochs},
            "history": ck.log,
            "config": {"run": config_dict(run), "spec": ctx.spec.to_dict()},
            "resolved": _resolved(ctx),
            "spec": ctx.spec.to_dict(),
            "seed": run.seed,
            "resumed_from": ck.resumed_from,
            "wall_time_s": round(time.time() - t0, 1),
            "provenance": provenance(rt),
        }
        _dump_rank_state(rt, "final", lambda: {"state": _cpu_clone(model.state_dict())})
        if rt.is_main:
            save_model(
                model,
                ctx.spec,
                ctx.out,
                {"accuracy": test["accuracy"], "dataset": run.dataset, "epochs": run.epochs},
            )
            save_json(result, ctx.out / RESULT)
            (ctx.out / CHECKPOINT).unlink(missing_ok=True)
        return result
    finally:
        rt.close()


def _identity(run: RunConfig) -> dict:
    d = config_dict(run)
    for key in _FREE_ON_RESUME:
        d.pop(key, None)
    return d


# --------------------------------------------------------------------------- prune


def _gradual_target(target: float, t: float) -> float:
    """Compression after fraction ``t`` of the pruning epochs (cubic kept-fraction ramp)."""
    keep_final = 1.0 / target
    keep = keep_final + (1.0 - keep_final) * (1.0 - min(max(t, 0.0), 1.0)) ** 3
    return 1.0 / keep


class _Gradual:
    """Re-projects masks every ``every`` steps with a shrinking budget (rank 0's masks win)."""

    def __init__(
        self,
        model: nn.Module,
        make_projector: Callable[[float], Any],
        target: float,
        total_steps: int,
        every: int,
        rt: Runtime,
        score: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = dict,
    ) -> None:
        self.model = model
        self.score = score
        self.make_projector = make_projector
        self.target = target
        self.total = max(total_steps, 1)
        self.every = every
        self.rt = rt
        self.steps = 0

    def update(self) -> None:
        """Project the current weights onto the budget of the current step."""
        c = _gradual_target(self.target, self.steps / self.total)
        projector = self.make_projector(c)
        weights = {n: p.detach() for n, p in _named_effective(self.model, projector.params).items()}
        apply_masks(self.model, self.rt.broadcast_tensors(projector(self.score(weights))))

    def attach(self, opt: torch.optim.Optimizer) -> None:
        """Count optimizer steps and update the masks every ``every`` of them."""

        def post(_o, _a, _k):
            self.steps += 1
            if self.steps % self.every == 0:
                self.update()

        opt.register_step_post_hook(post)


def _named_effective(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    from pimprune.pruning.masking import masked_parameter

    return {n: masked_parameter(model, n) for n in names}


def _load_dense(path: str, ctx: _Context) -> tuple[nn.Module, dict]:
    """Load a dense checkpoint and check that it fits the dataset."""
    from pimprune.training.models import ModelSpec

    model, meta = load_model(path)
    spec_saved = meta["spec"]
    for key in ("num_classes", "in_channels"):
        if spec_saved.get(key) != getattr(ctx.spec, key):
            raise CheckpointError(
                f"dense checkpoint {path} has {key}={spec_saved.get(key)} but dataset "
                f"{ctx.run.dataset} needs {getattr(ctx.spec, key)}; train a baseline on this dataset"
            )
    ctx.spec = ModelSpec.from_dict(spec_saved)
    return ctx.run.execution.model(model.to(ctx.rt.device)), meta


def run_prune(run: RunConfig, prune: PruneConfig) -> dict:
    """Prune a dense model to a crossbar budget and retrain it with masks.

    Returns:
        The result dictionary also written to ``result.json`` (on every rank).
    """
    from pimprune.pruning.budgets import Projector, PruneTarget
    from pimprune.pruning.patterns import get_pattern
    from pimprune.pruning.saliency import calibration_batches, get_saliency, resolve_saliency

    t0 = time.time()
    total_epochs = prune.prune_epochs + prune.retrain_epochs
    method = prune.method if prune.method != "auto" else auto_method(total_epochs)
    xbar = Crossbar.parse(prune.crossbar)
    pattern = get_pattern(prune.pattern)
    saliency_name = resolve_saliency(prune.saliency, prune.pattern)
    saliency = get_saliency(saliency_name)
    target = PruneTarget(
        pattern=prune.pattern,
        crossbar=xbar,
        target_compression=float(prune.target_compression),
        allocation=prune.allocation,
        budgets_file=prune.budgets_file,
        keep_dense=tuple(prune.keep_dense),
        normalize_layers=not saliency.comparable_across_layers,
    )
    rt = init_runtime(run.device)
    try:
        ctx = _prepare(run, rt)
        if ctx.status == FINISHED:
            return _finished(ctx)
        dev = rt.device

        # 0. everything that can fail on the input, before anything is written
        if prune.dense:
            model, meta = _load_dense(prune.dense, ctx)
            dense_epochs = int(meta.get("epochs", 0) or 0)
        else:
            model = _new_model(ctx)
            dense_epochs = run.epochs
        example = ctx.example.to(dev)
        # built before anything is written: the target is reachable, the budgets file valid.
        # Its structure does not depend on the weights, and every use below projects the
        # weights it is given, so the same projector serves after dense training.
        projector = Projector(model, target, example)
        ctx.identity = {
            "kind": "prune",
            "run": _identity(run),
            "prune": config_dict(prune),
            "method": method,
            "world_size": rt.world_size,  # the global batch and the data shards depend on it
        }
        if prune.dense:  # the baseline's own settings, not the ignored --model/--width
            ctx.identity["run"].pop("model")
            ctx.identity["run"].pop("width")
            ctx.identity["run"].pop("stem_stride")
        rt.on_main(lambda: _open_output(ctx.out))
        ck = _Checkpointer(ctx)

        # 1. the dense baseline -------------------------------------------------
        if not prune.dense:
            if not ck.state.get("dense_done", False):
                if ck.state:
                    _restore_model(model, ck)
                _run_stage(ctx, ck, model, "dense", run.epochs, run.optim, 0)
                ck.save(dense_done=True, dense_state=_cpu_clone(model.state_dict()))
            else:
                model.load_state_dict(ck.state["dense_state"])
        acc_dense = ck.state.get("accuracy_dense")
        if acc_dense is None:
            acc_dense = evaluate(model, ctx.test_loader, dev, desc="dense eval", execution=run.execution)["accuracy"]
            ck.save(accuracy_dense=acc_dense)
        acc_dense_val = _validation_accuracy(ctx, model, ck, "accuracy_dense_val")
        if rt.is_main:
            print(f"dense accuracy {acc_dense:.4f}", flush=True)
        if prune.distill > 0:  # the dense model as teacher (the model holds the dense weights here)
            from pimprune.training.loops import Distillation

            ctx.distill = Distillation(copy.deepcopy(model), prune.distill, prune.distill_temperature)

        steps = len(ctx.train_loader)
        every = max(1, steps // prune.updates_per_epoch)
        prune_optim = dataclasses.replace(run.optim, lr=prune.prune_lr)

        def saliency_factors(epoch: int) -> dict[str, torch.Tensor]:
            """Saliency factors from the first batches of ``epoch``'s order (same on resume)."""
            if not saliency.needs_data:
                return {}
            ctx.train_loader.set_epoch(epoch)
            batches = calibration_batches(ctx.train_loader, prune.saliency_batches)
            return saliency.factors(model, projector.params, batches, dev)

        # 2. pruning epochs ------------------------------------------------------
        stage = ck.state.get("stage")
        if stage != "retrain":
            if stage == method:
                _restore_model(model, ck)
            # the saliency of the model entering the pruning epochs, kept (and checkpointed)
            # for every projection in them, so a resumed run projects with the same factors
            factors: dict[str, torch.Tensor] = {}
            if method in ("admm", "gradual") and prune.prune_epochs > 0:
                factors = ck.state["saliency_factors"] if stage == method else saliency_factors(dense_epochs)
            if method == "admm" and prune.prune_epochs > 0:
                admm_cfg = dataclasses.replace(prune.admm, update_every=every)
                total_updates = max(1, prune.prune_epochs * steps // every)
                # Z-step in the saliency-weighted norm: the mask keeps the units of most w^2 s^2
                # (the same allocation as the final hard prune), Z keeps the values of W + U
                admm = ADMM(
                    model,
                    lambda w: projector(saliency.scaled(w, factors)),
                    projector.params,
                    admm_cfg,
                    total_updates,
                )
                _run_stage(
                    ctx,
                    ck,
                    model,
                    "admm",
                    prune.prune_epochs,
                    prune_optim,
                    dense_epochs,
                    attach=admm.attach,
                    state_extra=lambda: {"admm": admm.state_dict(), "saliency_factors": _cpu_clone(factors)},
                    load_extra=lambda s: admm.load_state_dict(s["admm"]),
                )
                _dump_rank_state(rt, "admm", admm.state_dict)
            elif method == "gradual" and prune.prune_epochs > 0:

                def make(c: float) -> Projector:
                    return Projector(model, dataclasses.replace(target, target_compression=c), example)

                grad = _Gradual(
                    model, make, target.target_compression, prune.prune_epochs * steps, every, rt,
                    score=lambda w: saliency.scaled(w, factors),
                )
                if stage != "gradual":
                    ones = {
                        n: torch.ones_like(p, dtype=torch.bool)
                        for n, p in _named_effective(model, projector.params).items()
                    }
                    apply_masks(model, ones)
                _run_stage(
                    ctx,
                    ck,
                    model,
                    "gradual",
                    prune.prune_epochs,
                    prune_optim,
                    dense_epochs,
                    attach=grad.attach,
                    state_extra=lambda: {"gradual_steps": grad.steps, "saliency_factors": _cpu_clone(factors)},
                    load_extra=lambda s: setattr(grad, "steps", int(s["gradual_steps"])),
                )
            # hard prune to the projection of the current (saliency-scaled) weights, rank 0's masks
            weights = {n: p.detach() for n, p in _named_effective(model, projector.params).items()}
            weights = saliency.scaled(weights, saliency_factors(dense_epochs + prune.prune_epochs))
            apply_masks(model, rt.broadcast_tensors(projector(weights)))
            if prune.bn_recalibrate:
                ctx.train_loader.set_epoch(dense_epochs + prune.prune_epochs)
                recalibrate_batchnorm(model, ctx.train_loader, prune.bn_recalibrate, dev)
                rt.sync_module(model)
            # kept in memory; the retraining checkpoints carry it
            ck.state["projection"] = {
                "budgets": dict(projector.budgets),
                "silenced_outputs": projector.silenced_outputs(),
            }
        else:
            _restore_model(model, ck)

        # 3. masked retraining ---------------------------------------------------
        retrain_epochs = prune.retrain_epochs + (prune.prune_epochs if method == "oneshot" else 0)
        _run_stage(
            ctx,
            ck,
            model,
            "retrain",
            retrain_epochs,
            dataclasses.replace(run.optim, lr=prune.retrain_lr),
            dense_epochs + prune.prune_epochs,
        )
        test = evaluate(model, ctx.test_loader, dev, desc="final eval", execution=run.execution)
        acc_val = _validation_accuracy(ctx, model)
        projection = ck.state["projection"]

        # 4. count and write -----------------------------------------------------
        from pimprune.training.models import create_model

        plain = create_model(ctx.spec)
        plain.load_state_dict(plain_state_dict(model))
        layers = extract_layers(plain)
        counts = count_network(layers, xbar)
        scheme = pattern.scheme
        result = {
            "kind": "prune",
            "model": ctx.spec.name,
            "dataset": run.dataset,
            "pattern": prune.pattern,
            "scheme": scheme,
            "crossbar": str(xbar),
            "method": method,
            "saliency": saliency_name,
            "accuracy_dense": acc_dense,
            "accuracy_pruned": test["accuracy"],
            "accuracy_loss_points": round(100 * (acc_dense - test["accuracy"]), 3),
            "accuracy_dense_val": acc_dense_val,
            "accuracy_val": acc_val,
            "validation_samples": run.validation,
            "distill": {"weight": prune.distill, "temperature": prune.distill_temperature} if prune.distill else None,
            "crossbars_dense": counts.total("dense"),
            "crossbars_pruned": counts.total(scheme),
            "compression": _ratio(counts.compression(scheme)),
            "compression_conv": _ratio(counts.compression(scheme, "conv")),
            "packing_bound": counts.bound(),
            "target_compression": prune.target_compression,
            "epochs": {
                "dense": dense_epochs,
                method if method != "oneshot" else "prune": (prune.prune_epochs if method != "oneshot" else 0),
                "retrain": retrain_epochs,
            },
            "silenced_outputs": projection["silenced_outputs"],
            "budgets": projection["budgets"],
            "layers": [lc.as_dict() for lc in counts.layers],
            "history": ck.log,
            "config": {
                "run": config_dict(run),
                "prune": config_dict(prune),
                "spec": ctx.spec.to_dict(),
            },
            "resolved": _resolved(ctx, method=method, saliency=saliency_name, update_every_steps=every),
            "seed": run.seed,
            "resumed_from": ck.resumed_from,
            "wall_time_s": round(time.time() - t0, 1),
            "provenance": provenance(rt),
        }
        _dump_rank_state(
            rt,
            "final",
            lambda: {
                "masks": _cpu_clone(get_masks(model)),
                "state": _cpu_clone(plain.state_dict()),
                "train_indices_epoch0": _first_epoch_shard(ctx.train_loader),
                "accuracy": torch.tensor(test["accuracy"], dtype=torch.float64),
            },
        )
        if rt.is_main:
            save_model(
                plain,
                ctx.spec,
                ctx.out,
                {
                    "pattern": prune.pattern,
                    "scheme": scheme,
                    "crossbar": str(xbar),
                    "accuracy": test["accuracy"],
                    "dataset": run.dataset,
                    "epochs": dense_epochs + prune.prune_epochs + retrain_epochs,
                },
            )
            save_json(result, ctx.out / RESULT)
            (ctx.out / CHECKPOINT).unlink(missing_ok=True)
            print(
                f"{prune.pattern} on {xbar}: {result['crossbars_dense']} -> "
                f"{result['crossbars_pruned']} crossbars ({result['compression']}x), "
                f"accuracy {acc_dense:.4f} -> {test['accuracy']:.4f}",
                flush=True,
            )
        return result
    finally:
        rt.close()


def _validation_accuracy(
    ctx: _Context, model: nn.Module, ck: _Checkpointer | None = None, key: str = ""
) -> float | None:
    """Accuracy on the validation split (None without one); cached in the checkpoint under ``key``."""
    if ctx.val_loader is None:
        return None
    if ck is not None and ck.state.get(key) is not None:
        return ck.state[key]
    acc = evaluate(model, ctx.val_loader, ctx.rt.device, desc="val eval", execution=ctx.run.execution)["accuracy"]
    if ck is not None:
        ck.save(**{key: acc})
    return acc


def _first_epoch_shard(loader: Any) -> torch.Tensor:
    epoch = getattr(loader, "epoch", 0)
    if not hasattr(loader, "set_epoch") or not callable(getattr(loader, "indices", None)):
        return torch.empty(0, dtype=torch.int64)
    loader.set_epoch(0)
    shard = _loader_shard(loader)
    loader.set_epoch(epoch)
    return shard if shard is not None else torch.empty(0, dtype=torch.int64)


def _ratio(x: float) -> float | None:
    return None if math.isinf(x) else round(x, 4)


def run_evaluate(path: str, run: RunConfig) -> dict:
    """Accuracy of a saved model on a dataset's test split (every test sample counted once)."""
    from pimprune.training.data import make_loaders

    rt = init_runtime(run.device)
    try:
        model, meta = load_model(path)
        model = model.to(rt.device)
        _, test_loader, info = make_loaders(
            run.dataset,
            batch_size=run.batch_size,
            data_dir=run.data_dir,
            augment=False,
            seed=run.seed,
            device=rt.device,
            rank=rt.rank,
            world_size=rt.world_size,
            limit_test=run.limit_test,
            limit_train=1,
        )
        spec = meta["spec"]
        if spec.get("num_classes") != info.num_classes or spec.get("in_channels") != info.in_channels:
            raise CheckpointError(
                f"{path} was built for {spec.get('num_classes')} classes and "
                f"{spec.get('in_channels')} input channels, but {run.dataset} has "
                f"{info.num_classes} and {info.in_channels}; "
                "evaluate it on the dataset it was trained on"
            )
        test = evaluate(run.execution.model(model), test_loader, rt.device, execution=run.execution)
        return {"model": str(path), "dataset": run.dataset, **test, "meta": meta}
    finally:
        rt.close()
