"""NeuroSim export: lines, positions, compacted layers, weight and input files, run script, errors."""

import json
import math
import os
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from pimprune.errors import ConfigError, OutputError
from pimprune.hardware.cost import layer_mvms
from pimprune.hardware.export import (
    NETWORK_COLUMNS,
    example_images,
    export_neurosim,
    neurosim_layers,
)
from pimprune.hardware.neurosim import mapping_check, positions
from pimprune.mapping.matrices import extract_layers
from pimprune.mapping.tracing import record_layer_io
from pimprune.training.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[2]
DENSE = ROOT / "src/pimprune/assets/demo_dense/model.pt"
HEADLINE = ROOT / "results/headline"
PRUNED = sorted(p.name for p in HEADLINE.glob("*") if (p / "model.pt").exists() and p.name != "control")

# NeuroSim's shipped NetWork_ResNet18.csv (github.com/neurosim/DNN_NeuroSim_V1.4, commit
# ac828e6723bf077c9b1423c5c72ff6e4981e90f4, Inference_pytorch/NeuroSIM/NetWork_ResNet18.csv), verbatim.
NEUROSIM_RESNET18 = """
224,224,3,7,7,64,1,2
56,56,64,3,3,64,0,1
56,56,64,3,3,64,0,1
56,56,64,3,3,64,0,1
56,56,64,3,3,64,0,1
56,56,64,3,3,128,0,2
28,28,128,3,3,128,0,1
56,56,64,1,1,128,0,2
28,28,128,3,3,128,0,1
28,28,128,3,3,128,0,1
28,28,128,3,3,256,0,2
14,14,256,3,3,256,0,1
28,28,128,1,1,256,0,2
14,14,256,3,3,256,0,1
14,14,256,3,3,256,0,1
14,14,256,3,3,512,0,2
7,7,512,3,3,512,0,1
14,14,256,1,1,512,0,2
7,7,512,3,3,512,0,1
7,7,512,3,3,512,1,1
1,1,512,1,1,1000,0,1
"""


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


def _network(out: Path) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in line.split(",")) for line in (out / "NetWork.csv").read_text().split()]


