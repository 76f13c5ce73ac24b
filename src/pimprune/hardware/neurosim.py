"""DNN+NeuroSim V1.4's own rules, as the NeuroSim export and its comparison need them.

Everything here restates what NeuroSim's C++ simulator does with its input files (read at
commit :data:`NEUROSIM_COMMIT` of https://github.com/neurosim/DNN_NeuroSim_V1.4, folder
``Inference_pytorch/NeuroSIM``); none of NeuroSim's code is part of pimprune.

- :func:`positions`: how many input vectors NeuroSim runs through a line of ``NetWork.csv``
  (``Chip.cpp``: a "valid" convolution, ``(H - K + 1) / stride`` per side, padding ignored).
- :func:`mapping_check` / :func:`check_mapping`: its mapping decision and the condition under
  which its floorplan fails ("SubArray Size is too large", followed by a crash) in the default
  *novel mapping* and in conventional mapping.
- :func:`to_grid` / :func:`encode_bits`: the fixed-point values it expects in the weight files
  (``[-1, 1)`` on a ``2^-(bits-1)`` grid) and the bit layout of its input files (bit 0 the sign,
  then the two's-complement bits, most significant first).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pimprune.errors import ConfigError

__all__ = [
    "DEFAULT_BITS",
    "MAPPINGS",
    "MAX_BITS",
    "MIN_BITS",
    "NEUROSIM_COMMIT",
    "NEUROSIM_REPOSITORY",
    "PARAM_COLS_LINE",
    "SUBARRAY_COLS",
    "MappingCheck",
    "check_bits",
    "check_mapping",
    "encode_bits",
    "mapping_check",
    "positions",
    "to_grid",
    "unit_scale",
]

#: The public repository of DNN+NeuroSim V1.4.
NEUROSIM_REPOSITORY = "https://github.com/neurosim/DNN_NeuroSim_V1.4"
#: The commit whose rules this module restates and that the comparison ran.
NEUROSIM_COMMIT = "ac828e6723bf077c9b1423c5c72ff6e4981e90f4"
#: Columns of NeuroSim's sub-array: fixed in ``Param.cpp``, not a command-line argument.
SUBARRAY_COLS = 128
#: The ``Param.cpp`` statement that fixes them (line 204 at :data:`NEUROSIM_COMMIT`).
PARAM_COLS_LINE = f"numColSubArray = {SUBARRAY_COLS};"
#: NeuroSim's default weight and input precision (bits), the values its PyTorch wrapper passes.
DEFAULT_BITS = 8
#: Fewest bits of a weight or input: a sign bit and one magnitude bit.
MIN_BITS = 2
#: Most bits accepted (NeuroSim's own examples use up to 8).
MAX_BITS = 16
#: Mapping modes of ``Param.cpp``'s ``novelMapping`` (true is NeuroSim's default).
MAPPINGS: tuple[str, ...] = ("novel", "conventional")
#: Minimum PE size of a novel-mapped layer, in sub-array rows (``Chip.cpp``: ``2*numRowSubArray``).
_NOVEL_PE_ROWS = 2
#: Minimum tile size under conventional mapping alone, in sub-array rows (``4*numRowSubArray``).
_CONVENTIONAL_TILE_ROWS = 4


def positions(row: Sequence[float]) -> int:
    """Input vectors NeuroSim runs through one ``NetWork.csv`` line per image.

    NeuroSim computes ``(H - K_H + 1) / stride * (W - K_W + 1) / stride`` in floating point and
    truncates the product: the valid positions of an unpadded input of ``H x W`` (``row`` holds
    ``IFM_H, IFM_W, IFM_C, K_H, K_W, OFM_C, pooling, stride``).
    """
    h, w, _, kh, kw, _, _, stride = (float(v) for v in row[:8])
    return int((h - kh + 1) / stride * (w - kw + 1) / stride)


def _next_pow2(value: float) -> int:
    """Smallest power of two >= ``value`` (NeuroSim's ``pow(2, ceil(log2(x)))``), 0 for 0."""
    return 0 if value <= 0 else 1 << max(0, math.ceil(math.log2(value)))


def _novel_kernel_area(rows: Sequence[Sequence[float]]) -> int:
    """The kernel area NeuroSim gives its novel-mapped PEs: the most frequent ``K_H * K_W`` (not 1).

    A 1x1 area counts once at most; ties go to the area seen first, as in ``Chip.cpp``.
    """
    areas = [int(r[3] * r[4]) for r in rows]
    counts = Counter(a for a in areas if a != 1)
    best, area = 0, 0
    for a in areas:
        score = 1 + counts[a] if a != 1 else 1
        if score > best:
            best, area = score, a
    return area


@dataclass(frozen=True)
class MappingCheck:
    """NeuroSim's mapping decision for a network table.

    Attributes:
        mapping: ``"novel"`` (NeuroSim's default) or ``"conventional"``.
        kernel_area: ``K_H * K_W`` of the novel-mapped layers (0 under conventional mapping).
        novel: Per line, whether it is novel-mapped.
        novel_pe: Largest ``nextpow2(OFM_C * weight_bits)`` over the novel-mapped lines.
        conventional_tile: The same over the conventionally mapped lines.
        subarray_rows: Sub-array rows the check was made for.
        weight_bits: Weight bits (one SRAM cell per bit, so columns per weight).
    """

    mapping: str
    kernel_area: int
    novel: tuple[bool, ...]
    novel_pe: int
    conventional_tile: int
    subarray_rows: int
    weight_bits: int

    @property
    def ok(self) -> bool:
        """Whether NeuroSim's floorplan succeeds (it crashes otherwise)."""
        if self.mapping == "novel":
            return self.novel_pe >= _NOVEL_PE_ROWS * self.subarray_rows
        return self.conventional_tile >= _CONVENTIONAL_TILE_ROWS * self.subarray_rows


def mapping_check(
    rows: Sequence[Sequence[float]], weight_bits: int, subarray_rows: int, mapping: str = "novel"
) -> MappingCheck:
    """NeuroSim's mapping of ``rows`` (``NetWork.csv`` lines) on sub-arrays of ``subarray_rows`` rows.

    Under novel mapping a line is novel-mapped when its kernel area is the most frequent one and
    ``IFM_C * K_H * K_W >= subarray_rows``; the floorplan needs one such line with
    ``nextpow2(OFM_C * weight_bits) >= 2 * subarray_rows``. Under conventional mapping every line
    is conventional and the floorplan needs ``nextpow2(max OFM_C * weight_bits) >= 4 * subarray_rows``.
    """
    if mapping not in MAPPINGS:
        raise ConfigError(f"unknown NeuroSim mapping {mapping!r}; use one of {', '.join(MAPPINGS)}")
    area = _novel_kernel_area(rows) if mapping == "novel" else 0
    novel = tuple(
        bool(area) and int(r[3] * r[4]) == area and r[2] * r[3] * r[4] >= subarray_rows for r in rows
    )
    widths = [_next_pow2(r[5] * weight_bits) for r in rows]
    return MappingCheck(
        mapping=mapping,
        kernel_area=area,
        novel=novel,
        novel_pe=max((w for w, n in zip(widths, novel, strict=True) if n), default=0),
        conventional_tile=max((w for w, n in zip(widths, novel, strict=True) if not n), default=0),
        subarray_rows=int(subarray_rows),
        weight_bits=int(weight_bits),
    )


def _advice(rows: Sequence[Sequence[float]], check: MappingCheck) -> str:
    """What to change so that NeuroSim's floorplan succeeds (part of a one-line error)."""
    fixes = []
    fewer = check.subarray_rows // 2
    while fewer >= 1 and not mapping_check(rows, check.weight_bits, fewer, check.mapping).ok:
        fewer //= 2
    if fewer >= 1:
        fixes.append(f"at most {fewer} crossbar rows")
    bits = next(
        (b for b in range(check.weight_bits + 1, MAX_BITS + 1)
         if mapping_check(rows, b, check.subarray_rows, check.mapping).ok),
        None,
    )
    if bits is not None:
        fixes.append(f"--weight-bits {bits}")
    other = MAPPINGS[1 - MAPPINGS.index(check.mapping)]
    if mapping_check(rows, check.weight_bits, check.subarray_rows, other).ok:
        flag = "false" if other == "conventional" else "true"
        fixes.append(f"--mapping {other} (and novelMapping = {flag}; in NeuroSim's Param.cpp)")
    return "; use " + " or ".join(fixes) if fixes else "; no crossbar rows, weight bits or mapping fix it"


def check_mapping(
    rows: Sequence[Sequence[float]], weight_bits: int, subarray_rows: int, mapping: str = "novel"
) -> MappingCheck:
    """:func:`mapping_check`, raising a one-line error where NeuroSim's floorplan would fail.

    Raises:
        ConfigError: naming the cause and the crossbar rows, weight bits or mapping that work.
    """
    check = mapping_check(rows, weight_bits, subarray_rows, mapping)
    if check.ok:
        return check
    if mapping == "novel":
        n_novel = sum(check.novel)
        cause = (
            f"no line is novel-mapped (none has the most common kernel area, {check.kernel_area}, and "
            f"IFM_C*K_H*K_W >= {subarray_rows})"
            if not n_novel
            else f"none of its {n_novel} novel-mapped lines has OFM_C*{weight_bits} > {subarray_rows} "
            f"(widest: {check.novel_pe} columns)"
        )
    else:
        cause = f"no line has OFM_C*{weight_bits} > {2 * subarray_rows} (widest: {check.conventional_tile} columns)"
    raise ConfigError(
        f"NeuroSim ({mapping} mapping) would stop with 'SubArray Size is too large' and crash on this export "
        f"at {subarray_rows} sub-array rows and {weight_bits}-bit weights: {cause}" + _advice(rows, check)
    )


def check_bits(bits: int, what: str) -> int:
    """``bits`` if it is a precision NeuroSim's files can hold, else a one-line ConfigError."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{what} must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}")
    return bits


def unit_scale(max_abs: float, bits: int) -> float:
    """Factor that maps ``max_abs`` to ``1 - 2^-(bits-1)``, the largest value NeuroSim's fixed point holds.

    Returns 1.0 for ``max_abs == 0`` (nothing to scale).
    """
    top = 1.0 - 2.0 ** -(bits - 1)
    return top / max_abs if max_abs > 0 else 1.0


def to_grid(values: np.ndarray, scale: float, bits: int) -> np.ndarray:
    """``values * scale`` rounded to NeuroSim's grid: integers ``q`` with value ``q * 2^-(bits-1)``.

    The result lies in ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``, i.e. values in ``(-1, 1)``:
    ``+1.0`` would wrap to 0 in NeuroSim's weight loader.
    """
    top = 2 ** (bits - 1) - 1
    q = np.rint(np.asarray(values, dtype=np.float64) * scale * 2 ** (bits - 1))
    return np.clip(q, -top, top).astype(np.int64)


def encode_bits(q: np.ndarray, bits: int) -> np.ndarray:
    """Bits of the grid integers ``q`` in NeuroSim's input layout: ``(..., bits)`` of 0/1.

    Bit 0 is the sign (1 for a negative value) and bits 1..bits-1 follow, most significant
    first, so that ``value = -b_0 + sum_i b_i 2^-i`` (two's complement on ``bits`` bits).
    """
    code = np.asarray(q, dtype=np.int64) % (1 << bits)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return ((code[..., None] >> shifts) & 1).astype(np.uint8)
