import json

import torch

from pimprune.training.checkpoint import load_model
from pimprune.workflows.demo import DemoConfig, dense_checkpoint, run_demo


def test_shipped_dense_checkpoint_loads_safely():
    path = dense_checkpoint()
    state = torch.load(path, weights_only=True)
    model, meta = load_model(path)
    assert meta["spec"]["width"] == 0.25 and meta["epochs"] >= 10
    assert set(state) == set(model.state_dict())


def test_demo_runs_small_and_writes_report(tmp_path, capsys):
    cfg = DemoConfig(out=str(tmp_path / "rep"), patterns=("subrow", "filter"), prune_epochs=0, retrain_epochs=0,
                     limit_train=256, limit_test=300, target_compression=4.0)
    summary = run_demo(cfg)
    out = capsys.readouterr().out
    assert "data: " in out and "Fashion-MNIST" in out
    rows = {r["pattern"]: r for r in summary["table"]}
    assert set(rows) == {"dense", "subrow", "filter"}
    assert rows["subrow"]["compression"] >= 3.9
    assert rows["subrow"]["crossbars"] < rows["dense"]["crossbars"]
    assert rows["subrow"]["energy_nj"] < rows["dense"]["energy_nj"]
    # both mappings: network packing never needs more crossbars than per-layer mapping
    assert rows["subrow"]["crossbars_network"] <= rows["subrow"]["crossbars"]
    assert rows["dense"]["crossbars_network"] <= rows["dense"]["crossbars"]
    rep = tmp_path / "rep"
    for name in ("report.md", "demo.json", "crossbars_per_layer.png", "matrix_subrow.png"):
        assert (rep / name).exists(), name
    assert json.loads((rep / "demo.json").read_text())["table"][0]["pattern"] == "dense"
    assert "| subrow |" in (rep / "report.md").read_text()


def test_demo_report_states_the_training_images_it_used(tmp_path, capsys):
    # the subset ships 6000 training images: a larger limit must not be reported as used
    cfg = DemoConfig(out=str(tmp_path / "rep"), patterns=("subrow",), prune_epochs=0, retrain_epochs=0,
                     limit_train=50000, limit_test=200, target_compression=2.0,
                     )
    summary = run_demo(cfg)
    used = summary["train_images"]
    assert used is not None and used <= 50000
    assert f"on {used} training images" in (tmp_path / "rep" / "report.md").read_text()
