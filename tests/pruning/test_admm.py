import torch
from torch import nn

from pimprune.pruning.admm import ADMM, ADMMConfig
from pimprune.pruning.masking import raw_parameter


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))


def _topk_projection(k):
    def proj(weights):
        out = {}
        for n, w in weights.items():
            flat = w.abs().flatten()
            thr = flat.kthvalue(flat.numel() - k + 1).values
            out[n] = w.abs() >= thr
        return out

    return proj


def test_admm_penalty_gradient_is_closed_form():
    net = _net()
    names = ["0.weight"]
    admm = ADMM(net, _topk_projection(10), names, ADMMConfig(rho=0.3, rho_final=0.3, update_every=1))
    w = raw_parameter(net, "0.weight")
    admm.U["0.weight"] = torch.randn_like(w)
    net.zero_grad()
    admm.penalty().backward()
    expect = 0.3 * (w.detach() - admm.Z["0.weight"] + admm.U["0.weight"])
    torch.testing.assert_close(w.grad, expect)
    # the optimizer-side hook adds exactly the same gradient
    w.grad = None
    admm.add_penalty_grad()
    torch.testing.assert_close(w.grad, expect)
    # penalty value
    val = 0.5 * 0.3 * ((w.detach() - admm.Z["0.weight"] + admm.U["0.weight"]) ** 2).sum()
    torch.testing.assert_close(admm.penalty().detach(), val)


def test_admm_update_is_projection_and_dual_step():
    net = _net()
    admm = ADMM(net, _topk_projection(10), ["0.weight"], ADMMConfig(rho=1e-2, rho_final=1e-1, update_every=1), 3)
    w = raw_parameter(net, "0.weight").detach().clone()
    u0 = torch.randn_like(w)
    admm.U["0.weight"] = u0.clone()
    admm.update()
    v = w + u0
    z = admm.Z["0.weight"]
    assert int((z != 0).sum()) == 10
    torch.testing.assert_close(z[z != 0], v[z != 0])
    torch.testing.assert_close(admm.U["0.weight"], u0 + w - z)
    assert admm.rho > 1e-2


def test_admm_attach_drives_weights_to_constraint_and_state_roundtrip():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    admm = ADMM(net, _topk_projection(12), ["0.weight"], ADMMConfig(rho=0.5, rho_final=2.0, update_every=2), 20)
    admm.attach(opt)
    r0 = admm.primal_residual()
    for _ in range(40):
        loss = net(torch.randn(4, 2, 5, 5)).square().mean() * 1e-3
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert admm.primal_residual() < r0
    st = admm.state_dict()
    other = ADMM(net, _topk_projection(12), ["0.weight"], ADMMConfig(rho=0.5, rho_final=2.0, update_every=2))
    other.load_state_dict(st)
    torch.testing.assert_close(other.U["0.weight"], admm.U["0.weight"])
    assert other.steps == admm.steps == 40
