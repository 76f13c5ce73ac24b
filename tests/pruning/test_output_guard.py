"""The global allocation's output guard (``--guard outputs``): no output column is left without weights."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import extract_layers
from pimprune.numeric import cdiv
from pimprune.pruning.patterns import get_pattern
from pimprune.pruning.projector import Projector
from pimprune.pruning.ranking import output_guard
from pimprune.pruning.target import PruneTarget
from pimprune.pruning.units import Units


def _units(gains, chain, position) -> Units:
    t = torch.tensor
    return Units(t(gains, dtype=torch.float64), torch.ones(len(gains), dtype=torch.int64), t(chain), t(position),
                 torch.zeros(0, dtype=torch.int64), lambda keep: keep)


def test_output_guard_keeps_the_best_first_unit_of_every_group():
    # chains 0,1 write to group 0, chain 2 to group 1; unit 1 is second in its chain and never guarded
    u = _units([1.0, 9.0, 3.0, 2.0], [0, 0, 1, 2], [0, 1, 0, 0])
    assert sorted(output_guard(u, torch.tensor([0, 0, 0, 1])).tolist()) == [2, 3]


def _net(widths: list[int], groups: list[int]) -> nn.Sequential:
    layers, c_in = [], 1
    for w, g in zip(widths, groups, strict=True):
        layers += [nn.Conv2d(c_in, w, 3, padding=1, groups=g if c_in % g == 0 and w % g == 0 else 1), nn.ReLU()]
        c_in = w
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * 16, 10))


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(3, 70), min_size=2, max_size=4),
    groups=st.lists(st.sampled_from([1, 1, 2, 3]), min_size=4, max_size=4),
    rows=st.sampled_from([8, 9, 16, 32]),
    cols=st.sampled_from([4, 7, 16, 32]),
    target=st.floats(1.0, 40.0),
    seed=st.integers(0, 2**16),
)
def test_crossbar_grain_with_the_output_guard_silences_no_output(widths, groups, rows, cols, target, seed):
    torch.manual_seed(seed)
    model = _net(widths, groups[: len(widths)]).eval()
    example = torch.zeros(1, 1, 4, 4)
    xbar = Crossbar(rows, cols)
    try:
        proj = Projector(model, PruneTarget("crossbar", xbar, target, "global", guard="outputs"), example)
    except ConfigError:  # the kept-dense layers alone exceed the target
        assume(False)
    masks = proj({n: p.detach() for n, p in model.named_parameters() if n in proj.params})
    # one tile per column block of every prunable layer is what the guard needs
    need = sum(lay.groups * cdiv(lay.module.weight.shape[0] // lay.groups, cols)
               for lay in extract_layers(model) if f"{lay.name}.weight" in proj.params)
    if proj.plan.prunable_budget >= need:
        assert proj.silenced_outputs() == {}
    used = sum(c for n, c in proj.layer_crossbars(masks).items() if n in proj.plan.prunable_dense)
    assert used <= max(proj.plan.prunable_budget, need)


@pytest.mark.parametrize("pattern", ["subrow", "row"])
def test_output_guard_is_the_layer_guard_where_chains_are_output_groups(narrow, nweights, pattern, make_projector):
    a = make_projector(narrow, pattern, "32x32", 10.0, "global")(nweights)
    b = make_projector(narrow, pattern, "32x32", 10.0, "global", guard="outputs")(nweights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_output_guard_revives_the_column_blocks_crossbar_grain_silences(narrow, nweights, make_projector):
    bare = make_projector(narrow, "crossbar", "32x32", 12.0, "global")
    bare(nweights)
    guarded = make_projector(narrow, "crossbar", "32x32", 12.0, "global", guard="outputs")
    masks = guarded(nweights)
    assert bare.silenced_outputs()  # the layer guard alone leaves whole column blocks empty here
    assert guarded.silenced_outputs() == {}
    used = sum(c for n, c in guarded.layer_crossbars(masks).items() if n in guarded.plan.prunable_dense)
    assert used <= guarded.plan.prunable_budget


@pytest.mark.parametrize(
    ("pattern", "allocation", "match"),
    [
        ("subcolumn", "global", "no output groups"),
        ("unstructured", "global", "no output groups"),
        ("subrow-channel", "global", "no output groups"),
        ("crossbar", "uniform", "global allocation"),
    ],
)
def test_output_guard_refuses_what_it_cannot_keep(pattern, allocation, match):
    with pytest.raises(ConfigError, match=match):
        PruneTarget(pattern, Crossbar(32, 32), 8.0, allocation, guard="outputs")


def test_unknown_guard_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown guard"):
        PruneTarget("subrow", Crossbar(32, 32), 8.0, "global", guard="columns")


def test_crossbar_output_groups_follow_the_tiles():
    pattern = get_pattern("crossbar")
    m = torch.randn(2, 40, 70)  # 2 groups, 2 row blocks x 3 column blocks of 32x32
    units = pattern.units(m, Crossbar(32, 32))
    groups = pattern.output_groups(units, tuple(m.shape), Crossbar(32, 32))
    for u in range(len(units)):
        keep = torch.zeros(len(units), dtype=torch.bool)
        keep[u] = True
        cols = units.mask(keep).any(1)  # (g, N): the outputs tile u writes to
        g, c = divmod(int(groups[u]), 3)
        expect = torch.zeros_like(cols)
        expect[g, c * 32 : (c + 1) * 32] = True
        assert torch.equal(cols, expect)
