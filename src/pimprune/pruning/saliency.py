"""What a pruning mask keeps: a saliency factor ``s`` per weight.

Patterns keep the units of largest energy of what they rank; with a saliency they
rank the scores ``w * s`` (energy ``w^2 s^2``) and the mask is applied to ``w``.

- ``magnitude``: ``s = 1`` (ADMM's Z-step is then the Euclidean projection).
- ``activation``: ``s[o, i] = b[o] * rms(input i)``, ``b`` the scale of the batch norm
  that follows the layer: the layer's reconstruction error in normalised-output units.
- ``fisher``: ``s = sqrt(E[g^2])`` (empirical Fisher OBD), an estimate of the loss
  increase, hence comparable across layers (no per-layer normalisation).

``auto`` resolves per pattern to the measured best (:data:`AUTO_SALIENCY`). A batch
norm "follows" a layer when it is the next module registered after it and has as
many features as the layer has outputs.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from pimprune.errors import ConfigError
from pimprune.pruning.masking import effective_parameter, raw_parameter
from pimprune.registry import Registry

#: Saliency name -> class.
SALIENCIES: Registry[type[Saliency]] = Registry("saliency")


class Saliency(ABC):
    """How much each weight matters to the network (see the module docstring).

    Attributes:
        name: Registry name.
        needs_data: Whether :meth:`factors` reads calibration batches.
        comparable_across_layers: Whether factors of different layers are in the
            same units, so the global allocation may rank them as they are.
    """

    name: str = ""
    needs_data: bool = True
    comparable_across_layers: bool = False

    @abstractmethod
    def factors(
        self,
        model: nn.Module,
        params: list[str],
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        device: torch.device,
    ) -> dict[str, torch.Tensor]:
        """Per parameter name in ``params``, a factor ``s >= 0`` broadcastable to it.

        Args:
            model: The network (its masked weights as the forward pass sees them).
            params: Weight names (``layer1.0.conv1.weight``) of Conv/Linear layers.
            batches: Calibration ``(input, label)`` batches (already limited in number).
            device: Where the model runs.
        """

    @staticmethod
    def scores(weights: Mapping[str, torch.Tensor], factors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Importance scores ``w * s`` of every weight with a factor (the projector's ``scores``).

        A weight without a factor has no score: the projector ranks it by itself.
        """
        return {
            name: weights[name] * s.to(weights[name].device, weights[name].dtype)
            for name, s in factors.items()
            if name in weights
        }

    @staticmethod
    def scaled(weights: Mapping[str, torch.Tensor], factors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``w * s`` for every weight with a factor; others unchanged (weights and scores in one)."""
        return {**weights, **Saliency.scores(weights, factors)}


@SALIENCIES.register("magnitude")
class MagnitudeSaliency(Saliency):
    """``s = 1``: keep the largest weights."""

    name = "magnitude"
    needs_data = False

    def factors(self, model, params, batches, device):  # noqa: D102
        return {}


#: The layers a weight matrix is mapped from (pimprune.mapping.matrices).
_MAPPED = (nn.modules.conv._ConvNd, nn.Linear)


def following_batchnorm(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """Conv/Linear module name -> the batch norm registered right after it (see module docstring)."""
    kinds = (*_MAPPED, nn.modules.batchnorm._BatchNorm)
    named = [
        (n, m)
        for n, m in model.named_modules()
        if "parametrizations" not in n.split(".") and (isinstance(m, kinds) or not any(True for _ in m.children()))
    ]
    out = {}
    for (name, mod), (_, nxt) in zip(named, named[1:], strict=False):
        if not isinstance(mod, _MAPPED):
            continue
        outs = mod.out_channels if isinstance(mod, nn.modules.conv._ConvNd) else mod.out_features
        if isinstance(nxt, nn.modules.batchnorm._BatchNorm) and nxt.num_features == outs:
            out[name] = nxt
    return out


def _input_factor(module: nn.Module, rms: torch.Tensor) -> torch.Tensor:
    """Per-input RMS laid out like the module's weight (kernel dims broadcast)."""
    if isinstance(module, nn.Linear):
        return rms.reshape(1, -1)
    g = module.groups
    cout, cin_g = module.out_channels, module.in_channels // g
    per_group = rms.reshape(g, 1, cin_g).expand(g, cout // g, cin_g).reshape(cout, cin_g)
    return per_group.reshape(cout, cin_g, *([1] * (module.weight.dim() - 2)))


@SALIENCIES.register("activation")
class ActivationSaliency(Saliency):
    """``s[o, i] = bn_scale[o] * rms(input_i)``: layer-wise OBD in normalised-output units."""

    name = "activation"

    @torch.no_grad()
    def factors(self, model, params, batches, device):  # noqa: D102
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        hooks = []
        named = dict(model.named_modules())
        modules = {}
        for p in params:
            mod_name, _, attr = p.rpartition(".")
            mod = named[mod_name]
            if attr != "weight" or not isinstance(mod, _MAPPED):
                continue  # e.g. a batch norm of a filter group: not scored (factor 0)
            modules[p] = mod

            def pre(m, inputs, key=p):
                x = inputs[0].detach().float()
                feature = x.dim() - 1 if isinstance(m, nn.Linear) else 1
                dims = [d for d in range(x.dim()) if d != feature]
                sums[key] = sums.get(key, 0) + (x * x).sum(dims, dtype=torch.float64)
                counts[key] = counts.get(key, 0) + x.numel() // x.shape[feature]

            hooks.append(mod.register_forward_pre_hook(pre))
        was_training = model.training
        model.eval()
        try:
            for x, _ in batches:
                model(x.to(device, non_blocking=True))
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
        norms = following_batchnorm(model)
        out = {}
        for p in params:
            if p not in modules:
                out[p] = torch.zeros((), device=effective_parameter(model, p).device)
                continue
            mod = modules[p]
            if p not in sums:  # never reached by the forward pass: leave as magnitude
                continue
            rms = (sums[p] / max(counts[p], 1)).sqrt().float()
            s = _input_factor(mod, rms)
            bn = norms.get(p.rpartition(".")[0])
            if bn is not None and bn.running_var is not None:
                gamma = bn.weight.detach().abs() if bn.weight is not None else torch.ones_like(bn.running_var)
                scale = (gamma / (bn.running_var + bn.eps).sqrt()).float()
                s = s * scale.reshape(-1, *([1] * (s.dim() - 1)))
            out[p] = s.to(effective_parameter(model, p).device)
        return out


@SALIENCIES.register("fisher")
class FisherSaliency(Saliency):
    """``s = sqrt(E[g^2])``: empirical-Fisher OBD, an estimate of the loss increase."""

    name = "fisher"
    comparable_across_layers = True

    def factors(self, model, params, batches, device):  # noqa: D102
        tensors = [raw_parameter(model, p) for p in params]
        acc = [torch.zeros_like(t, dtype=torch.float64) for t in tensors]
        was_training = model.training
        model.eval()  # batch-norm statistics untouched
        n = 0
        try:
            for x, y in batches:
                loss = nn.functional.cross_entropy(model(x.to(device, non_blocking=True)), y.to(device))
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                for a, g in zip(acc, grads, strict=True):
                    if g is not None:
                        a += g.detach().double() ** 2
                n += 1
        finally:
            model.train(was_training)
        if n and not any(bool(a.any()) for a in acc):
            raise ConfigError(
                "the fisher saliency is zero everywhere (the model fits its calibration batches exactly, "
                "so every gradient is 0); prune with --saliency magnitude or activation"
            )
        return {p: (a / max(n, 1)).sqrt().float() for p, a in zip(params, acc, strict=True)}


#: What ``auto`` resolves to: per pattern, the saliency that measured best (8x on
#: Fashion-MNIST / ResNet18 w0.25 / 32x32, docs/results.md); patterns not listed get ``fisher``.
AUTO_SALIENCY: dict[str, str] = {"filter": "magnitude"}
AUTO = "auto"


def resolve_saliency(name: str, pattern: str) -> str:
    """``name``, or for ``auto`` the measured best saliency for ``pattern``."""
    if name == AUTO:
        return AUTO_SALIENCY.get(pattern, "fisher")
    SALIENCIES.get(name)  # raises UnknownNameError
    return name


def get_saliency(name: str) -> Saliency:
    """The saliency registered as ``name`` (raises ``UnknownNameError``)."""
    return SALIENCIES.get(name)()


def calibration_batches(loader: Iterable, count: int) -> Iterable:
    """The first ``count`` batches of ``loader`` (no further batch is drawn)."""
    return itertools.islice(loader, count)
