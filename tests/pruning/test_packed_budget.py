"""Every pattern under a budget of shared crossbars: the network packing of its masks fits the budget."""

import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import pack_network
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget
from pimprune.training.checkpoint import load_model

SHIPPED = "src/pimprune/assets/demo_dense/model.pt"
XBAR = Crossbar(32, 32)


def _packed(model, proj, masks) -> int:
    mats = {}
    for lay in extract_layers(model):
        name = f"{lay.name}.weight"
        kept = masks[name] if name in masks else lay.module.weight.detach() != 0
        mats[lay.name] = lay.matrix(kept.float())
    return pack_network(mats, XBAR, proj.pattern.scheme).n_crossbars


@pytest.mark.parametrize(("pattern", "target"), [("filter", 8), ("crossbar", 16), ("row", 6), ("subcolumn", 16),
                                                 ("subrow-channel", 24)])
def test_network_packing_of_the_masks_fits_the_shared_budget(pattern, target):
    model, _ = load_model(SHIPPED)
    tgt = PruneTarget(pattern, XBAR, target, allocation="global", packing="network")
    proj = Projector(model, tgt, torch.zeros(1, 1, 28, 28))
    masks = proj.project_model(model)
    budget = int(proj.plan.network_budget)
    used = _packed(model, proj, masks)
    assert used <= budget
    # sharing crossbars lets the pattern keep more than its per-layer count at the same budget
    assert proj.total_crossbars(masks) >= used
    # the search took the smallest per-layer compression that fits: a little less does not fit
    t = proj.packed_layer_compression
    if t > 1.01:
        lower = PruneTarget(pattern, XBAR, t / 1.01, allocation="global")
        inner = Projector(model, lower, torch.zeros(1, 1, 28, 28))
        assert _packed(model, inner, inner.project_model(model)) > budget


def test_network_packing_refuses_an_energy_objective():
    with pytest.raises(ConfigError, match="shared crossbars only"):
        PruneTarget("crossbar", XBAR, 8, allocation="global", packing="network", unit_costs={"a": 1.0})
