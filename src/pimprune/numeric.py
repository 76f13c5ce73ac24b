"""Small numeric helpers shared by every part of the package.

One definition each: ceiling division and index widths, weight energy (sum of
squares), ratio rounding for result files, the check of a target compression,
block reductions of boolean masks, and tensor operations that run in numpy on
CPU (torch's ``repeat_interleave``, ``contiguous`` and ``pad`` on large tensors
wait for its thread pool, which on a busy machine costs more than the work), and a
scope of one intra-op thread for work made of many such operations.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import torch

from pimprune.errors import ConfigError

N = TypeVar("N", int, torch.Tensor, np.ndarray)

#: Torch float dtypes that are copied and padded with numpy on CPU.
NUMPY_FLOATS = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread, then restore the thread count.

    For work made of many operations on tensors of up to a few million entries (the
    design-space sweep): a second thread buys little there, and on a busy machine every
    parallel operation waits for a free core (2x the sweep's time on the loaded build
    machine). One thread also makes float sums independent of the machine's thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cdiv(a: N, b: int) -> N:
    """``ceil(a / b)`` for non-negative integers (ints, integer tensors or arrays)."""
    return -(-a // b)


def index_bits(n: int) -> int:
    """``ceil(log2(n))``: bits of an index into ``n`` positions (0 for ``n <= 1``)."""
    return (max(int(n), 1) - 1).bit_length()


def squares(t: torch.Tensor) -> torch.Tensor:
    """Elementwise ``t**2`` (detached; integer and bool tensors are squared as float32)."""
    t = t.detach()
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t * t


def energy(t: torch.Tensor) -> float:
    """Sum of squares of ``t`` in float64."""
    m = t.detach().to(torch.float64)
    return float((m * m).sum())


def json_ratio(x: float, digits: int = 4) -> float | None:
    """A ratio for JSON: ``None`` for infinity, else rounded to ``digits`` decimals."""
    return None if math.isinf(x) else round(x, digits)


def check_target_compression(value: object, what: str = "target compression") -> float:
    """``value`` as a float if it is a finite number ``>= 1`` (dense / pruned crossbars).

    Raises:
        ConfigError: for anything else (bools, strings, NaN, infinity, numbers below 1).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 1
    ):
        raise ConfigError(f"{what} must be a finite number >= 1 (dense / pruned crossbars), got {value!r}")
    return float(value)


def quant_scale(peak: torch.Tensor, levels: int) -> torch.Tensor:
    """Scale of signed integer codes ``-levels .. levels`` for values of magnitude up to ``peak``.

    ``peak / levels``, and 1 where ``peak`` is 0 (an all-zero column keeps code 0). The one rule
    behind the hardware model's weight codes and quantization-aware retraining's fake quantizer.
    """
    return torch.where(peak > 0, peak / levels, torch.ones_like(peak))


def budget_of(total: float, target: float) -> int:
    """``floor(total / target)``, forgiving the last bit of rounding (a crossbar budget)."""
    return int(math.floor(total / target * (1 + 1e-12)))


def from_numpy(a: np.ndarray) -> torch.Tensor:
    """``a`` as a contiguous, writable CPU tensor (copied only where needed)."""
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def repeat(t: torch.Tensor, repeats: int, dim: int) -> torch.Tensor:
    """``t.repeat_interleave(repeats, dim)``, computed by numpy on CPU (a contiguous tensor)."""
    if t.device.type == "cpu":
        return from_numpy(np.repeat(t.numpy(), repeats, axis=dim))
    return t.repeat_interleave(repeats, dim=dim)


def broadcast(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``t.expand(shape)`` as a new contiguous tensor (numpy on CPU)."""
    if t.device.type == "cpu":
        return from_numpy(np.broadcast_to(t.numpy(), shape))
    return t.expand(shape).contiguous()


def contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t.contiguous()`` (a numpy copy on CPU)."""
    if t.device.type == "cpu":
        return from_numpy(t.numpy())
    return t.contiguous()


def zero_pad(t: torch.Tensor, after: tuple[int, ...]) -> torch.Tensor:
    """``t`` with ``after[i]`` zeros appended to dimension ``i``: a new contiguous tensor.

    Same as ``torch.nn.functional.pad``; on CPU the copy is made by numpy.
    """
    if t.device.type == "cpu" and t.dtype in NUMPY_FLOATS:
        out = np.zeros(tuple(s + a for s, a in zip(t.shape, after, strict=True)), dtype=NUMPY_FLOATS[t.dtype])
        out[tuple(slice(0, s) for s in t.shape)] = t.numpy()
        return torch.from_numpy(out)
    pads: list[int] = []
    for a in reversed(after):
        pads += [0, a]
    return torch.nn.functional.pad(t, pads)


def bool_array(t: torch.Tensor) -> np.ndarray:
    """Boolean numpy array of ``t`` (non-zero = True); no copy for a CPU bool tensor.

    Mask reductions run in numpy: torch's boolean ``any`` over a non-innermost
    dimension is one to two orders of magnitude slower on CPU.
    """
    return t.detach().bool().cpu().numpy()


def any_blocks(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Logical OR over consecutive blocks of ``size`` along ``axis`` (the last block may be short)."""
    n = a.shape[axis]
    if n <= size:
        return a.any(axis=axis, keepdims=True) if n else np.delete(a, np.s_[:], axis=axis)
    return np.logical_or.reduceat(a, np.arange(0, n, size), axis=axis)


def sum_blocks(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sum (int64) over consecutive blocks of ``size`` along ``axis`` (the last block may be short)."""
    n = a.shape[axis]
    if n <= size:
        if n:
            return a.sum(axis=axis, keepdims=True, dtype=np.int64)
        return np.delete(a, np.s_[:], axis=axis).astype(np.int64)
    return np.add.reduceat(a, np.arange(0, n, size), axis=axis, dtype=np.int64)
