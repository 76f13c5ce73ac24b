import math
import time

import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.mapping.counting import count, dense_count, packing_bound
from pimprune.mapping.matrices import weight_to_matrix
from pimprune.pruning.patterns import get_pattern
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget

ALL = ["subrow", "subcolumn", "row", "filter", "crossbar", "unstructured"]
EXAMPLE = torch.zeros(1, 3, 32, 32)


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


@pytest.mark.parametrize("xbar, target", [("32x32", 8.0), ("128x128", 4.0)])
@pytest.mark.parametrize("pattern", ALL)
def test_target_met_and_kept_dense_untouched(resnet, weights, pattern, xbar, target, make_projector):
    proj = make_projector(resnet, pattern, xbar, target)
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


def test_silenced_outputs_are_reported(narrow, nweights, make_projector):
    proj = make_projector(narrow, "subrow", "32x32", 40.0)
    masks = proj(nweights)
    silenced = proj.silenced_outputs()
    assert silenced  # budgets below the number of column blocks
    for lay in proj.layers:
        m = weight_to_matrix(masks[f"{lay.name}.weight"], lay.groups)
        assert silenced.get(lay.name, 0) == int((~m.any(1)).sum())


def test_project_model_matches_a_call(narrow, nweights, make_projector):
    proj = make_projector(narrow, "subcolumn", "32x32", 8.0)
    a, b = proj.project_model(narrow), proj(nweights)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unreachable_targets(resnet, make_projector):
    with pytest.raises(ConfigError, match=r"kept-dense.*highest reachable compression is 116\.500"):
        make_projector(resnet, "subrow", "128x128", 400.0)
    with pytest.raises(ConfigError, match="highest reachable compression"):
        make_projector(resnet, "filter", "32x32", 200.0)
    with pytest.raises(ConfigError, match="not available for the filter"):
        make_projector(resnet, "filter", "32x32", 2.0, "file", budgets_file="x.yaml")
    with pytest.raises(ConfigError, match="keep_dense"):
        make_projector(resnet, "subrow", "32x32", 2.0, keep_dense=("stem",))


def test_target_one_keeps_everything(narrow, nweights, make_projector):
    for pattern in ("subrow", "filter"):
        masks = make_projector(narrow, pattern, "32x32", 1.0)(nweights)
        assert all(m.all() for m in masks.values())


def test_projection_speed_sanity(narrow, nweights, capsys, make_projector):
    proj = make_projector(narrow, "subrow", "32x32", 8.0)
    t0 = time.perf_counter()
    proj(nweights)
    dt = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n[speed] subrow projection, resnet18 width 0.25, 32x32: {dt:.3f} s")
    assert dt >= 0


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


@pytest.mark.parametrize("pattern", ALL)
@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_retarget_equals_a_new_projector(narrow, nweights, pattern, allocation):
    proj = Projector(narrow, PruneTarget(pattern, "32x32", 6.0, allocation=allocation), EXAMPLE)
    for c in (1.5, 3.0, 6.0):
        proj.retarget(c)
        fresh = Projector(narrow, PruneTarget(pattern, "32x32", c, allocation=allocation), EXAMPLE)
        assert proj.network_budget == fresh.network_budget and proj.target == fresh.target
        a, b = proj(nweights), fresh(nweights)
        assert all(torch.equal(a[n], b[n]) for n in a)
        assert proj.budgets == fresh.budgets
        assert proj.total_crossbars(a) <= proj.network_budget
