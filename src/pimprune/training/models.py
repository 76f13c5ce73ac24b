"""Network architectures that pimprune maps, trains and prunes, and checked state-dict loading.

A :class:`ModelSpec` names an architecture and the knobs that matter for crossbar
mapping (classes, input channels and size, channel width, stem stride);
:func:`create_model` builds it without pretrained weights. ``resnet18/34/50`` and
``vgg11/16`` are torchvision's models for large inputs at width 1 (so crossbar
counts match torchvision's) and CIFAR-style variants otherwise; ``resnet20`` is
He et al.'s CIFAR net. Any other torchvision classification model is built by name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import resnet as tv_resnet

from pimprune.errors import CheckpointError, ConfigError, UnknownNameError
from pimprune.registry import Registry

#: Inputs smaller than this (px) get the small-input (CIFAR-style) variants.
SMALL_INPUT_LIMIT = 64
#: Largest accepted channel-width multiplier.
MAX_WIDTH = 8.0
#: Smallest accepted input size (px).
MIN_INPUT_SIZE = 8

_SPEC_ATTR = "_pimprune_spec"


@dataclass(frozen=True)
class ModelSpec:
    """What to build.

    Attributes:
        name: Architecture name (``resnet18``, ``resnet20``, ``vgg16``, any
            torchvision classification model).
        num_classes: Number of output classes.
        in_channels: Channels of the input image (1 for grey, 3 for RGB).
        input_size: Side of the square input image, in px.
        width: Channel-width multiplier (1.0 = the published widths).
        stem_stride: Stride of the first conv; ``None`` = the model's default
            (1 for small inputs, 2 for ImageNet-size inputs).
    """

    name: str
    num_classes: int = 1000
    in_channels: int = 3
    input_size: int = 224
    width: float = 1.0
    stem_stride: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"model name must be a non-empty string, got {self.name!r}")
        _check_int("num_classes", self.num_classes, 2)
        _check_int("in_channels", self.in_channels, 1)
        _check_int("input_size", self.input_size, MIN_INPUT_SIZE)
        if self.stem_stride is not None:
            _check_int("stem_stride", self.stem_stride, 1)
            if self.stem_stride > self.input_size:
                raise ConfigError(
                    f"stem_stride {self.stem_stride} exceeds input_size {self.input_size} px; "
                    "use a smaller stride"
                )
        w = self.width
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ConfigError(f"model width must be a number, got {w!r}")
        if not 0 < w <= MAX_WIDTH:
            raise ConfigError(f"model width must be in (0, {MAX_WIDTH:g}], got {w:g}")
        object.__setattr__(self, "width", float(w))

    @property
    def small_input(self) -> bool:
        """True when the input is small enough for the CIFAR-style variants."""
        return self.input_size < SMALL_INPUT_LIMIT

    def label(self) -> str:
        """Short description, e.g. ``resnet18 (width 0.25, 1x28x28, 10 classes)``."""
        stem = "" if self.stem_stride is None else f", stem stride {self.stem_stride}"
        return (
            f"{self.name} (width {self.width:g}, {self.in_channels}x{self.input_size}x"
            f"{self.input_size}, {self.num_classes} classes{stem})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: on unknown keys, a missing ``name`` or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a model spec must be a mapping, got {type(data).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(
                f"unknown model spec key(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(allowed)}"
            )
        if "name" not in data:
            raise ConfigError("model spec has no 'name'; add e.g. name: resnet18")
        return cls(**dict(data))


def _check_int(field: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"model {field} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"model {field} must be >= {minimum}, got {value}")


def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded half up, at least 1."""
    return max(1, int(channels * width + 0.5))


ModelBuilder = Callable[[ModelSpec], nn.Module]

#: Architecture name -> builder. Names not registered here fall back to torchvision.
MODELS: Registry[ModelBuilder] = Registry("model")


# --------------------------------------------------------------------------- helpers


def _init_like_torchvision(model: nn.Module) -> None:
    """Kaiming-normal convs (fan-out), unit batch-norm, torchvision's defaults."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Replace the first ``Conv2d`` by one reading ``in_channels`` channels (all else equal)."""
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        if conv.in_channels == in_channels:
            return
        if conv.groups != 1:
            raise ConfigError(
                f"cannot adapt the grouped first conv {name!r} to {in_channels} input "
                "channels; use in_channels 3 for this model"
            )
        new = nn.Conv2d(
            in_channels,
            conv.out_channels,
            kernel_size=conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new)
        return
    raise ConfigError("model has no Conv2d to adapt to the input channels")


