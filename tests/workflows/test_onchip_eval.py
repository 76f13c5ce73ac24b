"""``evaluate --on-chip``: the mapping a saved model is evaluated under, and its accuracy on crossbars."""

import json

import pytest

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.training.checkpoint import load_model, save_model
from pimprune.training.models import ModelSpec
from pimprune.workflows.onchip_eval import OnChipEval, format_onchip, model_mapping, run_onchip_evaluate
from pimprune.workflows.pipeline import RunConfig

SHIPPED = "src/pimprune/assets/demo_dense/model.pt"
PRUNED = "results/headline/subrow-1pt/model.pt"
RUN = RunConfig(dataset="fashion-mnist-subset", limit_test=200, batch_size=100, device="cpu", augment=False)


def test_mapping_comes_from_the_result_beside_the_model():
    _, meta = load_model(PRUNED)
    mapping = model_mapping(PRUNED, meta)
    saved = json.loads(open(PRUNED.replace("model.pt", "result.json")).read())
    assert (mapping.crossbar, mapping.scheme, mapping.pattern, mapping.source) == (
        Crossbar(32, 32), "subrow", saved["pattern"], "result.json")
    other = model_mapping(PRUNED, meta, "64x64")
    assert (other.crossbar, other.scheme, other.source) == (Crossbar(64, 64), "subrow", "--crossbar")


def test_mapping_from_model_json_or_dense(tmp_path):
    model, meta = load_model(SHIPPED)
    assert model_mapping(SHIPPED, meta).scheme == "dense"
    assert model_mapping(SHIPPED, meta).crossbar == Crossbar(128, 128)
    assert model_mapping(SHIPPED, meta, "32x32").source == "--crossbar"
    save_model(model, ModelSpec.from_dict(meta["spec"]), tmp_path, {"crossbar": "16x8", "scheme": "crossbar"})
    _, saved = load_model(tmp_path / "model.pt")
    mapping = model_mapping(tmp_path / "model.pt", saved)
    assert (mapping.crossbar, mapping.scheme, mapping.source) == (Crossbar(16, 8), "crossbar", "model.json")
    (tmp_path / "result.json").write_text(json.dumps({"crossbar": "8x8", "scheme": "diagonal"}))
    with pytest.raises(ConfigError, match="scheme 'diagonal'"):
        model_mapping(tmp_path, saved)


def test_ideal_numerics_give_the_fp32_accuracy():
    res = run_onchip_evaluate(PRUNED, RUN, OnChipEval(numerics="ideal", repeats=3))
    assert res["accuracy_mean"] == res["accuracy_fp32"] and res["accuracy_std"] == 0.0
    assert res["device_samples"] == 1 and res["repeats"] == 3  # deterministic numerics: one sample
    assert (res["crossbar"], res["scheme"], res["mapping_from"]) == ("32x32", "subrow", "result.json")
    assert res["crossbars"] == json.loads(open("results/headline/subrow-1pt/result.json").read())["crossbars_pruned"]
    assert res["samples"] == 200 and res["path"] == "collapsed"


def test_device_samples_of_a_varied_chip():
    settings = OnChipEval(numerics="isaac", overrides=(("numerics.variation_sigma", 0.3),), crossbar="32x32",
                          repeats=3, seed=5, calibration_images=64)
    res = run_onchip_evaluate(SHIPPED, RUN, settings)
    assert res["seeds"] == [5, 6, 7] and len(res["accuracies"]) == 3 and res["accuracy_std"] > 0
    assert res["numerics"]["variation_sigma"] == 0.3 and res["physical_arrays"] == res["crossbars"] * 16
    assert res["accuracy_mean"] < res["accuracy_fp32"]
    assert "+- " in format_onchip(res) and "3 device samples" in format_onchip(res)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="--repeats"):
        OnChipEval(repeats=0)
    with pytest.raises(ConfigError, match="unknown on-chip path"):
        OnChipEval(path="fast")
    with pytest.raises(ConfigError, match="unknown numerics field"):
        OnChipEval(overrides=(("numerics.sigma", 1),)).resolve_numerics()
