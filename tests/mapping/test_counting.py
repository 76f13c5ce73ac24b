import math

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from pimprune.geometry import Crossbar
from pimprune.mapping.counting import (
    SCHEMES,
    count,
    count_geometries,
    count_network,
    dense_count,
    packing_bound,
)
from pimprune.mapping.matrices import extract_layers


def brute(mask: np.ndarray, R: int, C: int, scheme: str) -> int:
    """Reference counts written loop by loop from docs/design.md section 5."""
    g, M, N = mask.shape
    total = 0
    for k in range(g):
        m = mask[k]
        if scheme == "dense":
            total += math.ceil(M / R) * math.ceil(N / C)
        elif scheme in ("unstructured", "crossbar"):
            for i in range(0, M, R):
                for j in range(0, N, C):
                    total += int(m[i : i + R, j : j + C].any())
        elif scheme == "row":
            total += math.ceil(m.any(1).sum() / R) * math.ceil(N / C)
        elif scheme == "filter":
            total += math.ceil(m.any(1).sum() / R) * math.ceil(m.any(0).sum() / C)
        elif scheme == "subrow":
            for j in range(0, N, C):
                total += math.ceil(m[:, j : j + C].any(1).sum() / R)
        elif scheme == "subcolumn":
            for i in range(0, M, R):
                total += math.ceil(m[i : i + R, :].any(0).sum() / C)
    return total


@st.composite
def masks(draw):
    g = draw(st.integers(1, 3))
    M = draw(st.integers(1, 40))
    N = draw(st.integers(1, 40))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.8, 1.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    m = rng.random((g, M, N)) < density
    return m


@settings(deadline=None, max_examples=150)
@given(masks(), st.integers(1, 17), st.integers(1, 17), st.sampled_from(SCHEMES))
def test_count_matches_bruteforce(mask, R, C, scheme):
    xbar = Crossbar(R, C)
    assert count(torch.from_numpy(mask), xbar, scheme) == brute(mask, R, C, scheme)


def test_hand_example_subrow_subcolumn():
    # 4x4 matrix on 2x2 crossbars; dense count 4
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, 0, 0] = m[0, 3, 1] = True  # column block 0: two rows with data -> 1 crossbar
    m[0, 1, 3] = True  # column block 1: one row -> 1 crossbar
    x = Crossbar(2, 2)
    assert count(m, x, "dense") == 4
    assert count(m, x, "subrow") == 2
    assert count(m, x, "subcolumn") == 2  # row block 0: cols {0,3} -> 1; row block 1: col {1} -> 1
    assert count(m, x, "crossbar") == 3
    assert count(m, x, "row") == 2 * 2  # 3 kept rows -> 2 row blocks x 2 col blocks
    assert count(m, x, "filter") == 2 * 2
    assert packing_bound(m, x) == 1


def test_torchvision_resnet18_727_on_128():
    layers = extract_layers(torchvision.models.resnet18())
    nc = count_network(layers, Crossbar(128, 128), schemes=("dense",))
    assert nc.total("dense") == 727
    # the docs/design.md rule layer by layer
    for lay in layers:
        assert nc.layers[[lc.name for lc in nc.layers].index(lay.name)].dense == dense_count(
            lay.rows, lay.cols, lay.groups, Crossbar(128, 128)
        )


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2"])
def test_other_models_follow_rule(name):
    model = torchvision.models.get_model(name, weights=None)
    layers = extract_layers(model)
    for xbar in (Crossbar(128, 128), Crossbar(64, 256)):
        nc = count_network(layers, xbar, schemes=("dense",))
        expect = 0
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                g = m.groups
                rows = m.in_channels // g * m.kernel_size[0] * m.kernel_size[1]
                expect += g * math.ceil(rows / xbar.rows) * math.ceil(m.out_channels // g / xbar.cols)
            elif isinstance(m, torch.nn.Linear):
                expect += math.ceil(m.in_features / xbar.rows) * math.ceil(m.out_features / xbar.cols)
        assert nc.total("dense") == expect


def test_dense_model_counts_equal_dense_under_every_scheme():
    torch.manual_seed(0)
    layers = extract_layers(torchvision.models.resnet18(num_classes=10))
    (nc,) = count_geometries(layers, [Crossbar(32, 32)])
    for s in SCHEMES:
        assert nc.total(s) == nc.total("dense")
    assert nc.compression("subrow") == 1.0


def test_compression_conv_only_and_json():
    layers = extract_layers(torchvision.models.resnet18(num_classes=10))
    masks = {lay.name: torch.rand(lay.groups, lay.rows, lay.cols) < 0.02 for lay in layers}
    nc = count_network(layers, Crossbar(32, 32), masks)
    d = nc.as_dict()
    assert d["total_crossbars"] == nc.total("dense")
    assert d["compression"]["subrow"] == pytest.approx(nc.total("dense") / nc.total("subrow"), rel=1e-3)
    conv_dense = sum(lc.dense for lc in nc.layers if lc.kind == "conv")
    assert d["total_crossbars_conv"] == conv_dense
    assert nc.bound() <= nc.total("subrow") <= nc.total("dense")


def test_unknown_scheme():
    from pimprune.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        count(torch.ones(1, 2, 2, dtype=torch.bool), Crossbar(2, 2), "diagonal")
