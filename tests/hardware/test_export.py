"""NeuroSim export: NetWork.csv lines, weight files, compacted layers, errors."""

import numpy as np
import pytest
import torch
from torch import nn

from pimprune.errors import OutputError
from pimprune.hardware.export import NETWORK_COLUMNS, export_neurosim, neurosim_layers
from pimprune.mapping.matrices import extract_layers


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        return self.fc(self.conv2(x).mean((2, 3)))


def _read(out):
    rows = [tuple(int(v) for v in line.split(",")) for line in (out / "NetWork.csv").read_text().split()]
    weights = [np.loadtxt(out / f"weight{i}.csv", delimiter=",", ndmin=2) for i in range(1, len(rows) + 1)]
    return rows, weights


def test_dense_model_lines_and_weights(tmp_path):
    torch.manual_seed(0)
    model = _Net()
    files = export_neurosim(model, (3, 8, 8), "16x16", tmp_path / "ns")
    assert [f.name for f in files] == ["NetWork.csv", "weight1.csv", "weight2.csv", "weight3.csv", "README.md"]
    rows, weights = _read(tmp_path / "ns")
    assert len(NETWORK_COLUMNS) == 8
    # IFM_H, IFM_W, IFM_C, K_H, K_W, OFM_C, pooling, stride
    assert rows == [(8, 8, 3, 3, 3, 8, 1, 1), (4, 4, 8, 3, 3, 16, 0, 2), (1, 1, 16, 1, 1, 10, 0, 1)]
    for row, w, lay in zip(rows, weights, extract_layers(model), strict=True):
        assert w.shape == (row[2] * row[3] * row[4], row[5])  # shapes agree
        assert np.allclose(w, lay.matrix()[0].numpy(), atol=1e-6)  # rows (cin, kh, kw), columns = outputs
    readme = (tmp_path / "ns" / "README.md").read_text()
    assert "numRowSubArray = 16" in readme and "index tables" in readme


def test_pruned_layer_is_its_kept_matrix():
    torch.manual_seed(0)
    model = _Net()
    with torch.no_grad():
        model.conv2.weight[:, 3] = 0  # input channel 3: 9 rows gone
        model.conv2.weight[5] = 0  # output 5 gone
    lines = neurosim_layers(model, (3, 8, 8))
    conv2 = lines[1]
    assert conv2.compacted and conv2.name == "conv2"
    # 1x1 on the layer's output size (2x2), stride 1, kept rows and columns as channels
    assert conv2.row == (2, 2, 72 - 9, 1, 1, 15, 0, 1)
    assert conv2.weight.shape == (63, 15)
    assert not lines[0].compacted


def test_grouped_conv_one_line_per_group():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    lines = neurosim_layers(model, (4, 6, 6))
    assert [ln.name for ln in lines] == ["0[0]", "0[1]"]
    assert all(ln.row == (4, 4, 18, 1, 1, 2, 0, 1) for ln in lines)


def test_refuses_to_overwrite_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "ns"
    export_neurosim(_Net(), (3, 8, 8), "8x8", out)
    with pytest.raises(OutputError, match="already holds a NetWork.csv"):
        export_neurosim(_Net(), (3, 8, 8), "8x8", out)
    bad = tmp_path / "bad"
    with pytest.raises(Exception, match="does not run"):
        export_neurosim(_Net(), (5, 8, 8), "8x8", bad)
    assert not bad.exists() or not any(bad.iterdir())

