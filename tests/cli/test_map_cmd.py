"""``pimprune map``: counts per packing, the placement file and verification through the crossbars."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pimprune.mapping.network_sim as network_sim
from pimprune.cli import main
from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.network import LayerShape, NetworkPlacement, Piece, check_placement
from pimprune.pruning.network_budget import network_subrow_masks
from pimprune.training.checkpoint import load_model, save_model
from pimprune.training.models import ModelSpec

SHIPPED = "src/pimprune/assets/demo_dense/model.pt"


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> Path:
    """The shipped model pruned to 20 shared 32x32 crossbars with packing-aware sub-rows."""
    model, meta = load_model(SHIPPED)
    layers = extract_layers(model)
    weights = {f"{lay.name}.weight": lay.module.weight.detach() for lay in layers}
    masks = network_subrow_masks(weights, None, layers, "32x32", 20)
    with torch.no_grad():
        for lay in layers:
            if f"{lay.name}.weight" in masks:
                lay.module.weight.mul_(masks[f"{lay.name}.weight"])
    folder = tmp_path_factory.mktemp("pruned")
    save_model(model, ModelSpec.from_dict(meta["spec"]), folder, {"pattern": "subrow", "scheme": "subrow"})
    return folder / "model.pt"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_text_prints_both_counts(pruned, capsys):
    code, out, _ = _run(["map", str(pruned), "--crossbar", "32x32", "--packing", "network"], capsys)
    assert code == 0
    assert "layer packing:" in out and "network packing: 20 crossbars" in out


def test_json_gives_total_crossbars_per_packing(pruned, capsys):
    code, out, _ = _run(["map", str(pruned), "--crossbar", "32x32,64x64", "--packing", "network", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    first = data["results"][0]
    assert first["packing"] == "network"
    layer, network = first["packings"]["layer"], first["packings"]["network"]
    assert network["total_crossbars"] == 20 < layer["total_crossbars"] == first["crossbars_pruned"]
    assert network["total_crossbars"] >= network["cell_bound"]
    assert network["layers"]["fc"]["activations"] >= 1
    assert len(data["results"]) == 2


def test_default_packing_is_per_layer(pruned, capsys):
    code, out, _ = _run(["map", str(pruned), "--crossbar", "32x32", "--json"], capsys)
    assert code == 0
    packings = json.loads(out)["results"][0]["packings"]
    assert set(packings) == {"layer"}


def _from_json(data: dict, model) -> NetworkPlacement:
    """Rebuild a placement from the file (rows per group, cols = output channels)."""
    layers = {lay.name: lay for lay in extract_layers(model)}
    shapes = {n: LayerShape(n, lay.groups, lay.rows, lay.cols) for n, lay in layers.items()}
    crossbars = []
    for xb in data["crossbars"]:
        pieces = []
        for b in xb["blocks"]:
            n = shapes[b["layer"]].cols
            cols = np.asarray(b["cols"], dtype=np.int64)
            group = int(cols[0] // n)
            assert (cols // n == group).all()
            pieces.append(Piece(b["layer"], group, np.asarray(b["rows"], dtype=np.int64), cols - group * n,
                                b["row_offset"], b["col_offset"], 0))
        crossbars.append(pieces)
    return NetworkPlacement(Crossbar.parse(data["crossbar"]), data["packing"], data["scheme"], shapes, crossbars)


@pytest.mark.parametrize("packing", ["network", "layer"])
def test_placement_file_is_valid_and_verified(pruned, packing, tmp_path, capsys):
    path = tmp_path / "placement.json"
    argv = ["map", str(pruned), "--crossbar", "32x32", "--packing", packing, "--verify", "--placement", str(path)]
    code, _, err = _run(argv, capsys)
    assert code == 0 and "verified 21 layers" in err
    data = json.loads(path.read_text())
    assert data["crossbar"] == "32x32" and data["packing"] == packing
    assert data["total_crossbars"] == len(data["crossbars"])
    model, _ = load_model(pruned)
    placement = _from_json(data, model)
    check_placement(placement, {lay.name: lay.matrix() for lay in extract_layers(model)})
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary file left


def test_verify_mismatch_is_a_one_line_error(pruned, monkeypatch, capsys):
    real = network_sim.crossbar_cells
    monkeypatch.setattr(network_sim, "crossbar_cells", lambda *a, **k: real(*a, **k) * 1.5)
    code, _, err = _run(["map", str(pruned), "--crossbar", "32x32", "--packing", "network", "--verify"], capsys)
    assert code == 2
    assert err.startswith("pimprune map: error: verification failed:") and err.count("\n") == 1


def test_placement_needs_one_geometry(pruned, tmp_path, capsys):
    argv = ["map", str(pruned), "--crossbar", "32x32,64x64", "--placement", str(tmp_path / "p.json")]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "exactly one --crossbar" in err
    assert not (tmp_path / "p.json").exists()


def test_unknown_packing_is_refused(pruned, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["map", str(pruned), "--packing", "shared"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_dense_model_by_name_packs_dense_tiles(capsys):
    argv = ["map", "resnet18", "--width", "0.25", "--num-classes", "10", "--in-channels", "1",
            "--input-size", "28", "--crossbar", "32x32", "--packing", "network", "--json"]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    packings = json.loads(out)["results"][0]["packings"]
    assert packings["network"]["total_crossbars"] <= packings["layer"]["total_crossbars"]


def test_physical_compression_counts_slices_and_sign_arrays(pruned, capsys):
    code, out, _ = _run(["map", str(pruned), "--crossbar", "32x32", "--json", "--weight-bits", "8"], capsys)
    assert code == 0
    entry = json.loads(out)["results"][0]
    physical = entry["physical_arrays"]
    # isaac: 16-bit dense weights on 8 slices of 2-bit cells, x2 for the differential pair; 8-bit: 4 slices
    assert (physical["arrays_per_crossbar_dense"], physical["arrays_per_crossbar"]) == (16, 8)
    assert physical["arrays_dense"] == 16 * entry["total_crossbars"]
    assert physical["arrays"] == 8 * entry["crossbars_pruned"]
    assert entry["physical_compression"] == pytest.approx(2 * entry["compression"], rel=1e-3)
    code, out, _ = _run(["map", str(pruned), "--crossbar", "32x32", "--json"], capsys)
    same_bits = json.loads(out)["results"][0]
    assert same_bits["physical_compression"] == pytest.approx(same_bits["compression"], rel=1e-3)
    code, out, _ = _run(["map", str(pruned), "--crossbar", "32x32", "--numerics", "neurosim", "--weight-bits", "4"],
                        capsys)  # fmt: skip
    assert code == 0 and "physical compression" in out and "1-bit cells" in out


def test_dense_model_physical_compression_is_the_bit_ratio(capsys):
    code, out, _ = _run(["map", SHIPPED, "--crossbar", "32x32", "--json", "--weight-bits", "4"], capsys)
    assert code == 0
    assert json.loads(out)["results"][0]["physical_compression"] == 4.0


def test_bad_weight_bits_is_a_one_line_error(capsys):
    code, _, err = _run(["map", SHIPPED, "--weight-bits", "1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "weight_bits must be an integer in 2..24" in err
