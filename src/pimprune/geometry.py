"""Crossbar geometry ``RxC``: ``R`` rows (wordlines) by ``C`` columns (bitlines)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pimprune.errors import GeometryError

_GEOMETRY = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass(frozen=True, order=True)
class Crossbar:
    """A logical crossbar: one cell holds one weight.

    Attributes:
        rows: Number of wordlines (matrix rows, inputs driven by DACs).
        cols: Number of bitlines (matrix columns, outputs read by ADCs).
    """

    rows: int
    cols: int

    def __post_init__(self) -> None:
        for field, value in (("rows", self.rows), ("cols", self.cols)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GeometryError(
                    f"crossbar {field} must be a positive integer, got {value!r}; "
                    "write the geometry as RxC, e.g. 128x128"
                )

    @classmethod
    def parse(cls, text: str | Crossbar) -> Crossbar:
        """Parse ``"RxC"`` (e.g. ``"128x128"``, ``"64x256"``).

        Raises:
            GeometryError: if the text is not two positive integers joined by ``x``.
        """
        if isinstance(text, Crossbar):
            return text
        match = _GEOMETRY.match(str(text))
        if not match:
            raise GeometryError(
                f"invalid crossbar geometry {text!r}; write RxC with positive integers, "
                "e.g. 128x128 or 64x256"
            )
        rows, cols = int(match.group(1)), int(match.group(2))
        if rows < 1 or cols < 1:
            raise GeometryError(
                f"invalid crossbar geometry {text!r}: rows and columns must be at least 1, "
                "e.g. 128x128"
            )
        return cls(rows, cols)

    @property
    def cells(self) -> int:
        """Cells per crossbar, ``rows * cols``."""
        return self.rows * self.cols

    @property
    def aspect(self) -> float:
        """Aspect ratio ``rows / cols``."""
        return self.rows / self.cols

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"


def parse_geometries(texts: list[str] | tuple[str, ...] | str) -> list[Crossbar]:
    """Parse one or several geometries (a list, or a comma-separated string)."""
    if isinstance(texts, str):
        texts = [t for t in texts.split(",") if t.strip()]
    if not texts:
        raise GeometryError("no crossbar geometry given; pass at least one RxC, e.g. 128x128")
    return [Crossbar.parse(t) for t in texts]


def grid(rows: list[int], cols: list[int]) -> list[Crossbar]:
    """Every ``rows x cols`` combination, rows outer."""
    return [Crossbar(r, c) for r in rows for c in cols]
