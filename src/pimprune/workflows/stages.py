"""The training machinery every run shares: context, checkpointed stages, result files.

A run (``pimprune train`` or ``prune``, :mod:`pimprune.workflows.pipeline`) is a sequence
of *stages* (``dense``, a pruning method's epochs, ``retrain``). :func:`run_stage`
trains one with an atomic ``checkpoint.pt`` after each epoch
(:class:`Checkpointer`), and resumes inside it; :func:`prepare` checks the output
folder and loads the data before anything is written; :func:`write_run` writes
the model and ``result.json`` on rank 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pimprune.errors import CheckpointError, TrainingError
from pimprune.pruning.masking import apply_masks, get_masks
from pimprune.training.checkpoint import (
    CHECKPOINT,
    RESULT,
    RESUME,
    classify_output,
    cpu_clone,
    first_difference,
    load_json,
    load_tensors,
    remove_stale_temps,
    rng_state,
    save_json,
    save_model,
    save_tensors,
    set_rng_state,
)
from pimprune.training.loops import OptimConfig, evaluate, make_optimizer, seed_everything, train_epoch
from pimprune.training.runtime import Runtime, provenance
from pimprune.workflows.config import RunConfig, from_fields

#: Version of the layout of ``checkpoint.pt``; other versions are not resumed.
CHECKPOINT_FORMAT = 2

#: Debug hook: when this environment variable names a folder, every rank writes
#: its pruning method's state, masks and weights there (``<tag>.rank<r>.pt``), so that
#: tests can prove the ranks agree. Not for normal use.
RANK_DUMP_ENV = "PIMPRUNE_RANK_DUMP"


@dataclass
class RunContext:
    """One run on one rank: its settings, output folder, loaders and model description.

    Attributes:
        rt: Where this rank runs.
        run: The run's settings.
        out: The output folder.
        status: What the folder held at the start (``fresh``, ``resume``, ``finished``).
        train_loader: Training batches (this rank's shard).
        test_loader: Test batches.
        info: Sizes and shape of the dataset.
        spec: The model's :class:`pimprune.training.models.ModelSpec`.
        example: An input batch of one zero image (for tracing).
        identity: What a resumed run must share with the checkpoint.
        val_loader: The validation split, if the run holds one out.
        distill: The :class:`pimprune.training.loops.Distillation` of the training steps, if any.
    """

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


def prepare(run: RunConfig, rt: Runtime) -> RunContext:
    """Check the output folder, load the data and describe the model; writes nothing."""
    from pimprune.training.loaders import load_loaders, make_validation_loader
    from pimprune.training.models import ModelSpec
    from pimprune.training.sources import data_request

    out = Path(run.out)
    status = rt.on_main(lambda: classify_output(out, run.resume))
    seed_everything(run.seed)
    train_loader, test_loader, info = load_loaders(run.dataset, loader_options(run, rt), data_request(run.data_dir))
    val_loader = None
    if run.validation:
        val_loader = make_validation_loader(
            run.dataset, run.batch_size, run.validation, run.data_dir, rt.device, rt.rank, rt.world_size
        )
    spec = from_fields(ModelSpec, info, name=run.model, width=run.width, stem_stride=run.stem_stride)
    example = torch.zeros(1, info.in_channels, info.input_size, info.input_size)
    return RunContext(rt, run, out, status, train_loader, test_loader, info, spec, example, val_loader=val_loader)


def loader_options(run: RunConfig, rt: Runtime, **changes: Any) -> Any:
    """The :class:`pimprune.training.batching.LoaderOptions` of a run on this rank."""
    from pimprune.training.batching import LoaderOptions

    return from_fields(LoaderOptions, run, device=rt.device, rank=rt.rank, world_size=rt.world_size, **changes)


def new_model(ctx: RunContext) -> nn.Module:
    """A freshly initialised model (same weights for the same seed)."""
    from pimprune.training.models import create_model

    seed_everything(ctx.run.seed)
    return ctx.run.execution.model(create_model(ctx.spec).to(ctx.rt.device))


def finished(ctx: RunContext) -> dict:
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


class Checkpointer:
    """Reads (rank 0, then shared) and writes (rank 0) the resumable state of a run."""

    def __init__(self, ctx: RunContext) -> None:
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
        diff = first_difference(state.get("identity"), self.ctx.identity)
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


def run_stage(
    ctx: RunContext,
    ck: Checkpointer,
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
        set_rng_state(ck.state.get("rng"))
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
        row = _epoch_row(ctx, model, stage, epoch, epochs, stats)
        extra = state_extra() if state_extra is not None else {}
        ck.save(
            stage=stage,
            epoch=epoch + 1,
            model=cpu_clone(model.state_dict()),
            masks=cpu_clone(get_masks(model)),
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            rng=rng_state(),
            log=[*ck.log, row],
            **extra,
        )


def _epoch_row(ctx: RunContext, model: nn.Module, stage: str, epoch: int, epochs: int, stats: dict) -> dict:
    """The log row of one epoch (accuracy on the validation split, else the test split); printed on rank 0."""
    acc = None
    if ctx.run.eval_each_epoch or epoch + 1 == epochs:
        acc = evaluate(model, ctx.monitor_loader, ctx.rt.device, desc=f"{stage} eval", execution=ctx.run.execution)
        acc = acc["accuracy"]
    split = "val" if ctx.val_loader is not None else "test"
    row = {
        "stage": stage,
        "epoch": epoch + 1,
        "train_loss": round(stats["loss"], 5),
        "train_accuracy": round(stats["accuracy"], 5),
        f"{split}_accuracy": None if acc is None else round(acc, 5),
    }
    if ctx.rt.is_main:
        shown = "-" if acc is None else f"{acc:.4f}"
        print(
            f"[{stage}] epoch {epoch + 1}/{epochs}  loss {stats['loss']:.4f}  "
            f"train acc {stats['accuracy']:.4f}  {split} acc {shown}",
            flush=True,
        )
    return row


def restore_model(model: nn.Module, ck: Checkpointer, prepare: Callable[[], Any] | None = None) -> None:
    """Load the checkpointed weights (and masks) into ``model``.

    ``prepare`` runs between the two (to register parametrizations, such as weight quantizers,
    that change the state_dict's keys).
    """
    masks = ck.state.get("masks") or {}
    if masks:
        apply_masks(model, masks)
    if prepare is not None:
        prepare()
    model.load_state_dict(ck.state["model"])


def dump_rank_state(rt: Runtime, tag: str, tensors: Callable[[], dict]) -> None:
    """The :data:`RANK_DUMP_ENV` debug hook: this rank's tensors to ``<tag>.rank<r>.pt``."""
    folder = os.environ.get(RANK_DUMP_ENV)
    if folder:
        save_tensors(tensors(), Path(folder) / f"{tag}.rank{rt.rank}.pt")


def first_epoch_shard(loader: Any) -> torch.Tensor:
    """This rank's sample indices of epoch 0 (empty for a loader that does not tell)."""
    indices = getattr(loader, "indices", None)
    if not hasattr(loader, "set_epoch") or not callable(indices):
        return torch.empty(0, dtype=torch.int64)
    epoch = getattr(loader, "epoch", 0)
    loader.set_epoch(0)
    shard = indices().clone()
    loader.set_epoch(epoch)
    return shard


def resolved(ctx: RunContext, **extra: Any) -> dict:
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


def validation_accuracy(
    ctx: RunContext, model: nn.Module, ck: Checkpointer | None = None, key: str = ""
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


def write_run(ctx: RunContext, model: nn.Module, result: dict, meta: dict) -> None:
    """Rank 0: ``model.pt``, ``model.json`` and ``result.json``; the checkpoint goes."""
    if ctx.rt.is_main:
        save_model(model, ctx.spec, ctx.out, meta)
        save_json(result, ctx.out / RESULT)
        (ctx.out / CHECKPOINT).unlink(missing_ok=True)


def run_result(ctx: RunContext, ck: Checkpointer, t0: float, **fields: Any) -> dict:
    """A result dict: ``fields`` and what every run records (history, seed, provenance, ...)."""
    return {
        **fields,
        "history": ck.log,
        "seed": ctx.run.seed,
        "resumed_from": ck.resumed_from,
        "wall_time_s": round(time.time() - t0, 1),
        "provenance": provenance(ctx.rt),
    }
