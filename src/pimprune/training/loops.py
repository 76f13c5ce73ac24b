"""Training and evaluation loops (single process or torchrun DDP).

Small, explicit building blocks: :class:`OptimConfig`, :func:`make_optimizer`,
:func:`train_epoch` and :func:`evaluate`. The pruning pipeline
(:mod:`pimprune.workflows.pipeline`) strings them together with checkpoints; a user with
an own loop only needs :class:`pimprune.pruning.admm.ADMM` and
:mod:`pimprune.pruning.masking`.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pimprune.errors import ConfigError, TrainingError
from pimprune.training.runtime import is_main_rank


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum and a cosine learning-rate schedule.

    Attributes:
        lr: Peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay (not applied to BatchNorm and biases).
        nesterov: Nesterov momentum.
        label_smoothing: Cross-entropy label smoothing.
        warmup_epochs: Linear warm-up length in epochs (may be fractional).
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and 0 < self.lr <= 10):
            raise ConfigError(f"learning rate must be in (0, 10], got {self.lr}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and 0 <= self.weight_decay < 1):
            raise ConfigError(f"weight decay must be in [0, 1), got {self.weight_decay}")
        if not (math.isfinite(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not (math.isfinite(self.warmup_epochs) and 0 <= self.warmup_epochs <= 100_000):
            raise ConfigError(f"warm-up must be a number of epochs in [0, 100000], got {self.warmup_epochs}")


def make_optimizer(
    model: nn.Module, cfg: OptimConfig, epochs: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (no decay on 1-D parameters) and a per-step warm-up + cosine schedule."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )
    total = max(1, epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    if _distributed():
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()
    return values


def _finite_everywhere(value: torch.Tensor, device: torch.device) -> tuple[bool, float]:
    """Whether ``value`` is finite on every rank, and this rank's value."""
    local = float(value)
    if not _distributed():
        return math.isfinite(local), local
    flag = torch.tensor([0.0 if math.isfinite(local) else 1.0], device=device)
    dist.all_reduce(flag)
    return float(flag) == 0.0, local


