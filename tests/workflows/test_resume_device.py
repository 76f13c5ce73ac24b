"""Resumed state goes to the model's device: a checkpoint is read onto the CPU, the model may sit on a GPU.

No GPU is needed: the model is moved to PyTorch's ``meta`` device after the state was saved, so
every restored tensor must follow it there (a tensor left on the CPU would fail on a GPU the same way).
"""

from types import SimpleNamespace

import torch
from torch import nn

from pimprune.pruning.admm import ADMM, ADMMConfig
from pimprune.pruning.masking import apply_masks, get_masks
from pimprune.pruning.methods.gradual import Gradual


def _topk(k: int):
    def project(weights):
        out = {}
        for n, w in weights.items():
            keep = torch.zeros(w.numel(), dtype=torch.bool)
            keep[w.detach().abs().flatten().topk(k).indices] = True
            out[n] = keep.reshape(w.shape)
        return out

    return project


def test_admm_state_follows_the_parameters_device():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5))
    admm = ADMM(net, _topk(8), ["0.weight"], ADMMConfig(rho=0.1, rho_final=0.1, update_every=1))
    state = admm.state_dict()
    assert all(t.device.type == "cpu" for part in ("Z", "U", "masks") for t in state[part].values())
    net.to("meta")
    admm.load_state_dict(state)
    for part in (admm.Z, admm.U, admm.masks):
        assert part["0.weight"].device.type == "meta"
    assert admm.masks["0.weight"].dtype == torch.bool


def test_restored_masks_follow_the_parameters_device():
    net = nn.Sequential(nn.Linear(4, 3)).to("meta")
    apply_masks(net, {"0.weight": torch.ones(3, 4, dtype=torch.bool)})
    assert get_masks(net)["0.weight"].device.type == "meta"


def test_resumed_saliency_factors_follow_the_parameters_device():
    weights = {"0.weight": torch.empty(3, 4, device="meta")}
    session = SimpleNamespace(weights=lambda: weights, factors_at=lambda epoch: {}, first_epoch=0)
    method = Gradual.__new__(Gradual)
    method.session, method.factors = session, {}
    method.setup({"saliency_factors": {"0.weight": torch.ones(3, 4)}})
    assert method.factors["0.weight"].device.type == "meta"
