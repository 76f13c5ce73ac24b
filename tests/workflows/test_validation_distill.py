"""Pruning with a validation split and knowledge distillation, end to end through the command line."""

import json

from pimprune.cli import main

TINY = [
    "--model", "resnet18", "--width", "0.125", "--stem-stride", "2",
    "--dataset", "synthetic", "--limit-test", "64", "--batch-size", "32", "--device", "cpu",
]  # fmt: skip


def test_prune_with_validation_and_distillation_reports_both(tmp_path, capsys):
    out = tmp_path / "p"
    argv = ["prune", *TINY, "--limit-train", "64", "--validation", "64", "--pattern", "subrow",
            "--crossbar", "16x16", "--target-compression", "2", "--method", "oneshot", "--admm-epochs", "0",
            "--retrain-epochs", "1", "--distill", "0.5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["validation_samples"] == 64
    assert 0 <= result["accuracy_val"] <= 1 and 0 <= result["accuracy_dense_val"] <= 1
    assert result["distill"] == {"weight": 0.5, "temperature": 4.0}
    assert "val_accuracy" in result["history"][-1]
    assert result["resolved"]["train_samples"] == 64


def test_bad_distillation_weight_is_a_one_line_error(tmp_path, capsys):
    argv = ["prune", *TINY, "--distill", "1.5", "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "distillation weight" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
