"""Tests of pimprune.training.models: specs, architectures, checkpoint checks."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from pimprune.errors import CheckpointError, ConfigError, UnknownNameError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count_network
from pimprune.mapping.matrices import extract_layers
from pimprune.training.models import (
    MODELS,
    ModelSpec,
    create_model,
    guess_spec,
    load_state_dict_checked,
    model_names,
    scale_channels,
    spec_of,
)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def meta_model(spec: ModelSpec) -> nn.Module:
    with torch.device("meta"):
        return create_model(spec)


# --------------------------------------------------------------------------- ModelSpec


def test_spec_json_round_trip() -> None:
    spec = ModelSpec(
        "resnet18", num_classes=10, in_channels=1, input_size=28, width=0.25, stem_stride=2
    )
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert ModelSpec.from_dict({"name": "vgg16"}) == ModelSpec("vgg16")


def test_spec_width_int_becomes_float() -> None:
    assert ModelSpec("resnet18", width=2).width == 2.0
    assert isinstance(ModelSpec("resnet18", width=2).width, float)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"width": -1.0},
        {"width": 8.5},
        {"width": float("nan")},
        {"width": "wide"},
        {"num_classes": 1},
        {"num_classes": 10.0},
        {"in_channels": 0},
        {"input_size": 7},
        {"input_size": True},
        {"stem_stride": 0},
        {"stem_stride": 64, "input_size": 32},
        {"name": ""},
    ],
)
def test_spec_rejects_bad_values(kwargs: dict) -> None:
    args = {"name": "resnet18", **kwargs}
    with pytest.raises(ConfigError) as info:
        ModelSpec(**args)
    assert "\n" not in str(info.value)


def test_from_dict_rejects_unknown_and_missing_keys() -> None:
    with pytest.raises(ConfigError, match="'depth'"):
        ModelSpec.from_dict({"name": "resnet18", "depth": 18})
    with pytest.raises(ConfigError, match="name"):
        ModelSpec.from_dict({"width": 1.0})
    with pytest.raises(ConfigError):
        ModelSpec.from_dict(["resnet18"])  # type: ignore[arg-type]


def test_scale_channels() -> None:
    assert [scale_channels(c, 0.25) for c in (64, 128, 256, 512)] == [16, 32, 64, 128]
    assert scale_channels(16, 0.01) == 1
    assert scale_channels(64, 1.5) == 96


# --------------------------------------------------------------------------- registry


def test_model_names_include_own_and_torchvision() -> None:
    names = model_names()
    for name in ("resnet18", "resnet20", "resnet34", "vgg11", "vgg16", "mobilenet_v2", "resnet50"):
        assert name in names
    assert set(MODELS.names()) <= set(names)
    assert "resnet20" in model_names(include_torchvision=False)
    assert "mobilenet_v2" not in model_names(include_torchvision=False)


def test_unknown_model_lists_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        create_model(ModelSpec("resnet19"))
    message = str(info.value)
    assert "resnet19" in message and "resnet18" in message and "\n" not in message


# --------------------------------------------------------------------------- ResNets


def test_resnet18_large_input_is_torchvision() -> None:
    model = create_model(ModelSpec("resnet18", num_classes=1000))
    reference = torchvision.models.resnet18(num_classes=1000)
    assert shapes(model) == shapes(reference)
    assert list(model.state_dict()) == list(reference.state_dict())
    # Same modules in the same order, so the forward pass is torchvision's.
    model.load_state_dict(reference.state_dict())
    model.eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), reference(x))
    dense = count_network(extract_layers(model), Crossbar(128, 128), schemes=("dense",))
    assert dense.total("dense") == 727


def test_resnet18_large_input_adapts_first_conv() -> None:
    model = meta_model(ModelSpec("resnet18", num_classes=10, in_channels=1, input_size=128))
    reference = shapes(torchvision.models.resnet18(num_classes=10))
    got = shapes(model)
    assert got["conv1.weight"] == (64, 1, 7, 7)
    assert {k: v for k, v in got.items() if k != "conv1.weight"} == {
        k: v for k, v in reference.items() if k != "conv1.weight"
    }


@pytest.mark.parametrize("stem", [None, 2])
def test_resnet18_small_input_variant(stem: int | None) -> None:
    spec = ModelSpec("resnet18", 10, 1, 28, width=0.25, stem_stride=stem)
    model = create_model(spec, seed=0)
    assert spec_of(model) == spec
    assert model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (stem or 1,) * 2
    assert model.conv1.in_channels == 1
    assert isinstance(model.maxpool, nn.Identity)
    assert [model.get_submodule(f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [
        16,
        32,
        64,
        128,
    ]
    # torchvision's module names, so layer names match between the variants.
    assert list(model.state_dict()) == list(torchvision.models.resnet18().state_dict())
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # Full ResNet18 tiling on 128x128 equals width-0.25 tiling on 32x32 (docs/design.md, section 7).
    full = meta_model(ModelSpec("resnet18", 10, 1, 28))
    small = count_network(extract_layers(model), Crossbar(32, 32), schemes=("dense",))
    big = count_network(extract_layers(full), Crossbar(128, 128), schemes=("dense",))
    assert [c.dense for c in small.layers] == [c.dense for c in big.layers]


def test_resnet_width_with_large_input_keeps_imagenet_stem() -> None:
    model = meta_model(ModelSpec("resnet18", 1000, 3, 224, width=0.5))
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model.fc.in_features == 256
    strided = meta_model(ModelSpec("resnet18", 1000, 3, 224, stem_stride=4))
    assert strided.conv1.stride == (4, 4)


def test_resnet34_and_resnet50_small() -> None:
    r34 = meta_model(ModelSpec("resnet34", 10, 3, 32))
    assert [len(r34.get_submodule(f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    r50 = meta_model(ModelSpec("resnet50", 10, 3, 32, width=0.5))
    assert r50.fc.in_features == 1024  # 256*2 expansion 4


def test_resnet20() -> None:
    model = create_model(ModelSpec("resnet20", 10, 3, 32), seed=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    downsample = [n for n, _ in model.named_modules() if n.endswith("downsample.0")]
    assert len(convs) == 19 + 2 and downsample == ["layer2.0.downsample.0", "layer3.0.downsample.0"]
    assert [model.get_submodule(f"layer{i}")[0].conv1.out_channels for i in (1, 2, 3)] == [
        16,
        32,
        64,
    ]
    assert not hasattr(model, "layer4")
    params = sum(p.numel() for p in model.parameters())
    assert 0.26e6 < params < 0.28e6  # He et al.: 0.27M
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    wide = meta_model(ModelSpec("resnet20", 10, 3, 32, width=2))
    assert wide.fc.in_features == 128


def test_seed_makes_init_reproducible_and_keeps_global_rng() -> None:
    spec = ModelSpec("resnet20", 10, 1, 28, width=0.5)
    state = torch.random.get_rng_state()
    a = create_model(spec, seed=3).state_dict()
    assert torch.equal(state, torch.random.get_rng_state())
    b = create_model(spec, seed=3).state_dict()
    c = create_model(spec, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


# --------------------------------------------------------------------------- VGG, torchvision


@pytest.mark.parametrize("name,convs", [("vgg11", 8), ("vgg16", 13)])
@pytest.mark.parametrize("size", [28, 32])
def test_small_vgg(name: str, convs: int, size: int) -> None:
    model = create_model(ModelSpec(name, 10, 1, size, width=0.125))
    conv_layers = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(conv_layers) == convs
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(2, 1, size, size)).shape == (2, 10)


def test_large_vgg_is_torchvision() -> None:
    model = meta_model(ModelSpec("vgg16", num_classes=100))
    assert shapes(model) == shapes(meta_model_tv("vgg16", 100))


def meta_model_tv(name: str, num_classes: int) -> nn.Module:
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def test_torchvision_fallback_and_channel_adaptation() -> None:
    model = create_model(ModelSpec("mobilenet_v2", num_classes=7, in_channels=1, input_size=64))
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 7)
    vit = meta_model(ModelSpec("vit_b_32", num_classes=5, input_size=64))
    assert vit.image_size == 64


def test_torchvision_fallback_rejects_width() -> None:
    with pytest.raises(ConfigError, match="width"):
        create_model(ModelSpec("mobilenet_v2", width=0.5))


def test_no_weights_are_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    for name in ("resnet18", "vgg11", "squeezenet1_1"):
        meta_model(ModelSpec(name))


# --------------------------------------------------------------------------- checkpoints


def test_load_state_dict_checked_loads_and_strips_ddp_prefix() -> None:
    spec = ModelSpec("resnet20", 10, 1, 28, width=0.5)
    source = create_model(spec, seed=0)
    target = create_model(spec, seed=1)
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    load_state_dict_checked(target, wrapped)
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v)


def test_checkpoint_of_other_width_is_named() -> None:
    ckpt = create_model(ModelSpec("resnet18", 10, 1, 28, width=0.25)).state_dict()
    model = create_model(ModelSpec("resnet18", 10, 1, 28, width=0.5))
    with pytest.raises(CheckpointError) as info:
        load_state_dict_checked(model, ckpt)
    message = str(info.value)
    assert "'conv1.weight'" in message and "width 0.25" in message and "resnet18" in message
    assert "\n" not in message


def test_checkpoint_of_other_architecture_is_named() -> None:
    ckpt = create_model(ModelSpec("resnet20", 10, 3, 32)).state_dict()
    model = create_model(ModelSpec("resnet18", 10, 3, 32, width=0.25))
    with pytest.raises(CheckpointError, match="resnet20"):
        load_state_dict_checked(model, ckpt)


def test_checkpoint_missing_and_unexpected_keys() -> None:
    spec = ModelSpec("resnet20", 10, 3, 32)
    model = create_model(spec)
    sd = dict(model.state_dict())
    del sd["fc.bias"]
    with pytest.raises(CheckpointError, match="'fc.bias' is missing"):
        load_state_dict_checked(model, sd)
    sd = dict(model.state_dict())
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected key 'extra.weight'"):
        load_state_dict_checked(model, sd)
    with pytest.raises(CheckpointError, match="not a tensor"):
        load_state_dict_checked(model, {"conv1.weight": "oops"})
    with pytest.raises(CheckpointError):
        load_state_dict_checked(model, [1, 2])  # type: ignore[arg-type]


def test_guess_spec_recovers_vgg_and_classes() -> None:
    spec = ModelSpec("vgg11", num_classes=7, in_channels=1, input_size=28, width=0.25)
    guess = guess_spec(meta_model(spec).state_dict())
    assert guess is not None
    assert (guess.name, guess.width, guess.num_classes, guess.in_channels) == ("vgg11", 0.25, 7, 1)
    assert guess.small_input
    assert guess_spec({"w": torch.zeros(3)}) is None
