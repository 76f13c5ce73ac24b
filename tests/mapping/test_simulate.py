import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import pimprune.mapping.simulate as simulate
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import SCHEMES, count_network
from pimprune.mapping.matrices import extract_layers, matrix_to_weight, weight_to_matrix
from pimprune.mapping.packing import pack
from pimprune.mapping.simulate import (
    SimulationMismatch,
    conv_padding,
    simulate_layer,
    simulate_matmul,
    verify_model,
)

NAMED_GEOMETRIES = [Crossbar(1, 1), Crossbar(3, 5), Crossbar(512, 32), Crossbar(32, 512)]
geometries = st.one_of(
    st.sampled_from(NAMED_GEOMETRIES),
    st.builds(Crossbar, st.integers(1, 9), st.integers(1, 9)),
)
PATTERNS = ("random", "zero", "one", "rows", "cols")


def prune_mask(shape: tuple[int, int, int], pattern: str, seed: int) -> torch.Tensor:
    """A (g, M, N) keep-mask: random, all-zero, all-one, or whole rows / columns."""
    gen = torch.Generator().manual_seed(seed)
    g, m, n = shape
    if pattern == "zero":
        return torch.zeros(shape, dtype=torch.bool)
    if pattern == "one":
        return torch.ones(shape, dtype=torch.bool)
    if pattern == "rows":
        return (torch.rand(g, m, 1, generator=gen) < 0.5).expand(shape)
    if pattern == "cols":
        return (torch.rand(g, 1, n, generator=gen) < 0.5).expand(shape)
    return torch.rand(shape, generator=gen) < 0.3


def prune_(module: nn.Conv2d | nn.Linear, pattern: str, seed: int) -> torch.Tensor:
    """Zero a module's weights in place; return its (g, M, N) pruned matrix."""
    groups = module.groups if isinstance(module, nn.Conv2d) else 1
    with torch.no_grad():
        matrix = weight_to_matrix(module.weight, groups)
        matrix = matrix * prune_mask(tuple(matrix.shape), pattern, seed)
        module.weight.copy_(matrix_to_weight(matrix, module.weight.shape))
    return weight_to_matrix(module.weight.detach(), groups)


@settings(deadline=None, max_examples=60)
@given(
    st.integers(1, 3),
    st.integers(1, 20),
    st.integers(1, 20),
    st.sampled_from(PATTERNS),
    st.integers(0, 2**31 - 1),
    geometries,
    st.integers(1, 5),
)
def test_simulate_matmul_equals_dense(g, m, n, pattern, seed, xbar, batch):
    gen = torch.Generator().manual_seed(seed)
    matrix = torch.randn(g, m, n, generator=gen) * prune_mask((g, m, n), pattern, seed)
    x = torch.randn(batch, g * m, generator=gen)
    expected = torch.einsum("bgm,gmn->bgn", x.view(batch, g, m), matrix).reshape(batch, g * n)
    for scheme in SCHEMES:
        got = simulate_matmul(pack(matrix, xbar, scheme), x)
        assert got.shape == (batch, g * n)
        torch.testing.assert_close(got, expected, msg=scheme)


def test_unconnected_lines_do_not_contribute():
    # Cells on invalid wordlines / bitlines (physically invalid, see check_physical) must
    # not leak into outputs: invalid wordlines are driven with 0, invalid bitlines not read.
    matrix = torch.randn(1, 5, 3)
    packed = pack(matrix, Crossbar(4, 4), "dense")
    assert not packed.row_valid.all() and not packed.col_valid.all()
    x = torch.randn(6, 5)
    clean = simulate_matmul(packed, x)
    packed.cells[~packed.row_valid] = 100.0
    packed.cells.transpose(1, 2)[~packed.col_valid] = -100.0
    torch.testing.assert_close(simulate_matmul(packed, x), clean)
    torch.testing.assert_close(clean, x @ matrix[0])


def test_simulate_matmul_rejects_wrong_width():
    packed = pack(torch.ones(2, 3, 4), Crossbar(2, 2), "dense")
    with pytest.raises(ValueError, match="6"):
        simulate_matmul(packed, torch.ones(1, 5))


@st.composite
def conv_layers(draw):
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 4))
    cin = groups if depthwise else groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    stride = (
        (1, 1) if padding_kind == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    )
    padding = {
        "int": draw(st.integers(0, 2)),
        "tuple": (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        "same": "same",
        "valid": "valid",
    }[padding_kind]
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    conv = nn.Conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
        padding_mode=mode,
    )
    size = (draw(st.integers(5, 9)), draw(st.integers(5, 9)))
    return conv, size


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(deadline=None, max_examples=60)
@given(
    conv_layers(),
    st.sampled_from(PATTERNS),
    st.sampled_from(SCHEMES),
    geometries,
    st.integers(0, 2**31 - 1),
    st.sampled_from([None, 1, 7]),
)
def test_conv_simulation_equals_module(layer, pattern, scheme, xbar, seed, chunk):
    conv, (h, w) = layer
    matrix = prune_(conv, pattern, seed)
    x = torch.randn(2, conv.in_channels, h, w, generator=torch.Generator().manual_seed(seed))
    got = simulate_layer(conv, pack(matrix, xbar, scheme), x, chunk_size=chunk)
    with torch.no_grad():
        expected = conv(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)


def test_conv_padding_matches_pytorch():
    for padding, kernel, dilation in (("same", (3, 4), (1, 2)), ("valid", 3, 1), ((1, 2), 3, 1)):
        conv = nn.Conv2d(2, 2, kernel, padding=padding, dilation=dilation, padding_mode="reflect")
        assert conv_padding(conv) == tuple(conv._reversed_padding_repeated_twice)


