import csv
import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from pimprune.cli import main
from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar, grid
from pimprune.hardware.config import HardwareConfig
from pimprune.hardware.cost import crossbar_area_um2, layer_mvms
from pimprune.mapping.counting import count
from pimprune.mapping.matrices import extract_layers
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget
from pimprune.workflows.mapping_cost import network_packing
from pimprune.workflows.sweep import (
    ProjectionPruner,
    Pruned,
    load_sweep_model,
    retrained_pruner,
    run_sweep,
    sweet_spots,
)
from pimprune.workflows.sweep_output import write_outputs

SHAPE = (3, 8, 8)
EXAMPLE = torch.zeros(1, *SHAPE)
TINY = ["resnet20", "--input-size", "16", "--num-classes", "10", "--width", "0.25"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    with torch.no_grad():  # uneven row scales, so the projection has something to choose
        for m in model:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(torch.rand(m.weight.shape[1], 1, 1) * 3)
    return model


def _share(pruner: ProjectionPruner, masks: dict[str, torch.Tensor]) -> float:
    kept = 0.0
    for lay in pruner.layers:
        m = pruner.matrices[lay.name].double()
        kept += float((m * m * masks[lay.name]).sum())
    return kept / pruner.total_energy


@pytest.mark.parametrize("pattern", ["subrow", "subcolumn", "row"])
def test_fast_projection_equals_projector(pattern):
    model = _net()
    xbar = Crossbar(8, 4)
    pruner = ProjectionPruner(model, pattern, EXAMPLE, target_compression=1.8)
    got = pruner(xbar)
    proj = Projector(model, PruneTarget(pattern, xbar, 1.8, allocation="global"), EXAMPLE)
    ref = proj.project_model(model)
    for lay in extract_layers(model):
        ref_mask = lay.matrix(ref[f"{lay.name}.weight"]) if f"{lay.name}.weight" in ref else None
        if ref_mask is None:  # kept dense
            assert bool(got.masks[lay.name].all())
        else:
            assert torch.equal(got.masks[lay.name], ref_mask), lay.name
    assert got.target_compression >= 1.8 - 1e-9
    assert sum(proj.layer_crossbars(ref).values()) <= proj.network_budget


def _resnet20() -> nn.Module:
    model, _, _ = load_sweep_model("resnet20", num_classes=10, input_size=16, width=0.25)
    torch.manual_seed(0)
    with torch.no_grad():  # uneven row scales, so the guard and the ranking both matter
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(torch.rand(m.weight.shape[1], 1, 1) * 3)
    return model


@pytest.mark.parametrize("pattern", ["subrow", "subcolumn"])
@pytest.mark.parametrize("compression", [16.0, 32.0])
@pytest.mark.parametrize("geometry", ["4x4", "8x8"])
def test_sweep_masks_equal_projector_at_high_compression(pattern, compression, geometry):
    # at 16x and 32x the Projector's keep-every-layer guard decides which layers survive;
    # a sweep with a ranking of its own empties layers the pruner keeps
    model = _resnet20()
    example = torch.zeros(1, 3, 16, 16)
    xbar = Crossbar.parse(geometry)
    info = Projector(model, PruneTarget(pattern, xbar, 1.0), example)
    if info.dense_total / compression < info.kept_total:
        pytest.skip("out of reach on this geometry")
    got = ProjectionPruner(model, pattern, example, target_compression=compression)(xbar)
    proj = Projector(model, PruneTarget(pattern, xbar, compression, allocation="global"), example)
    ref = proj(dict(model.named_parameters()))
    for lay in extract_layers(model):
        key = f"{lay.name}.weight"
        if key in ref:
            assert torch.equal(got.masks[lay.name], lay.matrix(ref[key])), lay.name
            # the guard: a layer is emptied only when the budget has fewer crossbars than layers
            assert bool(got.masks[lay.name].any()) or proj.prunable_budget < len(proj.layers), lay.name
        else:
            assert bool(got.masks[lay.name].all())
    assert got.silenced_outputs == proj.silenced_outputs()


@pytest.mark.parametrize("pattern", ["subrow", "filter"])
def test_keep_energy_budget_is_minimal(pattern):
    model = _net(1)
    xbar = Crossbar(8, 8)
    target = 0.8
    pruner = ProjectionPruner(model, pattern, EXAMPLE, keep_energy=target)
    got = pruner(xbar)
    assert got.kept_energy >= target
    assert _share(pruner, got.masks) == pytest.approx(got.kept_energy, rel=1e-6)
    # one crossbar fewer (the next larger compression) keeps less than the target
    info = Projector(model, PruneTarget(pattern, xbar, 1.0, allocation="uniform"), EXAMPLE)
    budget = round(info.dense_total / got.target_compression)
    tighter = Projector(
        model, PruneTarget(pattern, xbar, info.dense_total / (budget - 1), allocation="global"), EXAMPLE
    )
    masks = tighter.project_model(model)
    by_layer = {
        lay.name: (
            lay.matrix(masks[f"{lay.name}.weight"])
            if f"{lay.name}.weight" in masks
            else torch.ones(lay.groups, lay.rows, lay.cols, dtype=torch.bool)
        )
        for lay in extract_layers(model)
    }
    assert _share(pruner, by_layer) < target


def test_filter_pattern_with_batch_norm():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    got = ProjectionPruner(model, "filter", EXAMPLE, target_compression=1.5)(Crossbar(8, 8))
    assert set(got.masks) == {lay.name for lay in extract_layers(model)}
    xb = Crossbar(8, 8)
    pruned = sum(count(m, xb, "filter") for m in got.masks.values())
    dense = sum(count(torch.ones(lay.groups, lay.rows, lay.cols), xb, "dense") for lay in extract_layers(model))
    assert pruned < dense


def test_pruned_model_is_built_lazily_and_matches_masks():
    model = _net()
    before = [p.clone() for p in model.parameters()]
    got = ProjectionPruner(model, "subrow", EXAMPLE, keep_energy=0.7)(Crossbar(8, 4))
    assert got.built is None
    pruned = got.model
    for lay in extract_layers(pruned):
        assert torch.equal(lay.matrix() != 0, got.masks[lay.name])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bad_criteria():
    model = _net()
    with pytest.raises(ConfigError, match="exactly one"):
        ProjectionPruner(model, "subrow", EXAMPLE, keep_energy=0.9, target_compression=2.0)
    with pytest.raises(ConfigError, match="keep-energy"):
        ProjectionPruner(model, "subrow", EXAMPLE, keep_energy=0.0)
    with pytest.raises(ConfigError, match="target-compression"):
        ProjectionPruner(model, "subrow", EXAMPLE, keep_energy=None, target_compression=0.5)


def _sweep(keep=0.8, geoms=None):
    model = _net()
    geoms = geoms or grid([4, 8, 16], [4, 8, 16])
    pruner = ProjectionPruner(model, "subrow", EXAMPLE, keep_energy=keep)
    return model, run_sweep(
        model,
        geoms,
        HardwareConfig(),
        SHAPE,
        pruner,
        pattern="subrow",
        criterion={"keep_energy": keep},
        model_label="tiny",
        progress=False,
    )


def test_sweep_results_schema_and_sweet_spot():
    model, res = _sweep()
    d = res.as_dict()
    assert d["mode"] == "projection" and d["model"] == "tiny" and len(d["results"]) == 9
    keys = {
        "crossbar",
        "crossbars_dense",
        "crossbars_pruned",
        "compression",
        "energy_nj",
        "area_mm2",
        "latency_us",
        "edp",
        "energy_breakdown",
    }
    for r in d["results"]:
        assert keys <= set(r)
        assert r["compression"] == pytest.approx(r["crossbars_dense"] / r["crossbars_pruned"], abs=1e-3)
        assert r["edp"] == pytest.approx(r["energy_nj"] * r["latency_us"], rel=1e-3)
        assert sum(r["energy_breakdown"].values()) == pytest.approx(r["energy_nj"], rel=1e-3)
        assert r["kept_energy"] >= 0.8
        assert r["energy_nj"] <= r["energy_dense_nj"]
    for metric, field in (("energy", "energy_nj"), ("area", "area_mm2"), ("edp", "edp")):
        best = min(res.results, key=lambda g: getattr(g, field))
        assert d["sweet_spot"][metric] == str(best.crossbar)
    json.dumps(d)  # serialisable


def test_sweep_costs_the_network_packing_it_reports_and_the_tiles():
    model, res = _sweep(geoms=[Crossbar(8, 4), Crossbar(4, 16), Crossbar(16, 16)])
    pruner = ProjectionPruner(model, "subrow", EXAMPLE, keep_energy=0.8)
    hw = HardwareConfig()
    for r in res.results:
        d = r.as_dict()
        network, chip = d["network"], d["chip"]
        assert network["crossbars"] == r.crossbars_network <= r.crossbars_pruned
        # its area is that of the crossbars the placement uses (plus index and adders)
        built = crossbar_area_um2(hw, r.crossbar, [1] * r.crossbars_network, [1] * r.crossbars_network)
        assert network["area_breakdown"]["adc"] == pytest.approx(built["adc"] / 1e6, abs=1e-7)
        assert network["latency_layer_by_layer_us"] <= network["latency_pipelined_us"]
        masks = pruner(r.crossbar).masks
        placement, cost = network_packing(masks, r.crossbar, "subrow", hw, layer_mvms(model, SHAPE))
        assert cost.energy_nj == pytest.approx(network["energy_nj"], abs=1e-3)
        for key in ("dense", "per_layer", "network"):
            tiles = chip[key]["tiles"]
            assert tiles["shared"] <= tiles["tile-per-layer"]
            assert chip[key]["area_built_mm2"]["tile-per-layer"] >= chip[key]["area_occupied_mm2"] - 1e-6
        assert chip["per_layer"]["crossbars"] == r.crossbars_pruned and chip["dense"]["crossbars"] == r.crossbars_dense


def test_sweep_counts_match_counting():
    model, res = _sweep(geoms=[Crossbar(8, 4), Crossbar(4, 16)])
    pruner = ProjectionPruner(model, "subrow", EXAMPLE, keep_energy=0.8)
    for r in res.results:
        got = pruner(r.crossbar)
        layers = extract_layers(got.model)
        assert r.crossbars_pruned == sum(count(lay.matrix() != 0, r.crossbar, "subrow") for lay in layers)
        assert r.crossbars_dense == sum(
            count(torch.ones(lay.groups, lay.rows, lay.cols), r.crossbar, "dense") for lay in layers
        )


def test_sweet_spots_on_ties_take_the_first():
    _, res = _sweep(geoms=[Crossbar(8, 8), Crossbar(8, 8)])
    assert sweet_spots(res.results) == {"energy": "8x8", "area": "8x8", "edp": "8x8"}
    assert sweet_spots([]) == {}


def test_write_outputs(tmp_path):
    _, res = _sweep(geoms=[Crossbar(4, 8), Crossbar(8, 8)])
    files = write_outputs(res, tmp_path / "out")
    names = {f.name for f in files}
    assert names == {"sweep.json", "sweep.csv", "sweep_energy.png", "sweep_breakdown.png"}
    rows = list(csv.DictReader((tmp_path / "out" / "sweep.csv").open()))
    assert [r["crossbar"] for r in rows] == ["4x8", "8x8"]
    assert float(rows[0]["energy_nj"]) == pytest.approx(res.results[0].energy_nj, rel=1e-3)
    assert float(rows[0]["energy_network_nj"]) == pytest.approx(res.results[0].network["energy_nj"], rel=1e-3)
    assert int(rows[0]["tiles_shared"]) <= int(rows[0]["tiles_tile_per_layer"])
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["sweet_spot"] == res.sweet_spot
    assert (tmp_path / "out" / "sweep_energy.png").read_bytes()[:4] == b"\x89PNG"


def test_retrained_hook(monkeypatch, tmp_path):
    import pimprune.workflows.pipeline as pipeline
    from pimprune.training.checkpoint import save_model
    from pimprune.training.models import ModelSpec, create_model

    calls = []
    spec = ModelSpec("resnet20", num_classes=10, input_size=16, width=0.25)

    def fake_run_prune(run, prune):
        calls.append((run.out, prune.crossbar, prune.target_compression))
        model = create_model(spec, seed=0)
        with torch.no_grad():
            for lay in extract_layers(model)[1:-1]:
                lay.module.weight[:, ::2] = 0
        save_model(model, spec, run.out)
        return {}

    monkeypatch.setattr(pipeline, "run_prune", fake_run_prune)
    model = create_model(spec, seed=0)
    pruner = retrained_pruner(
        "resnet20", "subrow", tmp_path, compression_for=lambda x: 2.0, run_options={"width": 0.25}
    )
    res = run_sweep(
        model,
        [Crossbar(8, 8)],
        HardwareConfig(),
        (3, 16, 16),
        pruner,
        pattern="subrow",
        criterion={"keep_energy": 0.9},
        mode="retrained",
        progress=False,
    )
    assert calls == [(str(tmp_path / "8x8"), "8x8", 2.0)]
    r = res.as_dict()["results"][0]
    assert res.mode == "retrained" and r["kept_energy"] is None
    assert r["crossbars_pruned"] < r["crossbars_dense"]


def test_retrained_mode_without_pipeline(monkeypatch):
    monkeypatch.setitem(sys.modules, "pimprune.workflows.pipeline", None)
    with pytest.raises(ConfigError, match="retrained mode needs"):
        retrained_pruner("resnet20", "subrow", "out", compression_for=lambda x: 2.0)


def test_pruned_needs_a_model():
    with pytest.raises(ValueError):
        _ = Pruned(1.0, 1.0).model


def test_load_sweep_model_name_and_checkpoint(tmp_path):
    from pimprune.training.checkpoint import save_model
    from pimprune.training.models import ModelSpec

    model, label, shape = load_sweep_model("resnet20", num_classes=10, input_size=16, width=0.25)
    assert shape == (3, 16, 16) and "resnet20" in label
    save_model(model, ModelSpec("resnet20", num_classes=10, input_size=16, width=0.25), tmp_path / "ck")
    again, label2, shape2 = load_sweep_model(str(tmp_path / "ck" / "model.pt"))
    assert shape2 == (3, 16, 16) and "resnet20" in label2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


# --------------------------------------------------------------------------- CLI


def test_cli_sweep_json_and_out(tmp_path, capsys):
    out = tmp_path / "sw"
    rc = main(["sweep", *TINY, "--rows", "8,16", "--cols", "8,16", "--json", "--out", str(out)])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "projection" and d["criterion"] == {"keep_energy": 0.9}
    assert [r["crossbar"] for r in d["results"]] == ["8x8", "8x16", "16x8", "16x16"]
    energies = {r["crossbar"]: r["energy_nj"] for r in d["results"]}
    assert d["sweet_spot"]["energy"] == min(energies, key=energies.get)
    assert {p.name for p in out.iterdir()} >= {"sweep.csv", "sweep.json", "sweep_energy.png", "sweep_breakdown.png"}


def test_cli_sweep_table_and_target_compression(capsys):
    rc = main(
        [
            "sweep",
            *TINY,
            "--crossbar",
            "8x8",
            "--crossbar",
            "16x8,8x16",
            "--target-compression",
            "2",
            "--pattern",
            "subcolumn",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "projection sweep" in text and "sweet spot" in text
    assert text.count("x8 ") + text.count("x16 ") >= 3
    rc = main(["sweep", *TINY, "--crossbar", "8x8", "--target-compression", "2", "--json"])
    d = json.loads(capsys.readouterr().out)
    r = d["results"][0]
    assert r["crossbars_pruned"] <= math.floor(r["crossbars_dense"] / 2)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--rows", "32,abc"], "invalid --rows value 'abc'"),
        (["--cols", "0"], "invalid --cols value '0'"),
        (["--crossbar", "8y8"], "invalid crossbar geometry"),
        (["--crossbar", "8x8", "--rows", "8"], "either --crossbar or --rows"),
        (["--hardware", "BAD"], "unknown hardware field 'adc.foo'"),
        (["--hardware", "nothing-here"], "no hardware preset or file"),
        (["--keep-energy", "1.5"], "keep-energy must be in"),
        (["--pattern", "diagonal"], "unknown pattern"),
        (["--retrain"], "retrained mode needs --out"),
    ],
)
def test_cli_sweep_errors_one_line_exit_2(tmp_path, capsys, args, match):
    args = [a.replace("BAD", str(tmp_path / "bad.yaml")) for a in args]
    (tmp_path / "bad.yaml").write_text("adc: {foo: 1}\n")
    assert main(["sweep", *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pimprune sweep: error:")
    assert match in err


def test_cli_sweep_error_exit_status_of_the_process():
    proc = subprocess.run(
        [sys.executable, "-m", "pimprune", "sweep", *TINY, "--rows", "8,x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_the_projection_runs_on_one_thread_and_restores_the_count(monkeypatch):
    inside = []
    real = ProjectionPruner._project

    def spy(self, xbar, compression):
        inside.append(torch.get_num_threads())
        return real(self, xbar, compression)

    monkeypatch.setattr(ProjectionPruner, "_project", spy)
    torch.set_num_threads(2)
    try:
        ProjectionPruner(_net(), "subrow", EXAMPLE, keep_energy=0.8)(Crossbar(8, 8))
        assert inside and set(inside) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)  # the module's fixture setting
