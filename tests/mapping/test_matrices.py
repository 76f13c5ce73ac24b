import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pimprune.mapping.matrices import extract_layers, matrix_to_weight, weight_to_matrix


@settings(deadline=None, max_examples=40)
@given(
    g=st.integers(1, 3),
    cin_g=st.integers(1, 4),
    cout_g=st.integers(1, 4),
    k=st.sampled_from([(1, 1), (3, 3), (1, 3), (2, 5)]),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
)
def test_conv_matrix_is_unfold_matmul(g, cin_g, cout_g, k, stride, dilation):
    conv = nn.Conv2d(cin_g * g, cout_g * g, k, stride=stride, padding=1, dilation=dilation, groups=g, bias=False)
    x = torch.randn(2, cin_g * g, 9, 8)
    mats = weight_to_matrix(conv.weight.detach(), g)
    assert mats.shape == (g, cin_g * k[0] * k[1], cout_g)
    cols = F.unfold(x, k, dilation=dilation, padding=1, stride=stride)  # (B, Cin*kh*kw, L)
    M = mats.shape[1]
    ys = [cols[:, i * M : (i + 1) * M].transpose(1, 2) @ mats[i] for i in range(g)]
    y = torch.cat(ys, dim=2).transpose(1, 2)
    ref = conv(x).flatten(2)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(matrix_to_weight(mats, conv.weight.shape), conv.weight.detach())


def test_linear_matrix_orientation():
    lin = nn.Linear(5, 3)
    m = weight_to_matrix(lin.weight.detach())
    assert m.shape == (1, 5, 3)
    x = torch.randn(4, 5)
    torch.testing.assert_close(x @ m[0] + lin.bias, lin(x))
    torch.testing.assert_close(matrix_to_weight(m, lin.weight.shape), lin.weight.detach())


def test_extract_layers_names_and_depthwise():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(), nn.Linear(8, 2)
    )
    layers = extract_layers(model)
    assert [lay.name for lay in layers] == ["0", "1", "3"]
    assert (layers[1].groups, layers[1].rows, layers[1].cols) == (8, 9, 1)
    assert (layers[2].kind, layers[2].rows, layers[2].cols) == ("linear", 8, 2)
