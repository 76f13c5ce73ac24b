import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count, dense_count
from pimprune.mapping.matrices import extract_layers, weight_to_matrix
from pimprune.pruning.dependency import FilterGraph

EXAMPLE = torch.zeros(1, 3, 32, 32)


def _zeroed(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masked copy of the state dict."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, mask in masks.items():
        state[name] = state[name] * mask
    return state


class TinyResidual(nn.Module):
    """Stem, one residual block, a concatenation, a strided conv, flatten (2x2) and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(8)
        self.join = nn.ReLU()
        self.c1 = nn.Conv2d(8, 4, 1)
        self.c2 = nn.Conv2d(8, 6, 1)
        self.cat = nn.Identity()
        self.d = nn.Conv2d(10, 6, 3, padding=1, stride=2)
        self.bn_d = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = self.bn_b(self.b(F.relu(self.bn_a(self.a(x)))))
        x = self.join(x + y)
        z = self.cat(torch.cat([self.c1(x), self.c2(x)], 1))
        z = F.relu(self.bn_d(self.d(z)))
        z = F.adaptive_avg_pool2d(z, 2).flatten(1)
        return self.fc(z)


def _feature_maps(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, o.detach()))
        for n, m in model.named_modules()
        if n
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return out


def _random_removal(graph: FilterGraph, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    removed = []
    for g in graph.groups:
        r = torch.rand(g.size, generator=gen) < 0.5
        r[torch.randint(g.size, (1,), generator=gen)] = False  # keep at least one
        removed.append(r)
    return removed


def _removed_channels_are_zero(model, graph, removed, x, outputs_of) -> int:
    """Check every producer/BN output (and extra tensors) of removed channels; return #checks."""
    ref_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(_zeroed(model, graph.masks(removed)))
    try:
        maps = _feature_maps(model, x)
    finally:
        model.load_state_dict(ref_state)
    checks = 0
    for group, rem in zip(graph.groups, removed, strict=True):
        if not rem.any():
            continue
        modules = set()
        for s in group.slices:
            if s.dim == 0:
                mod = s.param.rsplit(".", 1)[0]
                modules.add(mod)
                chans = s.index[rem[s.root]]
                assert torch.count_nonzero(maps[mod][:, chans]) == 0, mod
                checks += 1
        for name, chans_of in outputs_of(group, modules).items():
            assert torch.count_nonzero(maps[name][:, chans_of(rem)]) == 0, name
            checks += 1
    return checks


def test_tiny_net_groups_follow_adds_and_concats(randomise_norms):
    model = TinyResidual().eval()
    randomise_norms(model)
    graph = FilterGraph(model, torch.randn(1, 3, 8, 8))
    by_producers = {frozenset(g.producers): g for g in graph.groups}
    residual = by_producers[frozenset({"stem", "b"})]
    assert residual.size == 8
    assert set(residual.consumers) == {"a", "c1", "c2"}
    assert {"a"} in [set(p) for p in by_producers] and {"d"} in [set(p) for p in by_producers]
    # concatenation: c2's channel j is input channel 4 + j of d
    c2 = by_producers[frozenset({"c2"})]
    d_in = next(s for s in c2.slices if s.param == "d.weight" and s.dim == 1)
    assert d_in.index.tolist() == [4 + int(r) for r in d_in.root]
    # flatten into the classifier: channel j of d feeds 4 features
    d_group = by_producers[frozenset({"d"})]
    fc_in = next(s for s in d_group.slices if s.param == "fc.weight")
    assert sorted(fc_in.index.tolist()) == list(range(24))
    assert torch.equal(fc_in.root, fc_in.index // 4)
    # every slice: BN weight and bias, conv bias
    params = {s.param for s in d_group.slices}
    assert {"d.weight", "d.bias", "bn_d.weight", "bn_d.bias", "fc.weight"} <= params
    assert "fc.bias" not in params  # classifier outputs are never pruned
    assert "stem.weight" in graph.params
    # the classifier is protected; the first conv's inputs belong to no group
    assert all("fc" not in g.producers for g in graph.groups)
    assert all(
        not (s.param == "stem.weight" and s.dim == 1) for g in graph.groups for s in g.slices
    )


@pytest.mark.parametrize("seed", range(3))
def test_tiny_net_removed_channels_are_exactly_zero(seed, randomise_norms):
    model = TinyResidual().eval()
    randomise_norms(model, seed)
    x = torch.randn(2, 3, 8, 8)
    graph = FilterGraph(model, x[:1])
    removed = _random_removal(graph, seed)

    def extra(group, modules):
        out = {}
        if "b" in modules:  # after the residual add
            out["join"] = lambda r: r.nonzero().flatten()
        if "c2" in modules:  # inside the concatenation
            out["cat"] = lambda r: 4 + r.nonzero().flatten()
        return out

    assert _removed_channels_are_zero(model, graph, removed, x, extra) > 0


def test_tiny_net_masks_keep_the_input_and_classifier_outputs():
    model = TinyResidual()
    graph = FilterGraph(model, torch.randn(1, 3, 8, 8))
    masks = graph.masks(_random_removal(graph, 1))
    stem, fc = masks["stem.weight"], masks["fc.weight"]
    kept_out = stem.any(dim=(1, 2, 3))
    assert 0 < int(kept_out.sum()) < 8
    assert stem[kept_out].all()  # every image channel is still read
    kept_in = fc.any(dim=0)
    assert 0 < int(kept_in.sum()) < 24
    assert fc[:, kept_in].all()  # every class keeps its weights on the surviving features
    assert "fc.bias" not in masks


def test_resnet18_removed_channels_are_exactly_zero_and_counted(resnet):
    x = torch.randn(2, 3, 32, 32)
    graph = FilterGraph(resnet, EXAMPLE)
    assert len(graph.groups) == 12  # stem/layer1 stream, 3 more streams, 8 block-internal
    assert resnet.training is False  # tracing restored the mode
    removed = _random_removal(graph, 0)

    def blocks(group, modules):
        return {
            m.rsplit(".", 1)[0]: (lambda r: r.nonzero().flatten())
            for m in modules
            if m.endswith(".conv2")
        }

    assert _removed_channels_are_zero(resnet, graph, removed, x, blocks) > 20

    # counting with scheme "filter" drops the producer's columns and the consumers' rows
    xbar = Crossbar(32, 32)
    masks = graph.masks(removed)
    counts = graph.layer_counts(removed, xbar)
    layers = {lay.name: lay for lay in extract_layers(resnet)}
    inner = next(g for g in graph.groups if g.producers == ("layer2.0.conv1",))
    k = int(removed[graph.groups.index(inner)].sum())
    assert k > 0
    prod = layers["layer2.0.conv1"]
    prod_mask = weight_to_matrix(masks["layer2.0.conv1.weight"], 1)
    stream = next(g for g in graph.groups if "layer2.0.conv1" in g.consumers)
    kept_in = 64 - int(removed[graph.groups.index(stream)].sum())
    assert kept_in < 64
    expected = math.ceil(kept_in * 9 / 32) * math.ceil((128 - k) / 32)
    assert count(prod_mask, xbar, "filter") == expected < count(prod_mask, xbar, "dense")
    assert prod.rows == 64 * 9
    cons_mask = weight_to_matrix(masks["layer2.0.conv2.weight"], 1)
    assert int(cons_mask.any(2).sum()) == (128 - k) * 9
    for name, lay in layers.items():
        mask = masks.get(f"{name}.weight", torch.ones(lay.weight_shape, dtype=torch.bool))
        assert counts[name] == count(weight_to_matrix(mask, lay.groups), xbar, "filter")
    assert sum(counts.values()) < sum(
        dense_count(lay.rows, lay.cols, lay.groups, xbar) for lay in layers.values()
    )


def test_importance_sums_every_coupled_slice():
    model = TinyResidual()
    graph = FilterGraph(model, torch.randn(1, 3, 8, 8))
    group = next(g for g in graph.groups if g.producers == ("c1",))
    imp = graph.importance()[graph.groups.index(group)]
    p = dict(model.named_parameters())
    expected = (
        p["c1.weight"].pow(2).sum((1, 2, 3))
        + p["c1.bias"].pow(2)
        + p["d.weight"][:, :4].pow(2).sum((0, 2, 3))
    )
    assert torch.allclose(imp, expected.double().detach())
    # weights given explicitly override the model's
    doubled = {"c1.weight": 2 * p["c1.weight"].detach()}
    imp2 = graph.importance(doubled)[graph.groups.index(group)]
    assert torch.allclose(imp2 - imp, 3 * p["c1.weight"].detach().pow(2).sum((1, 2, 3)).double())
