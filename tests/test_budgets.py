import math
import time

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from pimprune.errors import ConfigError, UnknownNameError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count, dense_count, packing_bound
from pimprune.mapping.matrices import extract_layers, weight_to_matrix
from pimprune.pruning.budgets import Projector, PruneTarget, proportional_budgets
from pimprune.pruning.dependency import FilterGraph
from pimprune.pruning.patterns import get_pattern

ALL = ["subrow", "subcolumn", "row", "filter", "crossbar", "unstructured"]
EXAMPLE = torch.zeros(1, 3, 32, 32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small tensor ops: one intra-op thread avoids contention on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-zero BN biases and running stats, so a forgotten BN bias would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def narrow_resnet18(width: float = 0.25, num_classes: int = 10) -> nn.Module:
    """torchvision's resnet18 with every width scaled (same module names), torchvision code."""
    model = torchvision.models.resnet18(num_classes=num_classes)
    w = [int(c * width) for c in (64, 128, 256, 512)]
    model.inplanes = w[0]
    model.conv1 = nn.Conv2d(3, w[0], 7, 2, 3, bias=False)
    model.bn1 = nn.BatchNorm2d(w[0])
    for i, c in enumerate(w):
        setattr(
            model, f"layer{i + 1}", model._make_layer(BasicBlock, c, 2, stride=1 if i == 0 else 2)
        )
    model.fc = nn.Linear(w[-1], num_classes)
    return model


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    """Full-width resnet18, 10 classes (32x32 inputs)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    _randomise_norms(model)
    return model.eval()


@pytest.fixture(scope="module")
def weights(resnet) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in resnet.named_parameters()}


@pytest.fixture(scope="module")
def narrow() -> nn.Module:
    """resnet18 at width 0.25 (16-32-64-128 channels): on 32x32 it tiles like full on 128x128."""
    torch.manual_seed(1)
    model = narrow_resnet18()
    _randomise_norms(model)
    return model.eval()


@pytest.fixture(scope="module")
def weights_narrow(narrow) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in narrow.named_parameters()}


@pytest.fixture(scope="module")
def nweights(narrow) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in narrow.named_parameters()}


def _zeroed(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masked copy of the state dict."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, mask in masks.items():
        state[name] = state[name] * mask
    return state


# ---------------------------------------------------------------- dependency


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


def test_tiny_net_groups_follow_adds_and_concats():
    model = TinyResidual().eval()
    _randomise_norms(model)
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
def test_tiny_net_removed_channels_are_exactly_zero(seed):
    model = TinyResidual().eval()
    _randomise_norms(model, seed)
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


# ---------------------------------------------------------------- projector: targets


def _independent_total(proj: Projector, masks: dict[str, torch.Tensor], pattern: str) -> int:
    total = 0
    xbar = proj.crossbar
    for lay in proj.all_layers:
        mask = masks.get(f"{lay.name}.weight")
        if lay.name in proj.kept_dense or mask is None:
            total += dense_count(lay.rows, lay.cols, lay.groups, xbar)
            continue
        m = weight_to_matrix(mask, lay.groups)
        total += packing_bound(m, xbar) if pattern == "unstructured" else count(m, xbar, pattern)
    return total


def _projector(model, pattern, xbar, target, allocation="uniform", **kw) -> Projector:
    return Projector(
        model, PruneTarget(pattern, Crossbar.parse(xbar), target, allocation, **kw), EXAMPLE
    )


@pytest.mark.parametrize("xbar, target", [("32x32", 8.0), ("128x128", 4.0)])
@pytest.mark.parametrize("pattern", ALL)
def test_target_met_and_kept_dense_untouched(resnet, weights, pattern, xbar, target):
    proj = _projector(resnet, pattern, xbar, target)
    masks = proj(weights)
    assert set(masks) == set(proj.params)
    for name, m in masks.items():
        assert m.dtype == torch.bool and m.shape == weights[name].shape
    assert proj.kept_dense == ("conv1", "fc")
    assert not any(p.startswith(("conv1.", "fc.")) for p in proj.params)
    assert proj.network_budget == math.floor(proj.dense_total / target)
    total = _independent_total(proj, masks, pattern)
    assert total <= proj.network_budget
    assert total == proj.total_crossbars(masks)
    assert total >= 0.8 * proj.network_budget  # the budget is used, not wasted
    assert all(v > 0 for v in proj.silenced_outputs().values())
    assert not set(proj.silenced_outputs()) & set(proj.kept_dense)


@pytest.fixture(scope="module")
def narrow_results(narrow, nweights) -> dict[tuple[str, str], tuple[Projector, dict]]:
    """(pattern, allocation) -> (projector, masks) on the narrow resnet18, 32x32, 8x."""
    out = {}
    for pattern in ALL:
        for allocation in ("uniform", "global"):
            proj = _projector(narrow, pattern, "32x32", 8.0, allocation)
            out[pattern, allocation] = proj, proj(nweights)
    return out


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("pattern", ALL)
def test_narrow_resnet_meets_the_target(narrow_results, pattern, allocation):
    proj, masks = narrow_results[pattern, allocation]
    total = _independent_total(proj, masks, pattern)
    assert total <= proj.network_budget
    assert total >= 0.8 * proj.network_budget
    assert not set(proj.silenced_outputs()) & set(proj.kept_dense)
    if pattern != "filter":
        counted = {
            lay.name: get_pattern(pattern).cost(
                weight_to_matrix(masks[f"{lay.name}.weight"], 1), proj.crossbar
            )
            for lay in proj.layers
        }
        assert all(counted[n] <= proj.budgets[n] for n in counted)
        if allocation == "global":
            assert counted == proj.budgets
            assert sum(counted.values()) <= proj.prunable_budget


def _normalised_energy(proj: Projector, weights, masks) -> float:
    total = 0.0
    for lay in proj.layers:
        w = weights[f"{lay.name}.weight"].double()
        e = float((w * w).sum())
        total += (
            float((w * w * masks[f"{lay.name}.weight"]).sum()) * proj.prunable_dense[lay.name] / e
        )
    return total


@pytest.mark.parametrize("pattern", ["subrow", "subcolumn", "crossbar", "unstructured"])
def test_global_keeps_at_least_the_normalised_energy_of_uniform(narrow, narrow_results, nweights, pattern):
    # the pure ranking (no per-layer guard) is the normalised-energy optimum
    uni, m_uni = narrow_results[pattern, "uniform"]
    glo = _projector(narrow, pattern, "32x32", 8.0, "global", keep_every_layer=False)
    m_glo = glo(nweights)
    assert _normalised_energy(glo, nweights, m_glo) >= _normalised_energy(uni, nweights, m_uni) * (
        1 - 1e-9
    )


@pytest.mark.parametrize("pattern", ["subrow", "row", "crossbar", "subcolumn", "unstructured"])
def test_global_guard_never_empties_a_layer(narrow, narrow_results, nweights, pattern):
    guarded, masks = narrow_results[pattern, "global"]
    assert min(guarded.budgets.values()) >= 1
    for lay in guarded.layers:
        assert bool(masks[f"{lay.name}.weight"].any()), lay.name
    if get_pattern(pattern).chain_is_output_group:
        assert guarded.silenced_outputs() == {}
    # without the guard the single-crossbar shortcuts are the first to go
    bare = _projector(narrow, pattern, "32x32", 8.0, "global", keep_every_layer=False)
    bare(nweights)
    assert sum(guarded.budgets.values()) <= guarded.prunable_budget


@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_filter_removes_whole_channels_with_their_bn_and_consumer_rows(narrow_results, allocation):
    proj, masks = narrow_results["filter", allocation]
    w = masks["layer3.0.conv1.weight"]
    gone = ~w.any(dim=(1, 2, 3))
    assert gone.any() and not gone.all()
    assert torch.equal(~masks["layer3.0.bn1.weight"], gone)
    assert torch.equal(~masks["layer3.0.bn1.bias"], gone)
    assert torch.equal(~masks["layer3.0.conv2.weight"].any(dim=(0, 2, 3)), gone)
    assert proj.silenced_outputs()["layer3.0.conv1"] == int(gone.sum())


def test_uniform_budgets_are_proportional():
    b = proportional_budgets({"a": 10, "b": 30, "c": 1}, 20)
    assert sum(b.values()) == 20
    assert b["b"] > b["a"] >= b["c"]
    assert proportional_budgets({"a": 3, "b": 4}, 100) == {"a": 3, "b": 4}
    assert proportional_budgets({"a": 3, "b": 4}, 0) == {"a": 0, "b": 0}


def test_silenced_outputs_are_reported(narrow, nweights):
    proj = _projector(narrow, "subrow", "32x32", 40.0)
    masks = proj(nweights)
    silenced = proj.silenced_outputs()
    assert silenced  # budgets below the number of column blocks
    for lay in proj.layers:
        m = weight_to_matrix(masks[f"{lay.name}.weight"], lay.groups)
        assert silenced.get(lay.name, 0) == int((~m.any(1)).sum())


def test_keep_dense_accepts_names_and_leaves_them_untouched(narrow, nweights):
    proj = _projector(
        narrow, "subrow", "32x32", 6.0, keep_dense=("first", "last", "layer1.0.conv1")
    )
    assert proj.kept_dense == ("conv1", "fc", "layer1.0.conv1")
    assert "layer1.0.conv1.weight" not in proj(nweights)


def test_project_model_matches_a_call(narrow, nweights):
    proj = _projector(narrow, "subcolumn", "32x32", 8.0)
    a, b = proj.project_model(narrow), proj(nweights)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- budgets file


def test_budgets_file_is_honoured(narrow, nweights, tmp_path):
    f = tmp_path / "budgets.yaml"
    f.write_text(
        "layer1.0.conv1: 3\n"
        "layer2.0.conv1: '4x'\n"
        "layer3.0.conv1: {crossbars: 5}\n"
        "layer4.0.conv1: {compression: 2}\n"
        "layer1.1.conv2: 100000\n"
    )
    proj = _projector(narrow, "subrow", "32x32", 2.0, "file", budgets_file=str(f))
    d = proj.prunable_dense
    expected = {
        "layer1.0.conv1": 3,
        "layer2.0.conv1": d["layer2.0.conv1"] // 4,
        "layer3.0.conv1": 5,
        "layer4.0.conv1": d["layer4.0.conv1"] // 2,
        "layer1.1.conv2": d["layer1.1.conv2"],  # clipped to the dense count
    }
    assert {k: proj.budgets[k] for k in expected} == expected
    masks = proj(nweights)
    for name, b in expected.items():
        assert count(weight_to_matrix(masks[f"{name}.weight"], 1), proj.crossbar, "subrow") <= b
    assert proj.total_crossbars(masks) <= proj.network_budget


@pytest.mark.parametrize(
    "text, match",
    [
        ("nolayer: 3\n", "not a prunable layer"),
        ("layer1.0.conv1: -1\n", "not a budget"),
        ("layer1.0.conv1: 2.5\n", "not a budget"),
        ("layer1.0.conv1: '0.5x'\n", ">= 1"),
        ("layer1.0.conv1: {bits: 3}\n", "not a budget"),
        ("- 3\n", "must map layer names"),
        ("layer1.0.conv1: [3\n", "not valid YAML"),
        ("fc: 1\n", "kept-dense"),
        ("layer4.1.conv2: 100000\nlayer4.0.conv2: 100000\n", "lower the budgets"),
    ],
)
def test_bad_budgets_files(narrow, tmp_path, text, match):
    f = tmp_path / "b.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        _projector(narrow, "subrow", "32x32", 4.0, "file", budgets_file=str(f))


def test_missing_budgets_file(narrow, tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        _projector(narrow, "subrow", "32x32", 4.0, "file", budgets_file=str(tmp_path / "nope.yaml"))


# ---------------------------------------------------------------- bad targets


@pytest.mark.parametrize("target", [0.5, 0.0, -2.0, float("nan"), float("inf"), "8", True])
def test_bad_target_compression(target):
    with pytest.raises(ConfigError, match="target compression"):
        PruneTarget("subrow", Crossbar(32, 32), target)


def test_bad_target_fields():
    with pytest.raises(UnknownNameError):
        PruneTarget("diagonal", Crossbar(32, 32), 4.0)
    with pytest.raises(ConfigError, match="allocation"):
        PruneTarget("subrow", Crossbar(32, 32), 4.0, "greedy")
    with pytest.raises(ConfigError, match="budgets file"):
        PruneTarget("subrow", Crossbar(32, 32), 4.0, "file")
    with pytest.raises(ConfigError, match="budgets file"):
        PruneTarget("subrow", Crossbar(32, 32), 4.0, "uniform", budgets_file="x.yaml")
    assert PruneTarget("subrow", "64x32", 1).crossbar == Crossbar(64, 32)


def test_unreachable_targets(resnet):
    with pytest.raises(ConfigError, match=r"kept-dense.*highest reachable compression is 116\.500"):
        _projector(resnet, "subrow", "128x128", 400.0)
    with pytest.raises(ConfigError, match="highest reachable compression"):
        _projector(resnet, "filter", "32x32", 200.0)
    with pytest.raises(ConfigError, match="not available for the filter"):
        _projector(resnet, "filter", "32x32", 2.0, "file", budgets_file="x.yaml")
    with pytest.raises(ConfigError, match="keep_dense"):
        _projector(resnet, "subrow", "32x32", 2.0, keep_dense=("stem",))


def test_target_one_keeps_everything(narrow, nweights):
    for pattern in ("subrow", "filter"):
        masks = _projector(narrow, pattern, "32x32", 1.0)(nweights)
        assert all(m.all() for m in masks.values())


# ------------------------------------------------------ speed sanity (no timing assertion)


def test_projection_speed_sanity(narrow, nweights, capsys):
    proj = _projector(narrow, "subrow", "32x32", 8.0)
    t0 = time.perf_counter()
    proj(nweights)
    dt = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n[speed] subrow projection, resnet18 width 0.25, 32x32: {dt:.3f} s")
    assert dt >= 0


# --------------------------------------------------------------------------- scores, retarget, unit costs


@pytest.mark.parametrize("pattern", ALL)
@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_scores_give_the_masks_of_the_scaled_weights(narrow, pattern, allocation):
    """Ranking by scores w*s keeps what projecting the scaled weights w*s kept (bit-identical)."""
    from pimprune.pruning.saliency import Saliency

    w = {n: p.detach().clone() for n, p in narrow.named_parameters()}
    gen = torch.Generator().manual_seed(3)
    factors = {n: torch.rand(p.shape, generator=gen) + 0.1 for n, p in w.items() if p.dim() > 1}
    proj = Projector(narrow, PruneTarget(pattern, "32x32", 4.0, allocation=allocation), EXAMPLE)
    by_scores = proj(w, Saliency.scores(w, factors))
    budgets = dict(proj.budgets)
    by_scaled = proj(Saliency.scaled(w, factors))
    assert by_scores.keys() == by_scaled.keys()
    assert all(torch.equal(by_scores[n], by_scaled[n]) for n in by_scores)
    assert budgets == proj.budgets
    plain = proj(w)
    if pattern != "filter":  # channel sums average the random factors out
        assert any(not torch.equal(plain[n], by_scores[n]) for n in plain)  # the scores do matter


def test_pattern_scores_rank_and_weights_shape():
    pattern = get_pattern("subrow")
    xbar = Crossbar.parse("4x4")
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(1, 16, 8, generator=gen)
    scores = torch.randn(1, 16, 8, generator=gen)
    assert torch.equal(pattern.project(m, xbar, 2, scores), pattern.project(scores, xbar, 2))
    assert torch.equal(pattern.project(m, xbar, 2, None), pattern.project(m, xbar, 2))
    with pytest.raises(ValueError, match="scores"):
        pattern.project(m, xbar, 2, scores[:, :8])


@pytest.mark.parametrize("pattern", ALL)
@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_retarget_equals_a_new_projector(narrow, weights_narrow, pattern, allocation):
    proj = Projector(narrow, PruneTarget(pattern, "32x32", 6.0, allocation=allocation), EXAMPLE)
    for c in (1.5, 3.0, 6.0):
        proj.retarget(c)
        fresh = Projector(narrow, PruneTarget(pattern, "32x32", c, allocation=allocation), EXAMPLE)
        assert proj.network_budget == fresh.network_budget and proj.target == fresh.target
        a, b = proj(weights_narrow), fresh(weights_narrow)
        assert all(torch.equal(a[n], b[n]) for n in a)
        assert proj.budgets == fresh.budgets
        assert proj.total_crossbars(a) <= proj.network_budget


def test_retarget_out_of_reach_keeps_the_old_target(narrow):
    proj = Projector(narrow, PruneTarget("filter", "32x32", 2.0, allocation="global"), EXAMPLE)
    graph = proj._strategy.graph
    with pytest.raises(ConfigError, match="highest reachable"):
        proj.retarget(1000.0)
    assert proj.target.target_compression == 2.0
    proj.retarget(3.0)
    assert proj._strategy.graph is graph  # traced once


def _layer_costs(narrow, factor: float, layer: str) -> dict[str, float]:
    return {lay.name: (factor if lay.name == layer else 1.0) for lay in extract_layers(narrow)}


@pytest.mark.parametrize("pattern", ["subrow", "subcolumn", "row", "crossbar", "unstructured"])
def test_unit_costs_of_one_are_todays_allocation(narrow, weights_narrow, pattern):
    plain = Projector(narrow, PruneTarget(pattern, "32x32", 5.0, allocation="global"), EXAMPLE)
    ones = _layer_costs(narrow, 1.0, "")
    costed = Projector(narrow, PruneTarget(pattern, "32x32", 5.0, allocation="global", unit_costs=ones), EXAMPLE)
    a, b = plain(weights_narrow), costed(weights_narrow)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert plain.budgets == costed.budgets


@pytest.mark.parametrize("pattern", ["subrow", "subcolumn", "row"])
def test_an_expensive_layer_keeps_fewer_crossbars(narrow, weights_narrow, pattern):
    layer = "layer3.0.conv2"
    plain = Projector(narrow, PruneTarget(pattern, "32x32", 4.0, allocation="global"), EXAMPLE)
    plain(weights_narrow)
    costs = _layer_costs(narrow, 10.0, layer)
    target = PruneTarget(pattern, "32x32", 4.0, allocation="global", unit_costs=costs)
    costed = Projector(narrow, target, EXAMPLE)
    masks = costed(weights_narrow)
    assert costed.budgets[layer] < plain.budgets[layer]
    assert sum(costed.budgets.values()) > sum(plain.budgets.values())  # the others gain crossbars
    # the budget is counted in costs: sum(dense cost) / target, kept-dense layers at their dense cost
    dense_cost = sum(costs[lay.name] * costed.plan.dense[lay.name] for lay in extract_layers(narrow))
    assert costed.cost_total == pytest.approx(dense_cost)
    used = costed.plan.cost(costed.layer_crossbars(masks))
    assert used <= dense_cost / 4.0 + 1e-9


def test_unit_costs_weight_the_filter_budget(narrow, weights_narrow):
    costs = _layer_costs(narrow, 5.0, "layer4.1.conv2")
    proj = Projector(narrow, PruneTarget("filter", "32x32", 2.0, allocation="global", unit_costs=costs), EXAMPLE)
    masks = proj(weights_narrow)
    assert proj.plan.cost(proj.layer_crossbars(masks)) <= proj.network_budget


def test_unit_costs_are_checked(narrow):
    with pytest.raises(ConfigError, match="global"):
        PruneTarget("subrow", "32x32", 4.0, allocation="uniform", unit_costs={"conv1": 2.0})
    with pytest.raises(ConfigError, match="> 0"):
        PruneTarget("subrow", "32x32", 4.0, allocation="global", unit_costs={"conv1": 0.0})
    with pytest.raises(ConfigError, match="unmapped"):
        Projector(narrow, PruneTarget("subrow", "32x32", 4.0, allocation="global", unit_costs={"nope": 2.0}), EXAMPLE)
