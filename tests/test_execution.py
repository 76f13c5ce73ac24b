"""Mixed precision and channels-last (the GPU protocol's speed settings), checked on the CPU."""

import json

import pytest
import torch
from torch import nn

from pimprune.cli import main
from pimprune.errors import ConfigError
from pimprune.training.loops import Execution
from pimprune.training.models import ModelSpec, create_model

TINY = [
    "--model", "resnet18", "--width", "0.125", "--stem-stride", "2",
    "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "64",
    "--batch-size", "32", "--device", "cpu",
]  # fmt: skip


def test_autocast_and_memory_format():
    ex = Execution(precision="bf16", channels_last=True)
    conv = ex.model(nn.Conv2d(3, 8, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = ex.batch(torch.randn(2, 3, 8, 8), torch.device("cpu"))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with ex.autocast(torch.device("cpu")):
        assert conv(x).dtype == torch.bfloat16
    assert conv.weight.dtype == torch.float32  # weights stay float32
    with Execution().autocast(torch.device("cpu")):
        assert conv(x).dtype == torch.float32
    assert Execution().batch(torch.randn(2, 5), torch.device("cpu")).shape == (2, 5)


def test_unknown_precision():
    with pytest.raises(ConfigError, match="unknown precision 'fp8'; choose one of: fp32, bf16"):
        Execution(precision="fp8")


def test_prune_in_bf16_channels_last_writes_a_plain_loadable_model(tmp_path):
    out = tmp_path / "p"
    argv = [
        "prune", *TINY, "--dense-epochs", "1", "--admm-epochs", "1", "--retrain-epochs", "1",
        "--pattern", "subrow", "--crossbar", "16x16", "--target-compression", "4",
        "--precision", "bf16", "--channels-last", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["run"]["execution"] == {"precision": "bf16", "channels_last": True}
    assert 0 <= result["accuracy_pruned"] <= 1 and result["compression"] >= 4
    state = torch.load(out / "model.pt", weights_only=True)
    model = create_model(ModelSpec.from_dict(result["spec"] if "spec" in result else result["config"]["spec"]))
    model.load_state_dict(state)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
