import torch
from torch import nn

from pimprune.pruning.masking import apply_masks, get_masks, remove_masks


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))


def test_masks_survive_momentum_and_weight_decay():
    net = _net()
    mask = torch.rand_like(net[0].weight) > 0.5
    apply_masks(net, {"0.weight": mask})
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(5):
        loss = net(torch.randn(8, 2, 5, 5)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = net[0].weight
    assert torch.all(w[~mask] == 0)
    assert torch.any(w[mask] != 0)
    # masks travel in the state_dict
    sd = net.state_dict()
    assert any(k.endswith("mask") for k in sd)
    other = _net()
    apply_masks(other, {"0.weight": torch.ones_like(mask)})
    other.load_state_dict(sd)
    assert torch.equal(get_masks(other)["0.weight"], mask)
    remove_masks(other)
    assert torch.all(other[0].weight[~mask] == 0)
    assert isinstance(other[0].weight, nn.Parameter)
