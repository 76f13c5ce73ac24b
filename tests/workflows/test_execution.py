"""Mixed precision and channels-last (the GPU protocol's speed settings), checked on the CPU."""

import json

import torch

from pimprune.cli import main
from pimprune.training.models import ModelSpec, create_model

TINY = [
    "--model", "resnet18", "--width", "0.125", "--stem-stride", "2",
    "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "64",
    "--batch-size", "32", "--device", "cpu",
]  # fmt: skip


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
