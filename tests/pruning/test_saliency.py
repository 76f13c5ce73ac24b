"""Saliencies: what the masks keep (pimprune.pruning.saliency)."""

import pytest
import torch
from torch import nn

from pimprune.errors import UnknownNameError
from pimprune.pruning.projector import Projector
from pimprune.pruning.saliency import (
    SALIENCIES,
    calibration_batches,
    following_batchnorm,
    get_saliency,
)
from pimprune.pruning.target import PruneTarget
from pimprune.training.models import ModelSpec, create_model


def batches(n: int, shape=(8, 4, 6, 6), classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(*shape, generator=g), torch.randint(0, classes, (shape[0],), generator=g)) for _ in range(n)]


class ConvNet(nn.Module):
    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


def test_registry_and_unknown_name():
    assert set(SALIENCIES.names()) == {"magnitude", "activation", "fisher"}
    with pytest.raises(UnknownNameError, match="unknown saliency 'taylor'; choose one of"):
        get_saliency("taylor")


def test_magnitude_is_the_identity():
    sal = get_saliency("magnitude")
    net = ConvNet()
    assert sal.factors(net, ["conv.weight"], [], torch.device("cpu")) == {}
    w = {"conv.weight": net.conv.weight.detach()}
    assert torch.equal(sal.scaled(w, {})["conv.weight"], w["conv.weight"])


@pytest.mark.parametrize("groups", [1, 2])
def test_activation_factor_is_input_rms_times_bn_scale(groups):
    torch.manual_seed(0)
    net = ConvNet(groups)
    with torch.no_grad():
        net.bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.5]))
        net.bn.running_var.copy_(torch.tensor([1.0, 4.0, 0.25, 2.0, 9.0, 1.0]))
    data = batches(3)
    for x, _ in data:  # channel c scaled by c+1: distinct RMS per input channel
        x.mul_(torch.arange(1, 5, dtype=torch.float32).reshape(1, 4, 1, 1))
    f = get_saliency("activation").factors(net, ["conv.weight", "fc.weight"], data, torch.device("cpu"))
    xs = torch.cat([x for x, _ in data])
    rms = xs.pow(2).mean((0, 2, 3)).sqrt()
    bn_scale = net.bn.weight.abs() / (net.bn.running_var + net.bn.eps).sqrt()
    cin_g = 4 // groups
    expected = torch.empty(6, cin_g, 1, 1)
    for o in range(6):
        g = o // (6 // groups)
        for c in range(cin_g):
            expected[o, c] = bn_scale[o] * rms[g * cin_g + c]
    assert f["conv.weight"].shape == (6, cin_g, 1, 1)
    torch.testing.assert_close(f["conv.weight"], expected.detach())
    # the classifier: no batch norm after it, the RMS of its pooled input per feature
    assert f["fc.weight"].shape == (1, 6)
    assert f["fc.weight"][0, 3] == 0  # gamma 0: that channel's output is always relu(beta) = 0 here


def test_activation_ignores_non_layer_parameters():
    net = ConvNet()
    f = get_saliency("activation").factors(net, ["conv.weight", "bn.weight"], batches(1), torch.device("cpu"))
    assert float(f["bn.weight"]) == 0.0


def test_fisher_is_root_mean_squared_gradient():
    torch.manual_seed(1)
    net = ConvNet().eval()
    data = batches(4)
    f = get_saliency("fisher").factors(net, ["conv.weight", "fc.weight"], data, torch.device("cpu"))
    acc = torch.zeros_like(net.conv.weight)
    for x, y in data:
        net.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        acc += net.conv.weight.grad**2
    torch.testing.assert_close(f["conv.weight"], (acc / 4).sqrt())


def test_fisher_leaves_training_mode_and_statistics_alone():
    net = ConvNet().train()
    before = net.bn.running_mean.clone()
    get_saliency("fisher").factors(net, ["conv.weight"], batches(2), torch.device("cpu"))
    assert net.training and torch.equal(net.bn.running_mean, before)
    assert net.conv.weight.grad is None


def test_every_resnet18_conv_finds_its_batchnorm():
    model = create_model(ModelSpec(name="resnet18", num_classes=10, in_channels=1, input_size=28, width=0.25))
    norms = following_batchnorm(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(norms) == sorted(convs)
    assert norms["layer2.0.downsample.0"] is dict(model.named_modules())["layer2.0.downsample.1"]


def test_activation_saliency_moves_the_kept_rows_to_busy_inputs():
    """Equal weights: magnitude keeps rows arbitrarily, activation keeps the live input channels."""
    net = ConvNet()
    with torch.no_grad():
        net.conv.weight.fill_(0.1)
    data = batches(2)
    for x, _ in data:
        x[:, :2] *= 0.01  # channels 0 and 1 almost silent
    # conv: 36 rows = 4 crossbars of 9x8, classifier 1 (dense): 5 -> 3 leaves the conv 2 (18 rows)
    target = PruneTarget(pattern="row", crossbar="9x8", target_compression=5 / 3, keep_dense=("last",))
    proj = Projector(net, target, torch.zeros(1, 4, 6, 6))
    sal = get_saliency("activation")
    f = sal.factors(net, proj.params, data, torch.device("cpu"))
    mask = proj(sal.scaled({"conv.weight": net.conv.weight.detach()}, f))["conv.weight"]
    kept_inputs = mask.any(0).any(-1).any(-1)
    assert kept_inputs.tolist() == [False, False, True, True]


def test_calibration_batches_stops_early():
    seen = []

    def loader():
        for i in range(10):
            seen.append(i)
            yield i

    assert list(calibration_batches(loader(), 3)) == [0, 1, 2]
    assert seen == [0, 1, 2]


def test_auto_resolves_per_pattern():
    from pimprune.pruning.saliency import resolve_saliency

    assert resolve_saliency("auto", "subrow") == "fisher"
    assert resolve_saliency("auto", "row") == "fisher"
    assert resolve_saliency("auto", "filter") == "magnitude"
    assert resolve_saliency("activation", "filter") == "activation"
    with pytest.raises(UnknownNameError):
        resolve_saliency("best", "subrow")


def test_fisher_refuses_an_all_zero_signal():
    from pimprune.errors import ConfigError

    net = ConvNet().eval()
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.copy_(torch.tensor([100.0, -100.0, -100.0]))  # always class 0, loss exactly 0
    data = [(x, torch.zeros_like(y)) for x, y in batches(2)]
    with pytest.raises(ConfigError, match="fisher saliency is zero everywhere.*--saliency magnitude"):
        get_saliency("fisher").factors(net, ["conv.weight"], data, torch.device("cpu"))
