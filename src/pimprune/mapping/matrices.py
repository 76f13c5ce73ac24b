"""Weight matrices as a crossbar stores them: ``(g, M, N)`` per layer (docs/design.md section 2).

A ``Conv2d`` weight ``(Cout, Cin/g, kh, kw)`` maps to ``g`` matrices of ``M = (Cin/g)*kh*kw`` rows
(in ``(cin, kh, kw)`` order, as ``F.unfold``) by ``N = Cout/g`` columns; a ``Linear`` weight
``(out, in)`` to one ``in x out`` matrix. Rows are wordlines (inputs), columns bitlines: ``y = x @ W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

MAPPED_TYPES = (nn.Conv2d, nn.Linear)


def weight_to_matrix(weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Turn a Conv2d or Linear weight into its ``(g, M, N)`` matrices.

    Args:
        weight: ``(Cout, Cin/g, kh, kw)`` conv weight or ``(out, in)`` linear weight.
        groups: Number of conv groups (1 for Linear).

    Returns:
        A tensor of shape ``(groups, M, N)`` (a view where possible).
    """
    if weight.dim() == 2:
        if groups != 1:
            raise ValueError("a Linear weight has exactly one group")
        return weight.t().unsqueeze(0)
    cout = weight.shape[0]
    if cout % groups:
        raise ValueError(f"output channels {cout} not divisible by groups {groups}")
    n = cout // groups
    m = weight[0].numel()
    return weight.reshape(groups, n, m).transpose(1, 2)


def matrix_to_weight(matrix: torch.Tensor, weight_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`weight_to_matrix`: ``(g, M, N)`` back to the layer's weight shape."""
    shape = tuple(weight_shape)
    if len(shape) == 2:
        return matrix[0].t().contiguous()
    return matrix.transpose(1, 2).reshape(shape).contiguous()


@dataclass
class LayerMatrix:
    """One mapped layer: a Conv2d or Linear and the shape of its matrices.

    Attributes:
        name: Qualified module name in the model (``layer1.0.conv1``).
        kind: ``"conv"`` or ``"linear"``.
        module: The module itself.
        groups: Number of matrices ``g``.
        rows: Rows ``M`` of each matrix (wordlines).
        cols: Columns ``N`` of each matrix (bitlines).
    """

    name: str
    kind: str
    module: nn.Module
    groups: int
    rows: int
    cols: int

    @property
    def weight_shape(self) -> torch.Size:
        """Shape of the layer's weight tensor."""
        return self.module.weight.shape

    def matrix(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The ``(g, M, N)`` matrices of ``weight`` (default: the module's current weight)."""
        w = self.module.weight if weight is None else weight
        return weight_to_matrix(w.detach(), self.groups)

    def to_weight(self, matrix: torch.Tensor) -> torch.Tensor:
        """Turn ``(g, M, N)`` matrices back into this layer's weight shape."""
        return matrix_to_weight(matrix, self.weight_shape)


def layer_matrix(name: str, module: nn.Module) -> LayerMatrix:
    """Describe one Conv2d or Linear module as a :class:`LayerMatrix`."""
    if isinstance(module, nn.Conv2d):
        g = module.groups
        w = module.weight
        return LayerMatrix(name, "conv", module, g, w[0].numel(), w.shape[0] // g)
    if isinstance(module, nn.Linear):
        return LayerMatrix(name, "linear", module, 1, module.in_features, module.out_features)
    raise TypeError(f"{name}: {type(module).__name__} is not mapped to crossbars")


def extract_layers(model: nn.Module) -> list[LayerMatrix]:
    """Every Conv2d and Linear of ``model``, in module order, with its matrix shape."""
    return [layer_matrix(name, m) for name, m in model.named_modules() if isinstance(m, MAPPED_TYPES)]
