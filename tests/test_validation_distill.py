"""The validation split (held out of training, fixed across runs) and knowledge distillation."""

import copy
import json

import pytest
import torch
from torch import nn

from pimprune.cli import main
from pimprune.errors import ConfigError
from pimprune.training.data import make_loaders, make_validation_loader, validation_split
from pimprune.training.loops import Distillation, Execution

TINY = [
    "--model", "resnet18", "--width", "0.125", "--stem-stride", "2",
    "--dataset", "synthetic", "--limit-test", "64", "--batch-size", "32", "--device", "cpu",
]  # fmt: skip


def test_validation_split_is_fixed_disjoint_and_complete():
    train, val = validation_split(100, 20)
    again_train, again_val = validation_split(100, 20)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert len(val) == 20 and len(train) == 80
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    with pytest.raises(ConfigError, match="validation"):
        validation_split(10, 10)


def _rows(loader) -> set[bytes]:
    return {x.numpy().tobytes() for xb, _ in loader for x in xb}


def test_validation_images_never_reach_training():
    train, _, info = make_loaders("synthetic", 16, augment=False, validation=40)
    val = make_validation_loader("synthetic", 16, 40)
    full, _, full_info = make_loaders("synthetic", 16, augment=False)
    assert info.train_size == full_info.train_size - 40
    seen, held = _rows(train), _rows(val)
    assert len(held) == 40 and seen.isdisjoint(held)
    assert held <= _rows(full) and seen <= _rows(full)  # the training loader drops its last partial batch


def test_validation_split_refused_for_streamed_data(tmp_path):
    with pytest.raises(ConfigError, match="streamed"):
        make_validation_loader("imagenet", 4, 10, data_dir=tmp_path)


def test_distillation_loss_is_a_mixture_and_zero_for_a_perfect_student():
    torch.manual_seed(0)
    teacher = nn.Linear(6, 4)
    x = torch.randn(8, 6)
    y = torch.randint(0, 4, (8,))
    logits = teacher(x).detach()
    ce = nn.functional.cross_entropy(logits, y)
    kd = Distillation(copy.deepcopy(teacher), weight=1.0, temperature=3.0)
    assert float(kd.combine(x, logits, ce, Execution())) == pytest.approx(0.0, abs=1e-6)
    half = Distillation(copy.deepcopy(teacher), weight=0.5, temperature=3.0)
    assert float(half.combine(x, logits, ce, Execution())) == pytest.approx(0.5 * float(ce), rel=1e-5)
    assert not any(p.requires_grad for p in kd.teacher.parameters())


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
