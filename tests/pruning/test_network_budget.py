"""Packing-aware sub-row budgets: masks whose network packing fits a number of shared crossbars."""

import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import pack_network
from pimprune.mapping.network_sim import verify_network
from pimprune.pruning.network_budget import network_subrow_masks
from pimprune.training.checkpoint import load_model

SHIPPED = "src/pimprune/assets/demo_dense/model.pt"


@pytest.mark.parametrize("target", [16, 64])
def test_packing_aware_budget_fits_and_computes(target):
    model, _ = load_model(SHIPPED)
    layers = extract_layers(model)
    weights = {f"{lay.name}.weight": lay.module.weight.detach() for lay in layers}
    total = 698 // target
    masks = network_subrow_masks(weights, None, layers, "32x32", total)
    assert set(masks) == {f"{lay.name}.weight" for lay in layers[1:-1]}
    with torch.no_grad():
        for lay in layers:
            name = f"{lay.name}.weight"
            if name in masks:
                assert masks[name].shape == lay.module.weight.shape
                lay.module.weight.mul_(masks[name])
    mats = {lay.name: lay.matrix() for lay in layers}
    for lay in layers:  # no layer, no output group is emptied
        assert bool((mats[lay.name] != 0).any(1).all()), lay.name
    placement = pack_network(mats, Crossbar(32, 32), "subrow")
    assert placement.n_crossbars <= total
    verify_network(model, placement, torch.randn(2, 1, 28, 28))


def test_packing_aware_budget_with_scores_and_refusal(tiny_net):
    net = tiny_net(3, groups=1, classes=4)
    layers = extract_layers(net)
    weights = {f"{lay.name}.weight": lay.module.weight.detach() for lay in layers}
    scores = {k: torch.rand_like(v) for k, v in weights.items()}
    xbar = Crossbar(4, 4)
    masks = network_subrow_masks(weights, scores, layers, xbar, 16, keep_dense=("first",))
    mats = {lay.name: lay.matrix() * (lay.matrix(masks[f"{lay.name}.weight"]) if lay.name != "a" else 1)
            for lay in layers}
    assert pack_network(mats, xbar, "subrow").n_crossbars <= 16
    with pytest.raises(ConfigError, match="cannot hold"):
        network_subrow_masks(weights, None, layers, xbar, 1)
    with pytest.raises(ConfigError, match="positive integer"):
        network_subrow_masks(weights, None, layers, xbar, 0)
