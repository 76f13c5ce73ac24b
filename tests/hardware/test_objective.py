"""Objective weights: what one occupied crossbar of each layer costs (crossbars, energy, EDP)."""

import pytest

from pimprune.errors import UnknownNameError
from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig
from pimprune.hardware.cost import crossbar_energy_pj, layer_mvms
from pimprune.hardware.objective import OBJECTIVES, model_objective_weights, objective_weights
from pimprune.mapping.matrices import extract_layers

ISAAC = HardwareConfig()


def test_objective_weights_by_hand(small_net):
    model = small_net()
    xbar = Crossbar(16, 8)
    layers = extract_layers(model)
    mvms = layer_mvms(model, (3, 8, 8))
    assert objective_weights(layers, xbar, ISAAC, "crossbars", mvms) == {"conv1": 1.0, "conv2": 1.0, "fc": 1.0}
    w = objective_weights(layers, xbar, ISAAC, "energy", mvms)
    # conv1: 27 x 8 matrix on 16x8: a full crossbar holds 16 rows, 8 columns; 64 MVMs
    e = crossbar_energy_pj(ISAAC, [16], [8])
    assert w["conv1"] == pytest.approx(64 * sum(float(v[0]) for v in e.values()))
    # fc: 16 x 10 -> 16 rows, 8 columns, one MVM
    assert w["fc"] == pytest.approx(sum(float(v[0]) for v in e.values()))
    # subrow: the input index counts too
    ws = objective_weights(layers, xbar, ISAAC, "energy", mvms, scheme="subrow")
    assert ws["conv1"] > w["conv1"]
    assert model_objective_weights(model, xbar, ISAAC, "energy", (3, 8, 8)) == pytest.approx(w)


def test_energy_weight_follows_how_often_a_layer_runs(small_net):
    model = small_net()
    w = model_objective_weights(model, "16x8", ISAAC, "energy", (3, 16, 16))
    w_small = model_objective_weights(model, "16x8", ISAAC, "energy", (3, 8, 8))
    assert w["conv1"] == pytest.approx(4 * w_small["conv1"])  # 4x the output positions
    assert w["conv1"] > w["conv2"] > w["fc"]


def test_edp_weights_are_energy_share_plus_latency_share(small_net):
    model = small_net()
    layers = extract_layers(model)
    mvms = layer_mvms(model, (3, 8, 8))
    w = objective_weights(layers, "16x8", ISAAC, "edp", mvms)
    assert set(w) == {"conv1", "conv2", "fc"}
    assert all(v > 0 for v in w.values())
    assert w["conv1"] > w["fc"]
    assert set(OBJECTIVES.names()) == {"crossbars", "energy", "edp"}
    with pytest.raises(UnknownNameError, match="unknown objective"):
        objective_weights(layers, "16x8", ISAAC, "area", mvms)