#: Precision name -> autocast dtype (None: plain float32).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Execution:
    """How the training and evaluation steps execute (the GPU protocol's speed settings).

    Attributes:
        precision: ``fp32`` or ``bf16`` (``torch.autocast`` mixed precision: matrix
            products and convolutions in bfloat16, weights, optimizer state and
            losses in float32; no gradient scaler needed).
        channels_last: Model and input batches in the channels-last memory format
            (faster convolutions on tensor-core GPUs).
    """

    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}"
            )

    def autocast(self, device: torch.device):
        """The autocast context of this precision on ``device`` (a no-op for fp32)."""
        dtype = PRECISIONS[self.precision]
        return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def batch(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``x`` on ``device`` in this memory format."""
        x = x.to(device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def model(self, model: nn.Module) -> nn.Module:
        """``model`` in this memory format (in place; returned for chaining)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model


#: Steps between the loss checks on GPU (each check synchronises the device).
GPU_CHECK_EVERY = 20


@dataclass
class Distillation:
    """Knowledge distillation from a teacher (Hinton et al. 2015): the loss mixes in the softened KL term.

    ``loss = (1 - weight) * cross_entropy + weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))``

    Attributes:
        teacher: The teacher network (pimprune uses the dense model); run in eval mode without gradients.
        weight: Share of the distillation term, in [0, 1].
        temperature: Softening temperature ``T`` (> 0).
    """

    teacher: nn.Module
    weight: float = 0.9
    temperature: float = 4.0

    def __post_init__(self) -> None:
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def combine(self, x: torch.Tensor, student: torch.Tensor, ce: torch.Tensor, execution: Execution) -> torch.Tensor:
        """The distillation loss of one batch, given the student's logits and its cross-entropy."""
        with torch.no_grad(), execution.autocast(x.device):
            teacher = self.teacher(x).float()
        t = self.temperature
        kd = F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                      log_target=True)
        return (1 - self.weight) * ce + self.weight * t * t * kd


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    cfg: OptimConfig,
    device: torch.device,
    desc: str = "train",
    extra_loss=None,
    execution: Execution = Execution(),
    distill: Distillation | None = None,
) -> dict[str, float]:
    """One epoch of SGD (optionally distilled); returns mean loss and accuracy over all ranks.

    Loss and accuracy sums stay on the device (no per-step host sync on a GPU).
    The loss is checked for NaN every step on the CPU and every
    :data:`GPU_CHECK_EVERY` steps on a GPU, collectively, so all ranks stop together.

    Raises:
        TrainingError: if the loss becomes NaN or infinite (on any rank).
    """
    model.train()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    bar = _progress(loader, desc)
    for step, (x, y) in enumerate(bar):
        x, y = execution.batch(x, device), y.to(device, non_blocking=True)
        with execution.autocast(device):
            out = model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
        if distill is not None:
            loss = distill.combine(x, out.float(), loss, execution)
        if extra_loss is not None:
            loss = loss + extra_loss()
        if step % GPU_CHECK_EVERY == 0 or device.type == "cpu":
            ok, lv = _finite_everywhere(loss.detach(), device)
            if not ok:
                where = f"loss became {lv}" if not math.isfinite(lv) else "the loss diverged on another rank"
                raise TrainingError(f"{desc}: {where} at step {step + 1} of the epoch; lower the learning rate")
            bar.set_postfix(loss=f"{lv:.3f}", acc=f"{float(correct) / max(seen, 1):.3f}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.detach() * y.shape[0]
        correct += (out.detach().argmax(1) == y).sum()
        seen += y.shape[0]
    loss_sum, corr, n = _all_reduce_sum([float(total_loss), float(correct), float(seen)], device)
    mean_loss = loss_sum / max(n, 1)
    if not math.isfinite(mean_loss):
        raise TrainingError(f"{desc}: loss became {mean_loss}; lower the learning rate")
    return {"loss": mean_loss, "accuracy": corr / max(n, 1)}


def real_samples(loader: Any) -> int | None:
    """How many samples this rank's shard of ``loader`` holds before its padding (None: not sharded).

    Sharded loaders (``TensorLoader``, a ``DataLoader`` with a ``DistributedSampler``)
    pad the dataset by repeating its first samples, dealt round-robin, so on each
    rank the repeats come last and can be dropped.
    """
    sampler = getattr(loader, "sampler", None)
    if hasattr(loader, "padding") and hasattr(loader, "num_samples"):
        rank, world = int(loader.rank), int(loader.world_size)
        per_rank = int(loader.num_samples)
        n = per_rank * world - int(loader.padding)
    elif sampler is not None and hasattr(sampler, "total_size") and hasattr(sampler, "num_replicas"):
        if getattr(sampler, "drop_last", False):
            return None
        rank, world = int(sampler.rank), int(sampler.num_replicas)
        per_rank = int(sampler.num_samples)
        n = len(sampler.dataset)
    else:
        return None
    if world <= 1:
        return None
    return max(0, min(per_rank, math.ceil((n - rank) / world)))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    desc: str = "eval",
    execution: Execution = Execution(),
) -> dict[str, float]:
    """Top-1 accuracy and mean loss over the loader (all ranks together).

    Under torchrun each test sample is counted exactly once: the samples a
    sharded loader repeats to even out the shards (:func:`real_samples`) are
    left out.
    """
    model.eval()
    total_loss = 0.0
    correct = 0
    seen = 0
    budget = real_samples(loader)
    bar = _progress(loader, desc)
    for x, y in bar:
        if budget is not None:
            keep = max(0, min(y.shape[0], budget - seen))
            if keep == 0:
                continue
            x, y = x[:keep], y[:keep]
        x, y = execution.batch(x, device), y.to(device)
        with execution.autocast(device):
            out = model(x).float()
        total_loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        seen += y.shape[0]
    loss_sum, corr, n = _all_reduce_sum([total_loss, float(correct), float(seen)], device)
    return {"loss": loss_sum / max(n, 1), "accuracy": corr / max(n, 1), "samples": int(n)}


def _progress(loader: Iterable, desc: str) -> tqdm:
    """A progress bar over ``loader`` on rank 0 (none with ``PIMPRUNE_QUIET=1``)."""
    return tqdm(loader, desc=desc, leave=False, disable=not is_main_rank() or _quiet(), dynamic_ncols=True)


def _quiet() -> bool:
    return os.environ.get("PIMPRUNE_QUIET") == "1"


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Iterable, batches: int, device: torch.device) -> None:
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
