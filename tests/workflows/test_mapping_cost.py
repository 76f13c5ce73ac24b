"""What a prune run reports about its mapping: the packing it costs, the two packing bounds, the chip's tiles."""

import json
from pathlib import Path

import pytest
import torch

from pimprune.cli import main
from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import LayerShape, NetworkPlacement, Piece, check_placement
from pimprune.mapping.packing import PackingError
from pimprune.training.checkpoint import load_model
from pimprune.workflows.mapping_cost import chip_entry, cost_mapping, read_packing_bound

TINY = [
    "--model", "resnet18", "--width", "0.125", "--stem-stride", "2",
    "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "64",
    "--batch-size", "32", "--device", "cpu",
]  # fmt: skip


def _prune(out: Path, packing: str) -> dict:
    argv = ["prune", *TINY, "--pattern", "subrow", "--crossbar", "16x16", "--target-compression", "4",
            "--method", "oneshot", "--prune-epochs", "0", "--retrain-epochs", "0", "--dense-epochs", "1",
            "--packing", packing, "--out", str(out)]
    assert main(argv) == 0
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def network_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("network") / "run"
    _prune(out, "network")
    return out


def test_network_result_costs_the_placement_it_reports(network_run):
    result = json.loads((network_run / "result.json").read_text())
    hw, network = result["hardware"], result["network_packing"]
    assert hw["packing"] == "network" and hw["crossbars"] == network["crossbars"]
    assert hw["crossbars"] <= result["crossbars_pruned"] == hw["per_layer"]["crossbars"]
    # the area of the crossbars the placement uses, not of the per-layer count's
    if hw["crossbars"] < result["crossbars_pruned"]:
        assert hw["area_mm2"] < hw["per_layer"]["area_mm2"]
    assert hw["latency_layer_by_layer_us"] <= hw["latency_pipelined_us"]
    assert hw["activations_per_inference"] > 0 and set(hw["energy_breakdown"]) >= {"adc", "index", "adder"}
    # the bounds: per layer (network packing can beat it) and network-wide (nothing beats it)
    assert "packing_bound" not in result
    assert result["packing_bound_network"] <= result["packing_bound_per_layer"]
    assert result["packing_bound_network"] <= network["crossbars"]
    chip = result["chip"]
    for key in ("dense", "per_layer", "network"):
        assert chip[key]["tiles"]["shared"] <= chip[key]["tiles"]["tile-per-layer"]
        assert chip[key]["area_built_mm2"]["shared"] >= chip[key]["area_occupied_mm2"] - 1e-6
    assert chip["network"]["crossbars"] == network["crossbars"]


def test_placement_json_is_the_checked_placement(network_run):
    placement = json.loads((network_run / "placement.json").read_text())
    model, _ = load_model(network_run / "model.pt")
    layers = {lay.name: lay for lay in extract_layers(model)}
    assert placement["total_crossbars"] == json.loads((network_run / "result.json").read_text())[
        "network_packing"]["crossbars"]
    shapes = {n: (lay.groups, lay.rows, lay.cols) for n, lay in layers.items()}
    rebuilt = NetworkPlacement(Crossbar.parse(placement["crossbar"]), "network", placement["scheme"],
                               {n: LayerShape(n, *s) for n, s in shapes.items()})
    for xb in placement["crossbars"]:
        pieces = []
        for b in xb["blocks"]:
            n = shapes[b["layer"]][2]
            cols = torch.tensor(b["cols"])
            pieces.append(Piece(b["layer"], int(cols[0]) // n, torch.tensor(b["rows"]).numpy(),
                                (cols % n).numpy(), b["row_offset"], b["col_offset"], 0))
        rebuilt.crossbars.append(pieces)
    check_placement(rebuilt, {n: lay.matrix() for n, lay in layers.items()})


def test_no_placement_json_when_the_check_fails(tmp_path, monkeypatch):
    def refuse(placement, matrices):
        raise PackingError("refused by the test")

    monkeypatch.setattr("pimprune.workflows.mapping_cost.check_placement", refuse)
    out = tmp_path / "run"
    with pytest.raises(PackingError):
        _prune(out, "network")
    assert not (out / "placement.json").exists()


def test_per_layer_result_keeps_its_hardware_entry_and_gets_the_chip(tmp_path):
    result = _prune(tmp_path / "run", "layer")
    assert set(result["hardware"]) == {"preset", "energy_nj", "area_mm2", "latency_us"}
    assert result["network_packing"] is None and not (tmp_path / "run" / "placement.json").exists()
    per_layer = result["chip"]["per_layer"]
    assert per_layer["crossbars"] == result["crossbars_pruned"]
    assert per_layer["area_occupied_mm2"] == pytest.approx(result["hardware"]["area_mm2"], abs=1e-5)
    assert result["chip"]["dense"]["crossbars"] == result["crossbars_dense"]


def test_old_result_files_still_give_their_bound():
    assert read_packing_bound({"packing_bound": 7}) == 7
    assert read_packing_bound({"packing_bound_per_layer": 5, "packing_bound_network": 3}) == 5
    assert read_packing_bound({"packing_bound_per_layer": 5, "packing_bound_network": 3}, "network") == 3
    assert read_packing_bound({"packing_bound": 7}, "network") is None


def test_chip_entry_of_a_small_model_shows_whole_tiles():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
    layers = extract_layers(model)
    hw = HardwareConfig()
    cost = cost_mapping(model, layers, "32x32", "subrow", hw, (3, 8, 8), {"0": 36, "2": 16}, packing="network")
    chip = chip_entry(cost)
    # two one-crossbar layers: two tiles each way per layer, one tile shared or network-packed
    assert chip["per_layer"]["tiles"] == {"tile-per-layer": 2, "shared": 1}
    assert chip["network"]["tiles"]["shared"] == 1
    assert chip["per_layer"]["area_built_mm2"]["tile-per-layer"] > chip["per_layer"]["area_built_mm2"]["shared"]
