"""``pimprune export neurosim``: files written, inputs from the model's data set, one-line errors."""

from pathlib import Path

import pytest

from pimprune.cli import main
from pimprune.errors import DataError
from pimprune.training.checkpoint import save_model
from pimprune.training.datasets import dataset_info
from pimprune.training.models import ModelSpec, create_model

ROOT = Path(__file__).resolve().parents[2]


def _rows(out):
    return [tuple(int(v) for v in line.split(",")) for line in (out / "NetWork.csv").read_text().split()]


def _fmnist_missing() -> bool:
    try:
        dataset_info("fashion-mnist")
    except DataError:
        return True
    return False


def test_cli_export_of_a_model_name(tmp_path, capsys):
    out = tmp_path / "r20"
    args = ["export", "neurosim", "resnet20", "--crossbar", "32x32", "--out", str(out)]
    assert main([*args, "--input-size", "16", "--num-classes", "10", "--width", "0.25"]) == 0
    rows = _rows(out)
    assert len(rows) == 22 and rows[-1] == (1, 1, 16, 1, 1, 10, 0, 1)
    printed = capsys.readouterr().out
    assert "wrote 22 lines" in printed and "random image" in printed and "run_neurosim.sh" in printed
    assert all((out / f"input{i}.csv").exists() for i in range(1, 23)) and not (out / "images").exists()
    assert "main NetWork.csv 8 8 32 32" in (out / "README.md").read_text()


def test_cli_export_of_a_checkpoint_reads_its_data_set(tmp_path, capsys):
    spec = ModelSpec("resnet20", num_classes=10, in_channels=1, input_size=28, width=0.5)
    save_model(create_model(spec, seed=0), spec, tmp_path / "m", {"dataset": "fashion-mnist-subset"})
    out = tmp_path / "ns"
    cmd = ["export", "neurosim", str(tmp_path / "m" / "model.pt"), "--crossbar", "64x128", "--out", str(out)]
    assert main([*cmd, "--images", "3", "--weight-bits", "6", "--input-bits", "4"]) == 0
    assert "fashion-mnist-subset test split" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "images").iterdir()) == ["2", "3"]
    assert (out / "images" / "3" / "input1.csv").exists()
    assert "NetWork.csv\" 6 4 64 64" in (out / "run_neurosim.sh").read_text()


def _one_line_error(capsys, argv, *, match: str) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and match in err, err


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    out = tmp_path / "r20"
    base = ["export", "neurosim", "resnet20", "--input-size", "16", "--num-classes", "10", "--width", "0.25"]
    assert main([*base, "--crossbar", "32x32", "--out", str(out)]) == 0
    capsys.readouterr()
    _one_line_error(capsys, [*base, "--crossbar", "32x32", "--out", str(out)], match="already holds a NetWork.csv")
    x = str(tmp_path / "x")
    _one_line_error(capsys, [*base, "--crossbar", "3x", "--out", x], match="RxC")
    _one_line_error(capsys, [*base, "--crossbar", "32x32", "--out", x, "--images", "0"], match="--images")
    _one_line_error(capsys, [*base, "--crossbar", "32x32", "--out", x, "--images", "two"], match="--images")
    _one_line_error(capsys, [*base, "--crossbar", "32x32", "--out", x, "--weight-bits", "1"], match="--weight-bits")
    _one_line_error(capsys, [*base, "--crossbar", "512x128", "--out", x], match="SubArray Size is too large")
    assert not Path(x).exists()


@pytest.mark.skipif(_fmnist_missing(), reason="Fashion-MNIST not installed")
def test_cli_refuses_what_neurosim_cannot_place(tmp_path, capsys):
    model = str(ROOT / "results/headline/subrow-1pt/model.pt")
    out = tmp_path / "ns"
    _one_line_error(capsys, ["export", "neurosim", model, "--crossbar", "256x128", "--out", str(out)],
                    match="at most 128 crossbar rows")
    _one_line_error(capsys, ["export", "neurosim", model, "--crossbar", "128x128", "--out", str(out),
                             "--images", "10001"], match="has only 10000 images")
    assert not out.exists()
    assert main(["export", "neurosim", model, "--crossbar", "256x128", "--out", str(out), "--mapping",
                 "conventional"]) == 0
    assert "novelMapping = false;" in (out / "README.md").read_text()
