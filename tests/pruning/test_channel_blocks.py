"""``subrow-channel``: sub-rows where whole column blocks of uncoupled layers go as output channels."""

import json

import pytest
import torch

from pimprune.cli import main
from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count_network
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.simulate import verify_model
from pimprune.pruning.channel_blocks import removable_blocks
from pimprune.pruning.masking import apply_masks
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget
from pimprune.training.models import ModelSpec, create_model

XBAR = Crossbar.parse("8x8")
EXAMPLE = torch.zeros(1, 1, 16, 16)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = ModelSpec(name="resnet18", num_classes=10, in_channels=1, input_size=16, width=0.25, stem_stride=2)
    model = create_model(spec).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics and biases
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.1, 0.1)
    return model


def _project(model, target: float):
    proj = Projector(model, PruneTarget("subrow-channel", XBAR, target, allocation="global"), EXAMPLE)
    masks = proj({n: p.detach() for n, p in model.named_parameters()})
    return proj, masks


def test_only_uncoupled_layers_have_removable_blocks():
    model = _model()
    proj, _ = _project(model, 2.0)
    blocks = removable_blocks(proj._strategy.graph, list(proj.layers), XBAR)
    layers = {b.layer for b in blocks}
    assert layers and all(name.endswith(".conv1") and name.startswith("layer") for name in layers)
    for b in blocks:  # one block per C output channels of the layer
        assert len(b.channels) <= XBAR.cols


@pytest.mark.parametrize("target", [8.0, 16.0, 24.0])
def test_removed_blocks_are_exact_zero_channels_and_the_budget_holds(target):
    model = _model()
    proj, masks = _project(model, target)
    removed = proj._strategy.removed_blocks
    apply_masks(model, masks)
    counts = count_network(extract_layers(model), XBAR)
    assert counts.total("subrow") <= proj.network_budget
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda mod, a, out, n=n: outputs.__setitem__(n, out))
        for n, m in model.named_modules() if n.endswith("bn1") and n.startswith("layer")
    ]
    model(torch.randn(2, 1, 16, 16))
    for h in hooks:
        h.remove()
    for b in removed:
        bn = b.layer.replace("conv1", "bn1")
        chans = slice(b.block * XBAR.cols, (b.block + 1) * XBAR.cols)
        assert torch.count_nonzero(outputs[bn][:, chans]) == 0, b
        conv2_mask = masks[b.layer.replace("conv1", "conv2") + ".weight"]
        assert not bool(conv2_mask[:, chans].any())  # the rows reading the removed channels are gone


def test_blocks_go_at_high_targets_and_the_simulator_proves_the_packing():
    model = _model(1)
    proj, masks = _project(model, 24.0)
    assert proj._strategy.removed_blocks  # the floor forces some blocks out
    apply_masks(model, masks)
    report = verify_model(model, XBAR, "subrow", (2, 1, 16, 16), progress=False)
    assert max(layer.max_error for layer in report.layers) < 1e-4
    every_layer = count_network(extract_layers(model), XBAR)
    assert every_layer.total("subrow") <= proj.network_budget


def test_nothing_goes_at_a_generous_target():
    model = _model()
    proj, _ = _project(model, 1.2)
    assert proj._strategy.removed_blocks == []


def test_other_allocations_are_refused():
    with pytest.raises(ConfigError, match="global"):
        Projector(_model(), PruneTarget("subrow-channel", XBAR, 4.0, allocation="uniform"), EXAMPLE)


def test_prune_cli_and_map_agree(tmp_path, capsys):
    out = tmp_path / "p"
    argv = ["prune", "--model", "resnet18", "--width", "0.125", "--stem-stride", "2", "--dataset", "synthetic",
            "--limit-train", "64", "--limit-test", "64", "--batch-size", "32", "--device", "cpu",
            "--pattern", "subrow-channel", "--crossbar", "8x8", "--target-compression", "12",
            "--admm-epochs", "0", "--retrain-epochs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    capsys.readouterr()
    assert main(["map", str(out / "model.pt"), "--crossbar", "8x8", "--json"]) == 0
    mapped = json.loads([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")][0])
    entry = mapped["results"][0]
    assert mapped["scheme"] == "subrow"  # counted as sub-rows: a removed column block costs nothing
    assert entry["crossbars_pruned"] == result["crossbars_pruned"] <= result["crossbars_dense"] // 12
    assert result["pattern"] == "subrow-channel"
