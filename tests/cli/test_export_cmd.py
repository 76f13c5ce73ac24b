"""``pimprune export neurosim``: files written, one-line errors, nothing half-written."""

import numpy as np

from pimprune.cli import main


def _read(out):
    rows = [tuple(int(v) for v in line.split(",")) for line in (out / "NetWork.csv").read_text().split()]
    weights = [np.loadtxt(out / f"weight{i}.csv", delimiter=",", ndmin=2) for i in range(1, len(rows) + 1)]
    return rows, weights


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "r20"
    args = ["export", "neurosim", "resnet20", "--crossbar", "32x32", "--out", str(out)]
    assert main([*args, "--input-size", "16", "--num-classes", "10", "--width", "0.25"]) == 0
    rows, weights = _read(out)
    assert len(rows) == 22 and rows[-1][:3] == (1, 1, 16)
    assert "wrote 22 layers" in capsys.readouterr().out
    assert main([*args]) == 2  # exists
    assert main(["export", "neurosim", "resnet20", "--crossbar", "3x", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err
    assert not (tmp_path / "x").exists()