# --------------------------------------------------------------------------- ResNets


class ScaledResNet(tv_resnet.ResNet):
    """torchvision's ResNet with scalable stage widths, stem and stage count.

    Module names are torchvision's (``conv1``, ``bn1``, ``layer<i>.<j>.conv1``,
    ``layer<i>.<j>.downsample.0``, ``fc``); without max-pool, ``maxpool`` is an
    ``nn.Identity`` (no parameters, so the state dict is unchanged).

    Args:
        block: ``BasicBlock`` or ``Bottleneck`` from torchvision.
        layers: Blocks per stage.
        widths: Channels ``planes`` of each stage (before block expansion).
        num_classes: Output classes.
        in_channels: Input image channels.
        stem_kernel: Kernel side of the stem conv (3 or 7), px.
        stem_stride: Stride of the stem conv.
        maxpool: Whether the stem has torchvision's 3x3 stride-2 max-pool.
    """

    def __init__(
        self,
        block: type[tv_resnet.BasicBlock | tv_resnet.Bottleneck],
        layers: tuple[int, ...],
        widths: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        stem_kernel: int,
        stem_stride: int,
        maxpool: bool,
    ) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = widths[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.num_stages = len(layers)
        self.conv1 = nn.Conv2d(
            in_channels,
            widths[0],
            kernel_size=stem_kernel,
            stride=stem_stride,
            padding=stem_kernel // 2,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if maxpool else nn.Identity()
        )
        for i, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
            stage = self._make_layer(block, planes, blocks, stride=1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        _init_like_torchvision(self)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


@dataclass(frozen=True)
class ResNetFamily:
    """One ResNet depth.

    Attributes:
        block: torchvision block class.
        layers: Blocks per stage.
        widths: Stage channels at width 1.
        torchvision_name: torchvision model to reproduce exactly for large
            inputs at width 1 with the default stem (``None``: always CIFAR-style).
    """

    block: type[tv_resnet.BasicBlock | tv_resnet.Bottleneck]
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    torchvision_name: str | None

    def build(self, spec: ModelSpec) -> nn.Module:
        """Build the network ``spec`` describes."""
        exact = (
            self.torchvision_name is not None
            and not spec.small_input
            and spec.width == 1.0
            and spec.stem_stride is None
        )
        if exact:
            model = torchvision.models.get_model(
                self.torchvision_name, weights=None, num_classes=spec.num_classes
            )
            _adapt_first_conv(model, spec.in_channels)
            return model
        cifar_stem = self.torchvision_name is None or spec.small_input
        widths = tuple(scale_channels(c, spec.width) for c in self.widths)
        return ScaledResNet(
            self.block,
            self.layers,
            widths,
            num_classes=spec.num_classes,
            in_channels=spec.in_channels,
            stem_kernel=3 if cifar_stem else 7,
            stem_stride=spec.stem_stride or (1 if cifar_stem else 2),
            maxpool=not cifar_stem,
        )


_BASIC = tv_resnet.BasicBlock
_BOTTLENECK = tv_resnet.Bottleneck
_IMAGENET_WIDTHS = (64, 128, 256, 512)
MODELS.add("resnet18", ResNetFamily(_BASIC, (2, 2, 2, 2), _IMAGENET_WIDTHS, "resnet18").build)
MODELS.add("resnet34", ResNetFamily(_BASIC, (3, 4, 6, 3), _IMAGENET_WIDTHS, "resnet34").build)
MODELS.add("resnet50", ResNetFamily(_BOTTLENECK, (3, 4, 6, 3), _IMAGENET_WIDTHS, "resnet50").build)
MODELS.add("resnet20", ResNetFamily(_BASIC, (3, 3, 3), (16, 32, 64), None).build)


# --------------------------------------------------------------------------- VGGs

#: VGG layer configurations (channels, "M" = 2x2 max-pool), Simonyan & Zisserman 2015.
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ),
}


