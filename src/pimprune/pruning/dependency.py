"""Dependency-aware filter pruning over a whole network (the ``filter`` baseline).

Removing output channel ``j`` of a layer zeroes its matrix column, its bias and
its batch-norm weight *and* bias, so the channel is exactly zero and the rows that
read it in every consumer go too (``docs/design.md`` section 5). Channels tied by
residual additions or concatenations go together: :class:`FilterGraph` takes the
coupling from torch-pruning's ``DependencyGraph`` once, then works on plain tensors
(a decision is one boolean tensor per group; masks are keyed by parameter name).
The protected layers' outputs (by default the classifier's) are never pruned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import parametrize

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count
from pimprune.mapping.matrices import LayerMatrix, extract_layers, weight_to_matrix
from pimprune.numeric import cdiv

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class ParamSlice:
    """Positions of one parameter that belong to the channels of a group.

    Attributes:
        param: Parameter name as in ``model.named_parameters()``.
        dim: Dimension the positions index (0: output channels, 1: input channels).
        index: ``(K,)`` int64 positions along ``dim``.
        root: ``(K,)`` int64 group channel each position belongs to.
    """

    param: str
    dim: int
    index: torch.Tensor
    root: torch.Tensor


@dataclass
class ChannelGroup:
    """Coupled channels that are removed together.

    Attributes:
        name: Name of the root module (the first producer torch-pruning found).
        size: Number of channels of the group.
        producers: Modules whose output channels the group removes.
        consumers: Modules whose input channels the group removes.
        slices: Every coupled parameter slice.
    """

    name: str
    size: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    slices: list[ParamSlice] = field(default_factory=list)


def own_parameters(module: nn.Module) -> list[str]:
    """Names of a module's own parameters, including parametrized ones (by their plain name)."""
    names = list(module.parametrizations) if parametrize.is_parametrized(module) else []
    names += [n for n, p in module._parameters.items() if p is not None and n not in names]
    return names


def module_parameters(model: nn.Module, names: Iterable[str]) -> set[str]:
    """Full names of the own parameters (:func:`own_parameters`) of the modules ``names``."""
    modules = dict(model.named_modules())
    return {f"{n}.{p}" for n in names for p in own_parameters(modules[n])}