def test_depthwise_unbatched_and_chunked():
    conv = nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=6)
    matrix = prune_(conv, "random", seed=5)
    assert matrix.shape == (6, 9, 2)
    x = torch.randn(6, 11, 13)
    with torch.no_grad():
        expected = conv(x)
    for chunk in (None, 1, 5, 1000):
        got = simulate_layer(conv, pack(matrix, Crossbar(4, 2), "subrow"), x, chunk_size=chunk)
        torch.testing.assert_close(got, expected)


def test_linear_with_extra_dimensions():
    lin = nn.Linear(13, 7)
    matrix = prune_(lin, "random", seed=1)
    x = torch.randn(2, 3, 13)
    with torch.no_grad():
        expected = lin(x)
    for scheme in SCHEMES:
        got = simulate_layer(lin, pack(matrix, Crossbar(4, 3), scheme), x, chunk_size=4)
        torch.testing.assert_close(got, expected)


def test_layer_and_packing_must_agree():
    conv = nn.Conv2d(4, 6, 3)
    wrong = pack(torch.ones(1, 4 * 9, 5), Crossbar(8, 8), "dense")
    with pytest.raises(ValueError, match="does not fit"):
        simulate_layer(conv, wrong, torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="chunk_size"):
        simulate_layer(
            conv,
            pack(torch.ones(1, 36, 6), Crossbar(8, 8), "dense"),
            torch.randn(1, 4, 5, 5),
            chunk_size=0,
        )
    with pytest.raises(TypeError):
        simulate_layer(nn.ReLU(), wrong, torch.randn(1, 36))


def test_automatic_chunks_bound_the_workspace(monkeypatch):
    conv = nn.Conv2d(16, 32, 3, padding=1)
    matrix = prune_(conv, "random", seed=2)
    packed = pack(matrix, Crossbar(8, 8), "subcolumn")
    x = torch.randn(2, 16, 40, 40)
    unfolded = 2 * 16 * 9 * 40 * 40
    monkeypatch.setattr(simulate, "MIN_CHUNK_ELEMENTS", 4096)
    sizes = []
    run = simulate.CrossbarPlan.run

    def spy(plan, inputs):
        sizes.append(inputs[0].numel() * plan.workspace)
        return run(plan, inputs)

    monkeypatch.setattr(simulate.CrossbarPlan, "run", spy)
    got = simulate_layer(conv, packed, x)
    with torch.no_grad():
        torch.testing.assert_close(got, conv(x))
    assert len(sizes) > 1
    assert max(sizes) <= unfolded * simulate.WORKSPACE_FRACTION


def _peak_bytes(fn) -> int:
    """Most extra CPU bytes held at once while ``fn`` runs (profiler allocation events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak


def test_peak_memory_of_a_224px_conv_is_a_small_multiple_of_its_unfolded_input():
    conv = nn.Conv2d(3, 64, 7, stride=2, padding=3)
    matrix = prune_(conv, "random", seed=4)
    packed = pack(matrix, Crossbar(128, 128), "subrow")
    x = torch.randn(1, 3, 224, 224)
    unfolded = 3 * 49 * 112 * 112 * 4  # bytes
    output = 64 * 112 * 112 * 4
    with torch.no_grad():
        peak = _peak_bytes(lambda: simulate_layer(conv, packed, x))
    assert peak >= unfolded  # the measurement sees the unfolded input...
    assert peak <= 2 * unfolded + output  # ...and the crossbars add at most one more


def _pruned_resnet(sparsity: float = 0.8) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        for lay in extract_layers(model):
            w = lay.module.weight
            threshold = w.abs().flatten().kthvalue(int(sparsity * w.numel())).values
            w.mul_(w.abs() > threshold)
        # Non-trivial batch-norm statistics, so that activations are not all alike.
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.slow
def test_verify_resnet18_every_layer():
    model = _pruned_resnet()
    layers = extract_layers(model)
    xbar = Crossbar(32, 32)
    model.train()
    for scheme in ("subrow", "subcolumn", "unstructured"):
        report = verify_model(model, xbar, scheme, (2, 3, 32, 32), progress=False)
        assert [lc.name for lc in report.layers] == [lay.name for lay in layers]
        assert report.skipped == []
        assert report.crossbars == count_network(layers, xbar, schemes=(scheme,)).total(scheme)
        assert report.max_error <= 1e-4
        assert all(lc.max_output > 0 for lc in report.layers)
    assert model.training  # mode restored
    assert report.as_dict()["scheme"] == "unstructured"


def test_verify_model_catches_a_broken_packing(monkeypatch):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5)
    )
    torch.manual_seed(1)
    report = verify_model(model, Crossbar(8, 4), "subrow", (2, 3, 6, 6), progress=False)
    assert len(report.layers) == 2 and report.max_error < 1e-4

    def lossy_pack(matrix, xbar, scheme):
        p = pack(matrix, xbar, scheme)
        p.cells[-1] = 0  # the last crossbar loses its weights
        return p

    monkeypatch.setattr(simulate, "pack", lossy_pack)
    monkeypatch.setattr(simulate, "check_physical", lambda packed, matrix=None: None)
    with pytest.raises(SimulationMismatch, match="0 .*subrow"):
        verify_model(model, Crossbar(8, 4), "subrow", (2, 3, 6, 6), progress=False)


def test_verify_model_reports_unused_layers():
    class Partly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 3)
            self.unused = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    model = Partly()
    report = verify_model(model, Crossbar(2, 2), "filter", torch.randn(3, 4), progress=False)
    assert [lc.name for lc in report.layers] == ["used"]
    assert report.skipped == ["unused"]