class CompactVGG(nn.Module):
    """VGG for small inputs: conv-BN-ReLU stacks, global average pool, one linear layer.

    A max-pool is skipped where the feature map is already 1 px, so any input
    of at least :data:`MIN_INPUT_SIZE` px works (28 px Fashion-MNIST included).
    Module names follow torchvision (``features.<i>``, ``avgpool``,
    ``classifier.0``).

    Args:
        config: Layer configuration (channels and ``"M"``), already width-scaled.
        num_classes: Output classes.
        in_channels: Input image channels.
        input_size: Input side, px.
        stem_stride: Stride of the first conv.
    """

    def __init__(
        self,
        config: tuple[int | str, ...],
        num_classes: int,
        in_channels: int,
        input_size: int,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        size = input_size
        first = True
        for item in config:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    size //= 2
                continue
            stride = stem_stride if first else 1
            layers += [
                nn.Conv2d(channels, int(item), kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(int(item)),
                nn.ReLU(inplace=True),
            ]
            size = (size - 1) // stride + 1
            channels = int(item)
            first = False
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Linear(channels, num_classes))
        _init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _vgg_builder(name: str) -> ModelBuilder:
    def build(spec: ModelSpec) -> nn.Module:
        if not spec.small_input and spec.width == 1.0 and spec.stem_stride is None:
            model = torchvision.models.get_model(name, weights=None, num_classes=spec.num_classes)
            _adapt_first_conv(model, spec.in_channels)
            return model
        config = tuple(
            item if item == "M" else scale_channels(int(item), spec.width)
            for item in VGG_CONFIGS[name]
        )
        return CompactVGG(
            config, spec.num_classes, spec.in_channels, spec.input_size, spec.stem_stride or 1
        )

    return build


for _name in VGG_CONFIGS:
    MODELS.add(_name, _vgg_builder(_name))


# --------------------------------------------------------------------------- torchvision


def torchvision_names() -> list[str]:
    """Names of torchvision's classification models (``list_models(module=torchvision.models)``)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


#: Extra constructor arguments of torchvision models whose input size is fixed
#: at construction (name prefix -> keyword that takes the input size).
_SIZE_KEYWORDS: dict[str, Callable[[int], dict[str, Any]]] = {
    "vit_": lambda size: {"image_size": size},
    "maxvit_": lambda size: {"input_size": (size, size)},
}
#: Constructor arguments that keep a plain ``logits = model(x)`` interface and
#: silence initialisation warnings when no weights are loaded.
_FIXED_KEYWORDS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def _torchvision_model(spec: ModelSpec) -> nn.Module:
    if spec.width != 1.0 or spec.stem_stride is not None:
        own = ", ".join(MODELS.names())
        raise ConfigError(
            f"width and stem_stride are supported only for {own}; "
            f"build {spec.name} with width 1 and the default stem"
        )
    kwargs: dict[str, Any] = dict(_FIXED_KEYWORDS.get(spec.name, {}))
    for prefix, make in _SIZE_KEYWORDS.items():
        if spec.name.startswith(prefix):
            kwargs.update(make(spec.input_size))
    model = torchvision.models.get_model(
        spec.name, weights=None, num_classes=spec.num_classes, **kwargs
    )
    _adapt_first_conv(model, spec.in_channels)
    return model


# --------------------------------------------------------------------------- public API


def model_names(include_torchvision: bool = True) -> list[str]:
    """Every buildable architecture name, sorted (pimprune's own first if not merged)."""
    names = set(MODELS.names())
    if include_torchvision:
        names.update(torchvision_names())
    return sorted(names)


def create_model(spec: ModelSpec | str, *, seed: int | None = None) -> nn.Module:
    """Build the network ``spec`` describes, with fresh (untrained) weights.

    Args:
        spec: What to build (a bare name means the spec's defaults).
        seed: Seed of the weight initialisation; ``None`` uses the global RNG.
            The global RNG state is left untouched when a seed is given.

    Returns:
        The model; ``spec_of(model)`` returns ``spec``.

    Raises:
        UnknownNameError: for a name neither registered nor in torchvision.
        ConfigError: for options the architecture does not support.
    """
    if isinstance(spec, str):
        spec = ModelSpec(spec)
    if spec.name in MODELS:
        builder = MODELS.get(spec.name)
    elif spec.name in torchvision_names():
        builder = _torchvision_model
    else:
        raise UnknownNameError(
            f"unknown model {spec.name!r}; choose one of: {', '.join(MODELS.names())} "
            "or a torchvision classification model (e.g. mobilenet_v2, resnet50, vgg16_bn)"
        )
    if seed is None:
        model = builder(spec)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(spec)
    object.__setattr__(model, _SPEC_ATTR, spec)
    return model


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The :class:`ModelSpec` of a model from :func:`create_model` (``None`` for others)."""
    spec = getattr(model, _SPEC_ATTR, None)
    return spec if isinstance(spec, ModelSpec) else None


# --------------------------------------------------------------------------- checkpoints

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip_wrappers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the key prefixes that DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) add."""
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


def _shapes(state_dict: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _first_mismatch(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
) -> str | None:
    """Describe the first key that is missing, unexpected or of another shape (None: all fit)."""
    for key, shape in expected.items():
        if key not in found:
            return f"key {key!r} is missing from the checkpoint"
        if found[key] != shape:
            return f"key {key!r} has shape {list(found[key])}, the model needs {list(shape)}"
    for key in found:
        if key not in expected:
            return f"the checkpoint has unexpected key {key!r}"
    return None


def _meta_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]] | None:
    """State-dict shapes of ``spec`` without allocating weights (``None`` if unbuildable)."""
    try:
        with torch.device("meta"):
            model = create_model(spec)
    except (ConfigError, ValueError, RuntimeError):
        return None
    return _shapes(model.state_dict())


def guess_spec(state_dict: Mapping[str, Any]) -> ModelSpec | None:
    """Which of pimprune's own architectures a state dict fits exactly, if any.

    Tries every registered family, at the width, input channels and classes that
    the first conv and the last linear layer imply, with small and large inputs.
    """
    sd = _strip_wrappers(state_dict)
    shapes = _shapes(sd)
    convs = [s for k, s in shapes.items() if k.endswith("weight") and len(s) == 4]
    linears = [s for k, s in shapes.items() if k.endswith("weight") and len(s) == 2]
    if not convs or not linears:
        return None
    first_out, in_channels = convs[0][0], convs[0][1]
    num_classes = linears[-1][0]
    if num_classes < 2:
        return None
    for name in MODELS.names():
        probe = _meta_shapes(ModelSpec(name, num_classes=10, input_size=32))
        if probe is None:
            continue
        base = next(s for s in probe.values() if len(s) == 4)[0]
        width = round(first_out / base, 4)
        if not 0 < width <= MAX_WIDTH:
            continue
        for size in (32, 224):  # the stem stride changes no shape
            try:
                spec = ModelSpec(name, num_classes, in_channels, size, width=width)
            except ConfigError:
                continue
            expected = _meta_shapes(spec)
            if expected is not None and _first_mismatch(expected, shapes) is None:
                return spec
    return None


def _describe_guess(guess: ModelSpec) -> str:
    size = (
        f"input_size < {SMALL_INPUT_LIMIT}"
        if guess.small_input
        else f"input_size >= {SMALL_INPUT_LIMIT}"
    )
    return (
        f"model {guess.name}, width {guess.width:g}, in_channels {guess.in_channels}, "
        f"num_classes {guess.num_classes}, {size}"
    )


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Load ``state_dict`` into ``model``, refusing checkpoints of another architecture.

    Prefixes added by DDP (``module.``) or ``torch.compile`` (``_orig_mod.``) are
    removed first.

    Raises:
        CheckpointError: one line naming the first missing, unexpected or
            mis-shaped key and, where it can tell, the architecture and width the
            checkpoint needs.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"checkpoint weights must be a state dict (mapping), got {type(state_dict).__name__}"
        )
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"checkpoint entry {bad[0]!r} is not a tensor; the file is not a model state dict"
        )
    sd = _strip_wrappers(state_dict)
    expected = _shapes(model.state_dict())
    problem = _first_mismatch(expected, _shapes(sd))
    if problem is None:
        model.load_state_dict(sd, strict=True)
        return
    spec = spec_of(model)
    target = spec.label() if spec is not None else type(model).__name__
    guess = guess_spec(sd)
    hint = (
        f"it looks like a checkpoint of {_describe_guess(guess)}; build that model"
        if guess is not None
        else "it comes from another architecture or width; build the model it was trained with"
    )
    raise CheckpointError(f"checkpoint does not fit {target}: {problem}; {hint}")