def logical_parameters(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Parameter name -> ``(module, attribute)``, with plain names for parametrized ones.

    A weight masked through ``torch.nn.utils.parametrize`` is listed as
    ``layer1.0.conv1.weight`` (not ``...parametrizations.weight.original``);
    ``getattr(module, attribute)`` gives the tensor the forward pass uses.
    """
    out = {}
    for mod_name, module in model.named_modules():
        if "parametrizations" in mod_name.split("."):
            continue
        for attr in own_parameters(module):
            out[f"{mod_name}.{attr}" if mod_name else attr] = (module, attr)
    return out


def _slices_of(module: nn.Module, mod_name: str, out: bool) -> list[tuple[str, int]]:
    """``(param_name, dim)`` pairs a channel removal touches in one module."""
    own = own_parameters(module)
    if not own:
        return []
    prefix = f"{mod_name}." if mod_name else ""
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.transposed:
            raise ConfigError(
                f"filter pruning does not support transposed convolution {mod_name!r}; "
                "keep it dense or choose another pattern"
            )
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        if out or depthwise:
            return [(prefix + p, 0) for p in own]
        if module.groups != 1:
            raise ConfigError(
                f"filter pruning does not support grouped convolution {mod_name!r} "
                f"(groups={module.groups}); keep it dense or choose another pattern"
            )
        return [(prefix + "weight", 1)]
    if isinstance(module, nn.Linear):
        return [(prefix + p, 0) for p in own] if out else [(prefix + "weight", 1)]
    if isinstance(module, _NORMS):
        return [(prefix + p, 0) for p in own]
    if isinstance(module, nn.PReLU):
        return [(prefix + "weight", 0)] if module.num_parameters > 1 else []
    raise ConfigError(
        f"filter pruning does not support module {mod_name!r} ({type(module).__name__}); "
        "keep it dense or choose another pattern"
    )


def _classifier_name(layers: list[LayerMatrix]) -> str | None:
    return layers[-1].name if layers else None


def _channel_group(group, graph, names: Mapping[nn.Module, str]) -> ChannelGroup:
    """A :class:`ChannelGroup` from one torch-pruning group of ``graph`` (``names``: module -> name)."""
    root = group[0].dep.target.module
    per_key: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    producers: list[str] = []
    consumers: list[str] = []
    for item in group.items:
        dep = item.dep
        module = dep.target.module
        if isinstance(module, nn.Parameter):
            raise ConfigError(
                "filter pruning does not support bare nn.Parameter channels; "
                "keep that layer dense or choose another pattern"
            )
        if module not in names:
            continue  # torch-pruning's own ops (add, concat, reshape): no parameters
        out = graph.is_out_channel_pruning_fn(dep.handler)
        mod_name = names[module]
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            (producers if out else consumers).append(mod_name)
        for key in _slices_of(module, mod_name, out):
            index, rootl = per_key.setdefault(key, ([], []))
            index.extend(int(i) for i in item.idxs)
            rootl.extend(int(r) for r in item.root_idxs)
    slices = []
    for (param, dim), (index, rootl) in per_key.items():
        pairs = sorted(set(zip(index, rootl, strict=True)))
        index_t = torch.tensor([p[0] for p in pairs], dtype=torch.int64)
        slices.append(ParamSlice(param, dim, index_t, torch.tensor([p[1] for p in pairs], dtype=torch.int64)))
    return ChannelGroup(
        names.get(root, "?"),
        len(group[0].idxs),
        tuple(dict.fromkeys(producers)),
        tuple(dict.fromkeys(consumers)),
        slices,
    )


class FilterGraph:
    """Coupled channel groups of a network, for dependency-aware filter pruning.

    Args:
        model: The network (traced once with ``example_inputs``; its train/eval
            modes are restored afterwards, its weights are not changed).
        example_inputs: An input batch for tracing (e.g. ``torch.randn(1, 3, 32, 32)``).
        protect: Mapped layers whose output channels are never pruned; the
            classifier (the last mapped layer) is always protected.

    Attributes:
        groups: The prunable channel groups.
        params: Every parameter some group touches, in ``named_parameters`` order.
        layers: Every mapped layer (Conv2d / Linear) of the model.
        protected: Names of the protected layers.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor | Sequence[torch.Tensor],
        protect: Iterable[str] = (),
    ) -> None:
        self.model = model
        self.layers = extract_layers(model)
        modules = dict(model.named_modules())
        self.protected = tuple(
            dict.fromkeys([*protect, *filter(None, [_classifier_name(self.layers)])])
        )
        unknown = [n for n in self.protected if n not in modules]
        if unknown:
            raise ConfigError(
                f"unknown layer(s) to protect from filter pruning: {', '.join(unknown)}"
            )
        self.groups = self._build(model, example_inputs, [modules[n] for n in self.protected])
        self._param_refs = logical_parameters(model)
        order = {name: i for i, name in enumerate(self._param_refs)}
        self.params = sorted(
            {s.param for g in self.groups for s in g.slices}, key=order.__getitem__
        )
        self.shapes = {name: self._current(name).shape for name in self.params}

    @staticmethod
    def _build(
        model: nn.Module,
        example_inputs: torch.Tensor | Sequence[torch.Tensor],
        ignored: list[nn.Module],
    ) -> list[ChannelGroup]:
        modes = {m: m.training for m in model.modules()}
        try:
            with torch.enable_grad():  # torch-pruning traces through autograd
                graph = tp.DependencyGraph().build_dependency(model, example_inputs, verbose=False)
            raw = list(
                graph.get_all_groups(
                    ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]
                )
            )
        finally:
            for m, mode in modes.items():
                m.training = mode
        names = {m: n for n, m in model.named_modules()}
        return [_channel_group(group, graph, names) for group in raw]

    # ------------------------------------------------------------------ decisions

    def _current(self, name: str) -> torch.Tensor:
        module, attr = self._param_refs[name]
        return getattr(module, attr).detach()

    def _weight(self, weights: Mapping[str, torch.Tensor] | None, name: str) -> torch.Tensor:
        if weights is not None and name in weights:
            return weights[name].detach()
        return self._current(name)

    def importance(self, weights: Mapping[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Per group, ``(size,)`` float64: summed squared weights of every coupled slice.

        Args:
            weights: Parameter name -> tensor to score (e.g. ADMM's ``W+U``);
                parameters not given are read from the model.
        """
        squares: dict[str, torch.Tensor] = {}
        per_dim: dict[tuple[str, int], torch.Tensor] = {}
        result = []
        for group in self.groups:
            imp = torch.zeros(group.size, dtype=torch.float64)
            for s in group.slices:
                key = (s.param, s.dim)
                if key not in per_dim:
                    if s.param not in squares:
                        w = self._weight(weights, s.param)
                        squares[s.param] = w * w if w.is_floating_point() else (w * w).double()
                    sq = squares[s.param]
                    dims = [d for d in range(sq.dim()) if d != s.dim]
                    total = sq.sum(dims, dtype=torch.float64) if dims else sq.double()
                    per_dim[key] = total.cpu()
                imp.index_add_(0, s.root, per_dim[key][s.index])
            result.append(imp)
        return result

    def nothing_removed(self) -> list[torch.Tensor]:
        """A decision that removes no channel."""
        return [torch.zeros(g.size, dtype=torch.bool) for g in self.groups]

    def keep_vectors(self, removed: Sequence[torch.Tensor]) -> dict[str, dict[int, torch.Tensor]]:
        """Per parameter and dimension, which positions survive ``removed``."""
        if len(removed) != len(self.groups):
            raise ValueError(
                f"need one decision per group ({len(self.groups)}), got {len(removed)}"
            )
        keep: dict[str, dict[int, torch.Tensor]] = {}
        for group, rem in zip(self.groups, removed, strict=True):
            rem = rem.to(torch.bool)
            if rem.shape != (group.size,):
                raise ValueError(f"group {group.name}: decision must have shape ({group.size},)")
            if not bool(rem.any()):
                continue
            for s in group.slices:
                shape = self.shapes[s.param]
                vec = keep.setdefault(s.param, {}).setdefault(
                    s.dim, torch.ones(shape[s.dim], dtype=torch.bool)
                )
                vec[s.index[rem[s.root]]] = False
        return keep

    def masks(self, removed: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Masks of every parameter in :attr:`params` for the decision ``removed``."""
        keep = self.keep_vectors(removed)
        return {name: _mask_of(self.shapes[name], keep.get(name, {})) for name in self.params}

    def layer_counts(self, removed: Sequence[torch.Tensor], xbar: Crossbar) -> dict[str, int]:
        """Crossbars of every mapped layer under the ``filter`` scheme after ``removed``.

        Equal to :func:`pimprune.mapping.counting.count` of each layer's weight mask
        (fast path for ungrouped layers: products of the kept channel counts).
        """
        keep = self.keep_vectors(removed)
        counts = {}
        for layer in self.layers:
            pname = f"{layer.name}.weight"
            vecs = keep.get(pname, {})
            shape = layer.weight_shape
            if layer.groups == 1:
                out_kept = int(vecs[0].sum()) if 0 in vecs else shape[0]
                in_kept = int(vecs[1].sum()) if 1 in vecs else shape[1]
                if out_kept == 0 or in_kept == 0:
                    counts[layer.name] = 0
                    continue
                rows = in_kept * (layer.rows // shape[1])
                counts[layer.name] = cdiv(rows, xbar.rows) * cdiv(out_kept, xbar.cols)
            else:
                mask = _mask_of(shape, vecs)
                counts[layer.name] = count(weight_to_matrix(mask, layer.groups), xbar, "filter")
        return counts

    def remove_by_ratio(
        self, importance: Sequence[torch.Tensor], keep_ratio: float
    ) -> list[torch.Tensor]:
        """Keep ``max(1, ceil(keep_ratio*size))`` most important channels of every group.

        The ceiling forgives rounding (``ceil(k/n * n) == k``).
        """
        removed = []
        for imp in importance:
            n = imp.numel()
            keep = min(n, max(1, math.ceil(keep_ratio * n - 1e-9)))
            rem = torch.ones(n, dtype=torch.bool)
            rem[torch.argsort(imp, descending=True, stable=True)[:keep]] = False
            removed.append(rem)
        return removed


def _mask_of(shape: torch.Size, keep: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Boolean mask of ``shape`` keeping, along each dimension of ``keep``, the positions it keeps."""
    mask = torch.ones(shape, dtype=torch.bool)
    for dim, vec in keep.items():
        view = [1] * len(shape)
        view[dim] = shape[dim]
        mask = mask & vec.reshape(view)
    return mask
