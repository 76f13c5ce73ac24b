"""End to end: train -> prune (admm / oneshot / gradual) -> model.pt -> map / evaluate agree.

Every run is tiny (ResNet18 at width 0.125 with a stride-2 stem, 64 synthetic
training images, 1-epoch stages) and goes through the real command line
in-process (``pimprune.cli.main``).
"""

import json
from pathlib import Path

import pytest
import torch

from pimprune.cli import main
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count_network
from pimprune.mapping.matrices import extract_layers
from pimprune.training.models import ModelSpec, create_model

TINY = [
    "--model", "resnet18", "--width", "0.125", "--stem-stride", "2",
    "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "64",
    "--batch-size", "32", "--device", "cpu",
]  # fmt: skip
PRUNE_KEYS = {
    "pattern", "crossbar", "accuracy_dense", "accuracy_pruned", "crossbars_dense",
    "crossbars_pruned", "compression", "layers", "config", "seed", "provenance", "resolved",
}  # fmt: skip
PROVENANCE_KEYS = {"pimprune", "torch", "torchvision", "numpy", "python", "git_revision", "date"}


def _cli(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


def _json_line(out: str) -> dict:
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, out
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    """A dense baseline trained for one epoch by ``pimprune train``."""
    out = tmp_path_factory.mktemp("dense") / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def issue3(tmp_path_factory) -> Path:
    """The quick command of issue 3 (dense training included), shrunk to test size."""
    out = tmp_path_factory.mktemp("issue3") / "run"
    argv = [
        "prune", *TINY, "--pattern", "subrow", "--crossbar", "32x32",
        "--target-compression", "8", "--admm-epochs", "1", "--retrain-epochs", "1",
        "--dense-epochs", "1", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    return out


def _subrow_segments_all_or_nothing(matrix: torch.Tensor, xbar: Crossbar) -> bool:
    """Every row segment inside a C-column block is either all zero or all non-zero."""
    g, m, n = matrix.shape
    for c0 in range(0, n, xbar.cols):
        block = matrix[:, :, c0 : c0 + xbar.cols] != 0
        if not bool((block.all(-1) | ~block.any(-1)).all()):
            return False
    return True


def test_issue3_files_and_pruned_zeros(issue3):
    result = json.loads((issue3 / "result.json").read_text())
    meta = json.loads((issue3 / "model.json").read_text())
    assert PRUNE_KEYS <= set(result)
    assert result["pattern"] == meta["pattern"] == "subrow"
    assert result["crossbar"] == meta["crossbar"] == "32x32"
    assert result["method"] == "oneshot"  # auto: the measured winner for 2 epochs
    assert sorted(issue3.iterdir()) == [issue3 / n for n in ("model.json", "model.pt", "result.json")]

    state = torch.load(issue3 / "model.pt", weights_only=True)
    model = create_model(ModelSpec.from_dict(meta["spec"]))
    model.load_state_dict(state)  # strict: a plain state_dict, masks baked in
    xbar = Crossbar.parse("32x32")
    layers = {lay.name: lay for lay in extract_layers(model)}
    per_layer = {d["name"]: d for d in result["layers"]}
    assert set(per_layer) == set(layers)
    pruned_layers = [name for name in result["budgets"] if name in layers]
    assert pruned_layers
    total_zero = 0
    for name in pruned_layers:
        matrix = layers[name].matrix()
        assert _subrow_segments_all_or_nothing(matrix, xbar), name
        total_zero += int((matrix == 0).sum())
    assert total_zero > 0
    # kept-dense layers (first conv, classifier) have no pruned weight
    for name in ("conv1", "fc"):
        assert name not in result["budgets"]
        assert bool((layers[name].matrix() != 0).all())

    counts = count_network(list(layers.values()), xbar)
    assert counts.total("dense") == result["crossbars_dense"]
    assert counts.total("subrow") == result["crossbars_pruned"]
    assert result["crossbars_pruned"] <= result["crossbars_dense"] // 8
    assert result["compression"] == pytest.approx(result["crossbars_dense"] / result["crossbars_pruned"], abs=1e-4)
    assert sum(d["compacted"]["subrow"] for d in per_layer.values()) == result["crossbars_pruned"]
    assert sum(d["crossbars"] for d in per_layer.values()) == result["crossbars_dense"]


def test_map_and_evaluate_agree_with_result(issue3, capsys):
    result = json.loads((issue3 / "result.json").read_text())
    mapped = _json_line(_cli(["map", str(issue3 / "model.pt"), "--crossbar", "32x32", "--json"], capsys))
    entry = mapped["results"][0]
    assert mapped["pruned"] is True and mapped["scheme"] == "subrow"
    assert entry["total_crossbars"] == result["crossbars_dense"]
    assert entry["crossbars_pruned"] == result["crossbars_pruned"]
    assert entry["compression"] == pytest.approx(result["compression"], abs=1e-4)

    evaluated = _json_line(
        _cli(
            ["evaluate", str(issue3 / "model.pt"), "--dataset", "synthetic",
             "--limit-test", "64", "--batch-size", "32", "--device", "cpu", "--json"],
            capsys,
        )
    )  # fmt: skip
    assert evaluated["samples"] == 64
    assert evaluated["accuracy"] == pytest.approx(result["accuracy_pruned"], abs=1e-12)


@pytest.mark.parametrize(
    ("method", "saliency"),
    [("admm", "auto"), ("oneshot", "auto"), ("gradual", "auto"), ("oneshot", "activation"), ("gradual", "magnitude")],
)
def test_every_method_runs_to_budget(dense, method, saliency, tmp_path):
    out = tmp_path / method
    argv = [
        "prune", *TINY, "--dense", str(dense / "model.pt"), "--method", method,
        "--pattern", "subrow", "--crossbar", "16x16", "--target-compression", "4",
        "--admm-epochs", "1", "--retrain-epochs", "1", "--saliency", saliency, "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == method
    assert result["saliency"] == ("fisher" if saliency == "auto" else saliency)
    assert 0 < result["crossbars_pruned"] <= result["crossbars_dense"] // 4
    assert result["compression"] >= 4
    stages = [row["stage"] for row in result["history"]]
    expected = {"admm": ["admm", "retrain"], "oneshot": ["retrain", "retrain"],
                "gradual": ["gradual", "retrain"]}[method]  # fmt: skip
    assert stages == expected
    dense_acc = json.loads((dense / "result.json").read_text())["accuracy"]
    assert result["accuracy_dense"] == pytest.approx(dense_acc, abs=1e-12)
    assert not (out / "checkpoint.pt").exists()


def test_result_files_record_config_seed_versions(dense, issue3):
    for folder, kind in ((dense, "train"), (issue3, "prune")):
        result = json.loads((folder / "result.json").read_text())
        assert result["kind"] == kind
        assert result["seed"] == 0
        assert PROVENANCE_KEYS <= set(result["provenance"])
        assert result["provenance"]["torch"] == torch.__version__
        run = result["config"]["run"]
        assert run["width"] == 0.125 and run["limit_train"] == 64 and run["seed"] == 0
        assert run["optim"]["lr"] == 0.1
        assert result["resolved"]["world_size"] == 1
        assert result["resolved"]["steps_per_epoch"] == 2
        if (Path(__file__).resolve().parents[2] / ".git").exists():
            assert isinstance(result["provenance"]["git_revision"], str)
    prune = json.loads((issue3 / "result.json").read_text())
    assert prune["config"]["prune"]["target_compression"] == 8
    assert prune["resolved"]["method"] == "oneshot"
    assert prune["config"]["prune"]["saliency"] == "auto"
    assert prune["saliency"] == prune["resolved"]["saliency"] == "fisher"  # auto for subrow


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    states = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / name
        assert main(["train", *TINY, "--epochs", "1", "--seed", seed, "--out", str(out)]) == 0
        states[name] = torch.load(out / "model.pt", weights_only=True)
        result = json.loads((out / "result.json").read_text())
        states[name + "_acc"] = result["accuracy"]
    assert all(torch.equal(states["a"][k], states["b"][k]) for k in states["a"])
    assert states["a_acc"] == states["b_acc"]
    assert not all(torch.equal(states["a"][k], states["c"][k]) for k in states["a"])