def _weights(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


def _bits(path: Path) -> np.ndarray:
    """A 0/1 input file as a uint8 matrix; fails unless every entry is one '0'/'1' character."""
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    width = data.tobytes().index(b"\n") + 1
    assert data.size % width == 0
    rows = data.reshape(-1, width)
    assert np.all(rows[:, 1:-1:2] == ord(",")) and np.all(rows[:, -1] == ord("\n"))
    digits = rows[:, 0::2]
    assert np.isin(digits, [ord("0"), ord("1")]).all()
    return digits - ord("0")


def _decode(bits: np.ndarray, nbits: int) -> np.ndarray:
    """Input values from a bit matrix: column p*nbits+b is bit b of position p, bit 0 weighing -1, bit i 2^-i."""
    per_bit = np.array([-1.0] + [2.0**-i for i in range(1, nbits)])
    return bits.reshape(bits.shape[0], -1, nbits) @ per_bit


def _scales(out: Path) -> dict:
    return json.loads((out / "scales.json").read_text())


# --------------------------------------------------------------------------- lines


def test_dense_model_lines_and_files(tmp_path):
    model = _Net()
    done = export_neurosim(model, (3, 8, 8), "16x16", tmp_path / "ns")
    names = sorted(f.name for f in done.files)
    expected = ["NetWork.csv", "README.md", "run_neurosim.sh", "scales.json"]
    assert names == sorted(expected + [f"weight{i}.csv" for i in (1, 2, 3)] + [f"input{i}.csv" for i in (1, 2, 3)])
    assert len(NETWORK_COLUMNS) == 8
    # IFM = out * stride + K - 1 per side: conv1 8x8 out (pooled after), conv2 2x2 out at stride 2, fc
    want = [(10, 10, 3, 3, 3, 8, 1, 1), (6, 6, 8, 3, 3, 16, 0, 2), (1, 1, 16, 1, 1, 10, 0, 1)]
    assert _network(tmp_path / "ns") == want
    scales = _scales(tmp_path / "ns")
    for i, lay in enumerate(extract_layers(model), start=1):
        w = _weights(tmp_path / "ns" / f"weight{i}.csv")
        scale = scales["lines"][i - 1]["weight_scale"]
        # rows (cin, kh, kw), columns = outputs; max |w| -> 1 - 2^-7, on the 8-bit grid
        assert np.allclose(w / scale, lay.matrix()[0].numpy(), atol=0.5 / 128 / scale)
        assert np.abs(w).max() == pytest.approx(1 - 2**-7)
        assert np.all(w * 128 == np.round(w * 128))
    assert not any(line.compacted for line in done.lines)


def test_compacted_conv_keeps_its_kernel():
    model = _Net()
    with torch.no_grad():
        model.conv2.weight[:, 3] = 0  # input channel 3: 9 rows gone
        model.conv2.weight[5] = 0  # output 5 gone
    conv2 = neurosim_layers(model, (3, 8, 8))[1]
    assert conv2.compacted and conv2.name == "conv2" and not neurosim_layers(model, (3, 8, 8))[0].compacted
    assert conv2.row == (6, 6, 7, 3, 3, 15, 0, 2)  # 63 rows = 7 channels of 3x3, 15 outputs, same stride
    assert conv2.weight.shape == (63, 15)
    with torch.no_grad():
        model.conv2.weight[:, 0, 1, 1] = 0  # one more row: 62 rows -> 7 channels, one zero row of padding
    conv2 = neurosim_layers(model, (3, 8, 8))[1]
    assert conv2.row[2:4] == (7, 3) and conv2.weight.shape == (63, 15)
    assert not conv2.weight[62].any() and conv2.weight[:62].any(axis=1).all()
    assert positions(conv2.row) == 4  # the layer's 2x2 outputs


def test_grouped_conv_one_line_per_group_with_its_kernel():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    lines = neurosim_layers(model, (4, 6, 6))
    assert [ln.name for ln in lines] == ["0[0]", "0[1]"]
    assert all(ln.row == (6, 6, 2, 3, 3, 2, 0, 1) and positions(ln.row) == 16 for ln in lines)
    assert [ln.unfold.channels for ln in lines] == [(0, 2), (2, 4)]


def test_layer_without_weights_has_no_line():
    model = _Net()
    with torch.no_grad():
        model.conv2.weight.zero_()
    assert [ln.name for ln in neurosim_layers(model, (3, 8, 8))] == ["conv1", "fc"]


def _check_positions(model: nn.Module, shape: tuple[int, int, int]) -> None:
    lines = neurosim_layers(model, shape)
    mvms = layer_mvms(model, shape)
    assert {ln.layer for ln in lines} == set(mvms)
    for line in lines:  # NeuroSim's count from the written line = pimprune's MVMs (output H*W) of the layer
        assert positions(line.row) == mvms[line.layer], line.name


def test_positions_equal_pimprunes_for_the_shipped_models():
    for path in (DENSE, HEADLINE / "subrow-1pt/model.pt"):
        model, meta = load_model(path)
        spec = meta["spec"]
        _check_positions(model, (spec["in_channels"], spec["input_size"], spec["input_size"]))
    _check_positions(torchvision.models.resnet18(num_classes=1000), (3, 224, 224))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(5, 12), k=st.integers(1, 4), stride=st.integers(1, 3), pad=st.integers(0, 2),
    dilation=st.integers(1, 2), same=st.booleans(),
)
def test_positions_equal_pimprunes_whatever_the_conv(size, k, stride, pad, dilation, same):
    padding = "same" if same and stride == 1 else pad
    model = nn.Sequential(nn.Conv2d(2, 3, k, stride=stride, padding=padding, dilation=dilation))
    if (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1 < 1 and padding != "same":
        return
    _check_positions(model, (2, size, size))


def test_torchvision_resnet18_matches_neurosims_own_file():
    ours = [ln.row for ln in neurosim_layers(torchvision.models.resnet18(num_classes=1000), (3, 224, 224))]
    theirs = [tuple(int(v) for v in line.split(",")) for line in NEUROSIM_RESNET18.split()]
    assert len(ours) == len(theirs) == 21
    # kernels, channels, pooling and stride flags agree; only the input size differs (padding, README)
    assert [r[2:] for r in ours] == [r[2:] for r in theirs]
    assert ours[0][:2] == (230, 230) and ours[-3][:2] == (9, 9)  # 112*2+6; 7*1+2 (NeuroSim: 7 -> 25 positions)
    assert positions(theirs[-3]) == 25 and positions(ours[-3]) == 49


def test_novel_mapping_check_of_the_shipped_models():
    dense, _ = load_model(DENSE)
    control, _ = load_model(HEADLINE / "control/model.pt")
    for model in (dense, control):
        rows = [ln.row for ln in neurosim_layers(model, (1, 28, 28))]
        assert all(mapping_check(rows, 8, r).ok for r in (64, 128, 256))
    for name in PRUNED:
        model, _ = load_model(HEADLINE / name / "model.pt")
        rows = [ln.row for ln in neurosim_layers(model, (1, 28, 28))]
        assert mapping_check(rows, 8, 64).ok and mapping_check(rows, 8, 128).ok, name
        # at 256 rows a model whose compacted 3x3 lines are all 32 outputs wide or narrower breaks
        # NeuroSim's default (novel) floorplan ("SubArray Size is too large", checked on the earlier
        # subrow rows); conventional mapping takes every model
        assert mapping_check(rows, 8, 256, "conventional").ok, name


# --------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def shipped_exports(tmp_path_factory):
    out = {}
    for label, path in (("dense", DENSE), ("subrow-1pt", HEADLINE / "subrow-1pt/model.pt")):
        model, meta = load_model(path)
        images, note = example_images("fashion-mnist-subset", 2, (1, 28, 28))
        folder = tmp_path_factory.mktemp(label) / "ns"
        out[label] = (model, export_neurosim(model, (1, 28, 28), "128x128", folder, images=images, image_note=note))
    return out


def test_file_invariants_of_the_shipped_models(shipped_exports):
    for model, done in shipped_exports.values():
        rows = _network(done.out)
        mvms = layer_mvms(model, (1, 28, 28))
        assert rows == [ln.row for ln in done.lines]
        for i, (row, line) in enumerate(zip(rows, done.lines, strict=True), start=1):
            h, w, cin, kh, kw, cout, _, _ = row
            assert positions(row) == mvms[line.layer]
            weight = _weights(done.out / f"weight{i}.csv")
            assert weight.shape == (cin * kh * kw, cout)
            assert np.all(weight >= -1) and np.all(weight < 1)
            for folder in (done.out, done.out / "images" / "2"):
                assert _bits(folder / f"input{i}.csv").shape == (cin * kh * kw, positions(row) * 8)
    assert any(ln.compacted for ln in shipped_exports["subrow-1pt"][1].lines)


def test_images_layout_and_input_scales(shipped_exports):
    _, done = shipped_exports["dense"]
    assert not (done.out / "images" / "1").exists() and sorted(os.listdir(done.out / "images")) == ["2"]
    first, second = _bits(done.out / "input5.csv"), _bits(done.out / "images/2/input5.csv")
    assert not np.array_equal(first, second)  # two real images
    # one scale per layer over both images: the largest |input| of the two takes the largest code
    codes = [np.abs(_decode(b, 8)).max() for b in (first, second)]
    assert max(codes) == pytest.approx(1 - 2**-7) and min(codes) <= max(codes)
    entry = _scales(done.out)["lines"][4]
    assert entry["layer"] == done.lines[4].layer and entry["input_scale"] > 0
    assert "fashion-mnist-subset test split" in (done.out / "README.md").read_text()


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=30, deadline=None)
@given(
    cin=st.integers(1, 3), cout=st.integers(1, 5), k=st.integers(1, 3), stride=st.integers(1, 2),
    pad=st.sampled_from([0, 1, "same"]), mode=st.sampled_from(["zeros", "reflect", "circular"]),
    size=st.integers(4, 8), groups=st.sampled_from([1, 2]), seed=st.integers(0, 99),
)
@example(cin=1, cout=2, k=2, stride=1, pad="same", mode="zeros", size=5, groups=1, seed=0)  # odd pixel: right
@example(cin=2, cout=3, k=3, stride=2, pad=1, mode="reflect", size=7, groups=2, seed=1)
def test_files_reproduce_the_layer(cin, cout, k, stride, pad, mode, size, groups, seed):
    # decoded input file x weight file = the layer's real output, for every padding, stride, group and pruning
    torch.manual_seed(seed)
    stride = 1 if pad == "same" else stride
    conv = nn.Conv2d(cin * groups, cout * groups, k, stride=stride, padding=pad, groups=groups, bias=False,
                     padding_mode=mode)
    with torch.no_grad():  # prune some rows and whole outputs: compacted lines
        conv.weight.mul_((torch.rand(conv.weight.shape[0], 1, 1, 1) > 0.3).float())
        conv.weight.mul_((torch.rand(1, *conv.weight.shape[1:]) > 0.3).float())
    model = nn.Sequential(conv)
    x = torch.randn(1, cin * groups, size, size)
    y = record_layer_io(model, extract_layers(model), x)["0"][1][0]  # (Cout, H, W)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = export_neurosim(model, x.shape[1:], "2x128", Path(tmp) / "ns", images=x, weight_bits=16,
                                   input_bits=16, mapping="conventional")
        except ConfigError:  # every weight pruned: no line at all
            assert not conv.weight.any()
            return
        scales = _scales(done.out)["lines"]
        for i, line in enumerate(done.lines, start=1):
            xs = _decode(_bits(done.out / f"input{i}.csv"), 16) / scales[i - 1]["input_scale"]
            ws = _weights(done.out / f"weight{i}.csv") / scales[i - 1]["weight_scale"]
            group = int(line.name[2]) if groups > 1 else 0
            matrix = conv.weight.detach().reshape(groups, cout, -1)[group].T.numpy()
            kept_cols = np.flatnonzero(np.abs(matrix).sum(0) > 0)
            want = y[group * cout + kept_cols].reshape(len(kept_cols), -1).numpy()  # (kept outputs, positions)
            assert np.allclose(xs.T @ ws, want.T, atol=1e-3 * max(1.0, np.abs(want).max()))


