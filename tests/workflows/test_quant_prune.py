"""``prune --weight-bits/--input-bits/--train-noise``: masks and quantized weights learnt together.

Tiny runs through the real command line: the saved weights are the chip's codes, the result counts
physical arrays at the model's bits, the hardware cost follows the bits, and ``map`` and
``evaluate --on-chip`` read the bits the model was trained for.
"""

import json
from pathlib import Path

import pytest
import torch

from pimprune.cli import main
from pimprune.mapping.matrices import extract_layers
from pimprune.pruning.quantization import fake_quant
from pimprune.training.checkpoint import load_model
from pimprune.workflows.onchip_eval import OnChipEval

TINY = [
    "--model", "resnet18", "--width", "0.125", "--stem-stride", "2",
    "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "64",
    "--batch-size", "32", "--device", "cpu", "--pattern", "subrow", "--crossbar", "16x16",
    "--target-compression", "4", "--dense-epochs", "1", "--prune-epochs", "0", "--retrain-epochs", "2",
]  # fmt: skip
QUANT = ["--weight-bits", "4", "--input-bits", "8", "--train-noise", "0.05"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, extra in (("fp32", []), ("quant", QUANT)):
        folder = tmp_path_factory.mktemp(name) / "run"
        assert main(["prune", *TINY, *extra, "--out", str(folder)]) == 0
        out[name] = folder
    return out


def test_saved_weights_are_4_bit_codes_per_column(runs):
    model, meta = load_model(runs["quant"] / "model.pt")
    assert meta["quantization"] == {"weight_bits": 4, "input_bits": 8, "train_noise": 0.05, "weight_scale": "column"}
    for lay in extract_layers(model):
        w = lay.module.weight.detach()
        assert torch.allclose(fake_quant(w, 4), w, atol=1e-6), lay.name
        assert max(len(torch.unique(col)) for col in w.flatten(1)) <= 15, lay.name


def test_physical_arrays_and_cost_follow_the_bits(runs):
    fp32 = json.loads((runs["fp32"] / "result.json").read_text())
    quant = json.loads((runs["quant"] / "result.json").read_text())
    assert fp32["quantization"] is None and quant["quantization"]["weight_bits"] == 4
    ph = quant["physical"]
    assert (ph["arrays_per_crossbar_dense"], ph["arrays_per_crossbar"]) == (16, 4)  # 8 and 2 slices, x2 signs
    assert ph["arrays"] == 4 * quant["crossbars_pruned"] and ph["arrays_dense"] == 16 * quant["crossbars_dense"]
    assert ph["compression"] == pytest.approx(4 * quant["compression"], rel=1e-3)
    assert fp32["physical"]["compression"] == pytest.approx(fp32["compression"], rel=1e-3)
    assert quant["hardware"]["energy_nj"] < fp32["hardware"]["energy_nj"] / 3  # 2 slices of 8, 8 input cycles of 16


def test_map_and_on_chip_read_the_models_bits(runs, capsys):
    path = runs["quant"] / "model.pt"
    capsys.readouterr()
    assert main(["map", str(path), "--crossbar", "16x16", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["results"][0]
    assert entry["physical_arrays"]["weight_bits"] == 4
    assert main(["map", str(path), "--crossbar", "16x16", "--json", "--weight-bits", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["physical_arrays"]["weight_bits"] == 8
    _, meta = load_model(path)
    assert OnChipEval().resolve_numerics(meta).weight_bits == 4
    assert OnChipEval(overrides=(("numerics.weight_bits", 16),)).resolve_numerics(meta).weight_bits == 16


def test_bad_bits_are_one_line_errors(tmp_path, capsys):
    assert main(["prune", *TINY, "--weight-bits", "1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--weight-bits must be an integer in [2, 24]" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
