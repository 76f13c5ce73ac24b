import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.mapping.counting import count
from pimprune.mapping.matrices import extract_layers, weight_to_matrix
from pimprune.pruning.allocation import proportional_budgets
from pimprune.pruning.patterns import get_pattern
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget

EXAMPLE = torch.zeros(1, 3, 32, 32)


def test_uniform_budgets_are_proportional():
    b = proportional_budgets({"a": 10, "b": 30, "c": 1}, 20)
    assert sum(b.values()) == 20
    assert b["b"] > b["a"] >= b["c"]
    assert proportional_budgets({"a": 3, "b": 4}, 100) == {"a": 3, "b": 4}
    assert proportional_budgets({"a": 3, "b": 4}, 0) == {"a": 0, "b": 0}


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
def test_global_keeps_at_least_the_normalised_energy_of_uniform(
    narrow, narrow_results, nweights, pattern, make_projector
):
    # the pure ranking (no per-layer guard) is the normalised-energy optimum
    uni, m_uni = narrow_results[pattern, "uniform"]
    glo = make_projector(narrow, pattern, "32x32", 8.0, "global", keep_every_layer=False)
    m_glo = glo(nweights)
    assert _normalised_energy(glo, nweights, m_glo) >= _normalised_energy(uni, nweights, m_uni) * (
        1 - 1e-9
    )


@pytest.mark.parametrize("pattern", ["subrow", "row", "crossbar", "subcolumn", "unstructured"])
def test_global_guard_never_empties_a_layer(narrow, narrow_results, nweights, pattern, make_projector):
    guarded, masks = narrow_results[pattern, "global"]
    assert min(guarded.budgets.values()) >= 1
    for lay in guarded.layers:
        assert bool(masks[f"{lay.name}.weight"].any()), lay.name
    if get_pattern(pattern).chain_is_output_group:
        assert guarded.silenced_outputs() == {}
    # without the guard the single-crossbar shortcuts are the first to go
    bare = make_projector(narrow, pattern, "32x32", 8.0, "global", keep_every_layer=False)
    bare(nweights)
    assert sum(guarded.budgets.values()) <= guarded.prunable_budget


def test_budgets_file_is_honoured(narrow, nweights, tmp_path, make_projector):
    f = tmp_path / "budgets.yaml"
    f.write_text(
        "layer1.0.conv1: 3\n"
        "layer2.0.conv1: '4x'\n"
        "layer3.0.conv1: {crossbars: 5}\n"
        "layer4.0.conv1: {compression: 2}\n"
        "layer1.1.conv2: 100000\n"
    )
    proj = make_projector(narrow, "subrow", "32x32", 2.0, "file", budgets_file=str(f))
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
def test_bad_budgets_files(narrow, tmp_path, text, match, make_projector):
    f = tmp_path / "b.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        make_projector(narrow, "subrow", "32x32", 4.0, "file", budgets_file=str(f))


def test_missing_budgets_file(narrow, tmp_path, make_projector):
    with pytest.raises(ConfigError, match="cannot read"):
        make_projector(narrow, "subrow", "32x32", 4.0, "file", budgets_file=str(tmp_path / "nope.yaml"))


def _layer_costs(narrow, factor: float, layer: str) -> dict[str, float]:
    return {lay.name: (factor if lay.name == layer else 1.0) for lay in extract_layers(narrow)}


@pytest.mark.parametrize("pattern", ["subrow", "subcolumn", "row", "crossbar", "unstructured"])
def test_unit_costs_of_one_are_todays_allocation(narrow, nweights, pattern):
    plain = Projector(narrow, PruneTarget(pattern, "32x32", 5.0, allocation="global"), EXAMPLE)
    ones = _layer_costs(narrow, 1.0, "")
    costed = Projector(narrow, PruneTarget(pattern, "32x32", 5.0, allocation="global", unit_costs=ones), EXAMPLE)
    a, b = plain(nweights), costed(nweights)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert plain.budgets == costed.budgets


@pytest.mark.parametrize("pattern", ["subrow", "subcolumn", "row"])
def test_an_expensive_layer_keeps_fewer_crossbars(narrow, nweights, pattern):
    layer = "layer3.0.conv2"
    plain = Projector(narrow, PruneTarget(pattern, "32x32", 4.0, allocation="global"), EXAMPLE)
    plain(nweights)
    costs = _layer_costs(narrow, 10.0, layer)
    target = PruneTarget(pattern, "32x32", 4.0, allocation="global", unit_costs=costs)
    costed = Projector(narrow, target, EXAMPLE)
    masks = costed(nweights)
    assert costed.budgets[layer] < plain.budgets[layer]
    assert sum(costed.budgets.values()) > sum(plain.budgets.values())  # the others gain crossbars
    # the budget is counted in costs: sum(dense cost) / target, kept-dense layers at their dense cost
    dense_cost = sum(costs[lay.name] * costed.plan.dense[lay.name] for lay in extract_layers(narrow))
    assert costed.cost_total == pytest.approx(dense_cost)
    used = costed.plan.cost(costed.layer_crossbars(masks))
    assert used <= dense_cost / 4.0 + 1e-9


def test_unit_costs_weight_the_filter_budget(narrow, nweights):
    costs = _layer_costs(narrow, 5.0, "layer4.1.conv2")
    proj = Projector(narrow, PruneTarget("filter", "32x32", 2.0, allocation="global", unit_costs=costs), EXAMPLE)
    masks = proj(nweights)
    assert proj.plan.cost(proj.layer_crossbars(masks)) <= proj.network_budget
