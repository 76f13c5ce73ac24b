"""Run names, seeds and the choice of headline compressions on the validation split."""

import dataclasses

import pytest

from pimprune.errors import ConfigError
from pimprune.workflows.config import PruneConfig
from pimprune.workflows.headline import (
    HEADLINES,
    Headline,
    References,
    cells,
    claims,
    headline_table,
    parse_run_name,
    run_name,
    select,
    with_seeds,
)

FIELDS = [f.name for f in dataclasses.fields(PruneConfig)]


def _result(val, test, compression, network=None, dense_val=0.95, dense=0.93):
    return {"accuracy_val": val, "accuracy_pruned": test, "accuracy_dense": dense, "accuracy_dense_val": dense_val,
            "compression": compression, "crossbars_pruned": int(700 / compression),
            "network_packing": {"compression": network} if network else None}


@pytest.mark.parametrize("name", ["kd@subrow@16", "kd@subrow@16@packing=network@seed=2", "control", "control@kd",
                                  "capacity@subrow@16@kd", "capacity@subrow@16@kd@seed=1",
                                  "capacity@subrow@12@kd@packing=network@seed=2",
                                  "kd@subrow@16@train_noise=0.05@weight_bits=4"])
def test_run_names_round_trip(name):
    assert run_name(parse_run_name(name, FIELDS)) == name


@pytest.mark.parametrize("name", ["kd@subrow", "xx@subrow@16", "kd@subrow@x", "kd@subrow@16@nofield=1",
                                  "kd@subrow@16@seed=a", "control@kd@x", "kd@subrow@16@weight_bits=x"])
def test_bad_run_names_are_config_errors(name):
    with pytest.raises(ConfigError, match="run name"):
        parse_run_name(name, FIELDS)


def test_quantization_fields_become_a_typed_quant_config():
    fields = parse_run_name("kd@subrow@16@weight_bits=4@train_noise=0.05@packing=network", FIELDS).prune_fields(
        12, "32x32")
    config = PruneConfig(**fields)
    assert (config.quant.weight_bits, config.quant.train_noise, config.packing) == (4, 0.05, "network")
    with pytest.raises(ConfigError, match="quant must be"):
        PruneConfig(quant="4")


def test_a_capacity_row_keeps_the_fields_of_the_run_it_matches():
    run = parse_run_name("capacity@subrow@12@kd@packing=network", FIELDS)
    assert run.family == "capacity@kd@subrow@packing=network"
    assert run_name(dataclasses.replace(run, kind="prune")) == "kd@subrow@12@packing=network"
    assert with_seeds([run_name(run)], [1], FIELDS) == ["capacity@subrow@12@kd@packing=network@seed=1"]


def test_with_seeds_expands_each_name_and_keeps_explicit_seeds():
    names = with_seeds(["kd@subrow@8", "kd@row@4@seed=5"], [0, 1, 2], FIELDS)
    assert names == ["kd@subrow@8", "kd@subrow@8@seed=1", "kd@subrow@8@seed=2", "kd@row@4@seed=5"]


def test_seeds_of_one_target_form_one_cell_with_mean_and_std():
    results = {"kd@subrow@8": _result(0.945, 0.925, 8.0), "kd@subrow@8@seed=1": _result(0.943, 0.921, 8.0),
               "kd@subrow@16": _result(0.930, 0.915, 16.0)}
    ref = References.from_results(results)
    assert (ref.val, ref.test) == (0.95, 0.93)
    got = {c.target: c for c in cells(results, FIELDS, ref)}
    assert got[8.0].seeds == 2 and got[8.0].val_loss == [0.5, 0.7] and got[8.0].test_loss == [0.5, 0.9]
    summary = got[8.0].as_dict()
    assert summary["test_loss_mean"] == pytest.approx(0.7) and summary["test_loss_std"] == pytest.approx(0.283, 1e-2)


def test_selection_reads_validation_not_test():
    # 16x is within 1 point on test but not on validation: the choice must not take it
    results = {"kd@subrow@8": _result(0.945, 0.91, 8.0), "kd@subrow@16": _result(0.935, 0.925, 16.0)}
    all_cells = cells(results, FIELDS, References.from_results(results))
    row = Headline("r", ("prune@kd@subrow",), 1.0)
    chosen = select(all_cells, row)
    assert chosen.target == 8.0
    assert not claims(chosen, row)  # its mean test loss (2 points) is over the bound


def test_control_raises_the_reference():
    results = {"control": _result(0.96, 0.94, 1.0), "kd@subrow@8": _result(0.95, 0.93, 8.0)}
    ref = References.from_results(results)
    assert (ref.val, ref.test) == (0.96, 0.94)


def test_network_rows_rank_by_network_compression():
    results = {"kd@subrow@12@packing=network": _result(0.945, 0.925, 7.0, 12.0),
               "kd@subrow@24@packing=network": _result(0.944, 0.925, 9.0, 24.0)}
    all_cells = cells(results, FIELDS, References.from_results(results))
    packed = next(h for h in HEADLINES if h.name == "packed-1pt")
    assert select(all_cells, packed).network_compression == 24.0
    assert select(all_cells, next(h for h in HEADLINES if h.name == "subrow-1pt")) is None


def test_a_cell_reports_the_mean_compression_of_its_seeds():
    results = {"kd@subrow@8": _result(0.945, 0.925, 8.0), "kd@subrow@8@seed=1": _result(0.943, 0.921, 8.5)}
    (cell,) = cells(results, FIELDS, References.from_results(results))
    assert cell.compression == pytest.approx(8.25) and cell.network_compression is None


def test_a_row_chooses_among_cells_with_enough_seeds_only():
    # 8x has three seeds within the bound, 10x one seed within it: with min_seeds=3 the row takes 8x
    results = {"kd@row@8": _result(0.945, 0.925, 8.0), "kd@row@8@seed=1": _result(0.944, 0.925, 8.0),
               "kd@row@8@seed=2": _result(0.946, 0.925, 8.0), "kd@row@10": _result(0.947, 0.925, 10.0)}
    all_cells = cells(results, FIELDS, References.from_results(results))
    coarse = {r["row"]: r for r in headline_table(all_cells, min_seeds=3)}["coarse-1pt"]
    assert coarse["chosen"]["target"] == 8.0 and coarse["chosen"]["seeds"] == 3
    assert {r["row"]: r for r in headline_table(all_cells)}["coarse-1pt"]["chosen"]["target"] == 10.0


def test_crossbar_grain_with_the_output_guard_is_a_coarse_candidate():
    results = {"kd@crossbar@8@guard=outputs": _result(0.945, 0.925, 8.0),
               "kd@crossbar@8@guard=outputs@packing=network": _result(0.945, 0.925, 7.0, 8.0)}
    rows = {r["row"]: r for r in headline_table(cells(results, FIELDS, References.from_results(results)))}
    assert rows["coarse-1pt"]["chosen"]["family"] == "prune@kd@crossbar@guard=outputs"
    assert rows["packed-coarse-1pt"]["chosen"]["family"] == "prune@kd@crossbar@guard=outputs@packing=network"
