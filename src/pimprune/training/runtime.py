"""Run-time context: device, torch.distributed (torchrun), versions and provenance.

:class:`Runtime` carries the rank and the few collectives that keep torchrun ranks
in step; :meth:`Runtime.on_main` runs a step on rank 0 and hands its result, or its
user error, to every rank, so an error stops all ranks with the same message.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from pimprune import __version__
from pimprune.errors import ConfigError, PimpruneError

T = TypeVar("T")


@dataclass
class Runtime:
    """Where this process runs.

    Attributes:
        device: The torch device of this rank.
        rank: Global rank (0 without torchrun).
        world_size: Number of processes.
        distributed: Whether torch.distributed was initialised by us.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            dist.barrier()

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled; for small or trusted objects)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and return its result on every rank.

        A :class:`PimpruneError` raised by ``fn`` is raised on every rank with the
        same type and message (marked ``from_main`` on the other ranks, so that
        the command line prints it once).
        """
        if not self.distributed:
            return fn()
        outcome: tuple[str, Any] = ("ok", None)
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except PimpruneError as exc:
                outcome = ("error", (type(exc), str(exc)))
        outcome = self.broadcast_object(outcome)
        kind, value = outcome
        if kind == "error":
            cls, message = value
            err = cls(message)
            err.from_main = not self.is_main  # type: ignore[attr-defined]
            raise err
        return value

    def sync_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers (e.g. BatchNorm statistics) to every rank."""
        if not self.distributed:
            return
        with torch.no_grad():
            for tensor in module.state_dict().values():
                if tensor.dtype == torch.bool:
                    as_int = tensor.to(torch.uint8)
                    dist.broadcast(as_int, 0)
                    tensor.copy_(as_int.bool())
                else:
                    dist.broadcast(tensor, 0)

    def broadcast_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rank 0's copy of every tensor of ``tensors`` (bool tensors included), in place."""
        if not self.distributed:
            return tensors
        out = {}
        for name, tensor in tensors.items():
            if tensor.dtype == torch.bool:
                as_int = tensor.to(torch.uint8)
                dist.broadcast(as_int, 0)
                out[name] = as_int.bool()
            else:
                dist.broadcast(tensor, 0)
                out[name] = tensor
        return out

    def close(self) -> None:
        """Tear down the process group if we created it.

        On an error path (an exception is propagating) the group is left to the
        end of the process: a rank tearing it down while a peer is still in a
        collective or tearing down its own makes gloo abort the process.
        """
        if self.distributed and dist.is_initialized():
            if sys.exc_info()[0] is None:
                dist.barrier()
                dist.destroy_process_group()
            self.distributed = False


def env_rank() -> int:
    """This process's rank from the torchrun environment (0 when not launched by torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_main_rank() -> bool:
    """True on rank 0; valid also before or after the process group exists."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_rank() == 0


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU; otherwise a torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu or cuda[:N]")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} does not exist ({torch.cuda.device_count()} GPU(s)); use cuda:0 .. cuda:N-1 or auto"
            )
    return dev


def _env_int(name: str, default: int, minimum: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not an integer; launch with torchrun") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name}={value} must be >= {minimum}; launch with torchrun")
    return value


def configure_determinism(device: torch.device) -> None:
    """Make repeated runs on one machine give the same numbers.

    CPU kernels are deterministic for a fixed thread count. On CUDA, cuDNN's
    auto-tuner is switched off and its deterministic algorithms are chosen.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def init_runtime(device: str = "auto") -> Runtime:
    """Set up a single process, or DDP when launched by ``torchrun`` (WORLD_SIZE > 1).

    NCCL is used on GPUs and gloo on CPUs; each rank takes GPU ``LOCAL_RANK``.

    Raises:
        ConfigError: for an unknown or missing device, or a torchrun environment
            that does not fit (bad RANK / LOCAL_RANK, fewer GPUs than ranks).
    """
    world = _env_int("WORLD_SIZE", 1, 1)
    dev = resolve_device(device)
    configure_determinism(dev)
    if world <= 1:
        return Runtime(dev)
    rank = _env_int("RANK", 0, 0)
    local = _env_int("LOCAL_RANK", 0, 0)
    if rank >= world:
        raise ConfigError(f"RANK={rank} must be below WORLD_SIZE={world}; launch with torchrun")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ConfigError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun")
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local} has no GPU ({torch.cuda.device_count()} visible); "
                "use --nproc_per_node <= the number of GPUs"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Runtime(dev, rank, world, True)


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The git revision of the pimprune source tree (``-dirty`` if modified), if it is a checkout."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        rev = out.stdout.strip()
        if out.returncode or not rev:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return rev + ("-dirty" if dirty else "")


def provenance(rt: Runtime | None = None) -> dict:
    """Versions, machine, command line, git revision and date, for every result file."""
    import torchvision

    dev = rt.device if rt else torch.device("cpu")
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    return {
        "pimprune": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "device_name": device_name,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "world_size": rt.world_size if rt else 1,
        "backend": ("nccl" if dev.type == "cuda" else "gloo") if rt and rt.distributed else None,
        "argv": list(sys.argv),
        "git_revision": git_revision(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
