"""The committed headline models (``results/headline/*``) reproduce their result.json.

``pimprune map`` gives the crossbars of each result.json (per layer, and network packing for a
model pruned with ``--packing network``), the functional simulator proves the packing, and
``pimprune evaluate`` gives its test accuracy on Fashion-MNIST (needs the Debian package).
"""

import json
from pathlib import Path

import pytest

from pimprune.cli import main
from pimprune.training import readers as data

HEADLINE = Path(__file__).resolve().parents[2] / "results" / "headline"
FOLDERS = sorted(p for p in HEADLINE.glob("*") if (p / "result.json").exists())


def _json_line(out: str) -> dict:
    return json.loads(next(ln for ln in out.splitlines() if ln.startswith("{")))


def test_headline_folders_are_complete():
    """Every row headline.json chose (on validation) is committed with its model, and only those."""
    table = json.loads((HEADLINE / "headline.json").read_text())
    chosen = {row["row"] for row in table["headline"] if row["chosen"] is not None}
    assert {"subrow-1pt", "control"} <= chosen | {"control"}
    assert {p.name for p in FOLDERS} - {"control", "physical-1pt"} == chosen
    for folder in FOLDERS:
        for name in ("model.pt", "model.json", "result.json", "RUN"):
            assert (folder / name).exists(), folder / name
        result = json.loads((folder / "result.json").read_text())
        if result.get("packing") == "network":
            assert (folder / "placement.json").exists(), folder
    for row in table["headline"]:
        if row["chosen"] is not None:  # the committed model is the chosen cell's seed-0 run
            assert (HEADLINE / row["row"] / "RUN").read_text().strip() in row["chosen"]["runs"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_map_reproduces_the_crossbars(folder, capsys):
    result = json.loads((folder / "result.json").read_text())
    packing = result.get("packing") or "layer"
    argv = ["map", str(folder / "model.pt"), "--crossbar", result["crossbar"], "--json", "--packing", packing]
    capsys.readouterr()
    assert main(argv) == 0
    mapped = _json_line(capsys.readouterr().out)
    entry = mapped["results"][0]
    # a model with nothing pruned (the control) is mapped as dense
    assert entry.get("crossbars_pruned", entry["total_crossbars"]) == result["crossbars_pruned"]
    if packing == "network":
        assert entry["packings"]["network"]["total_crossbars"] == result["network_packing"]["crossbars"]


@pytest.mark.data
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_evaluate_reproduces_the_accuracy(folder, capsys):
    if not data.SYSTEM_FASHION_MNIST.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    result = json.loads((folder / "result.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(folder / "model.pt"), "--dataset", "fashion-mnist", "--json"]) == 0
    evaluated = _json_line(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(result["accuracy_pruned"], abs=1e-4)