def test_run_script_runs_neurosims_command(tmp_path):
    done = export_neurosim(_Net(), (3, 8, 8), "8x128", tmp_path / "ns", images=torch.randn(2, 3, 8, 8),
                           weight_bits=6, input_bits=4, mapping="conventional")
    script = done.out / "run_neurosim.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    fake = tmp_path / "main"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    args = subprocess.run([str(script), str(fake)], capture_output=True, text=True, check=True, cwd=tmp_path)
    argv = args.stdout.split()
    here = str(done.out.resolve())
    assert argv[:5] == [f"{here}/NetWork.csv", "6", "4", "8", "8"]
    assert argv[5:] == [f"{here}/{kind}{i}.csv" for i in (1, 2, 3) for kind in ("weight", "input")]
    two = subprocess.run([str(script), str(fake), "2"], capture_output=True, text=True, check=True).stdout.split()
    assert two[6] == f"{here}/images/2/input1.csv" and all(Path(a).exists() for a in two[5:])
    bad = subprocess.run([str(script), str(fake), "3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "images 1..2" in bad.stderr
    assert subprocess.run([str(script)], capture_output=True).returncode == 2


def test_readme_names_the_param_cpp_line_for_other_columns(tmp_path):
    out64 = export_neurosim(_Net(), (3, 8, 8), "8x64", tmp_path / "a", mapping="conventional").out
    text = (out64 / "README.md").read_text()
    assert "`numColSubArray = 128;`" in text and "`numColSubArray = 64;`" in text
    assert "./run_neurosim.sh PATH/TO/NeuroSIM/main" in text and "main NetWork.csv 8 8 8 8" in text
    assert "random image" in text and "25 positions instead of 49" in text
    text128 = (export_neurosim(_Net(), (3, 8, 8), "8x128", tmp_path / "b", mapping="conventional").out
               / "README.md").read_text()
    assert "numColSubArray = 64;" not in text128 and "runs as it is" in text128


# --------------------------------------------------------------------------- errors


def test_refuses_to_overwrite_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "ns"
    export_neurosim(_Net(), (3, 8, 8), "8x8", out)
    with pytest.raises(OutputError, match="already holds a NetWork.csv"):
        export_neurosim(_Net(), (3, 8, 8), "8x8", out)
    bad = tmp_path / "bad"
    with pytest.raises(ConfigError, match="does not run"):
        export_neurosim(_Net(), (5, 8, 8), "8x8", bad)
    with pytest.raises(ConfigError, match="SubArray Size is too large"):  # 16 outputs * 8 bits, 128 rows
        export_neurosim(_Net(), (3, 8, 8), "128x128", bad)
    with pytest.raises(ConfigError, match="--input-bits"):
        export_neurosim(_Net(), (3, 8, 8), "8x8", bad, input_bits=1)
    with pytest.raises(ConfigError, match="images must be"):
        export_neurosim(_Net(), (3, 8, 8), "8x8", bad, images=torch.zeros(1, 3, 9, 9))
    assert not bad.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ns"]  # no temporary folder left


def test_example_images():
    x, note = example_images("fashion-mnist-subset", 3, (1, 28, 28))
    assert x.shape == (3, 1, 28, 28) and "test split" in note
    assert -1 < float(x.min()) < 0 < float(x.max())  # normalised: background below the mean
    small, _ = example_images("fashion-mnist-subset", 1, (1, 14, 14))
    assert small.shape == (1, 1, 14, 14)
    r, note = example_images(None, 2, (3, 5, 5))
    assert r.shape == (2, 3, 5, 5) and "random" in note
    assert torch.equal(r, example_images(None, 2, (3, 5, 5))[0])  # seeded
    with pytest.raises(ConfigError, match="has only"):
        example_images("fashion-mnist-subset", 10**6, (1, 28, 28))
    with pytest.raises(ConfigError, match="channels"):
        example_images("fashion-mnist-subset", 1, (3, 28, 28))
    assert math.isfinite(float(x.sum()))
