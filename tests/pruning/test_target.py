import pytest
import torch

from pimprune.errors import ConfigError, UnknownNameError
from pimprune.geometry import Crossbar
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget

EXAMPLE = torch.zeros(1, 3, 32, 32)


@pytest.mark.parametrize("target", [0.5, 0.0, -2.0, float("nan"), float("inf"), "8", True])
def test_bad_target_compression(target):
    with pytest.raises(ConfigError, match="target compression"):
        PruneTarget("subrow", Crossbar(32, 32), target)


def test_bad_target_fields():
    with pytest.raises(UnknownNameError):
        PruneTarget("diagonal", Crossbar(32, 32), 4.0)
    with pytest.raises(ConfigError, match="allocation"):
        PruneTarget("subrow", Crossbar(32, 32), 4.0, "greedy")
    with pytest.raises(ConfigError, match="budgets file"):
        PruneTarget("subrow", Crossbar(32, 32), 4.0, "file")
    with pytest.raises(ConfigError, match="budgets file"):
        PruneTarget("subrow", Crossbar(32, 32), 4.0, "uniform", budgets_file="x.yaml")
    assert PruneTarget("subrow", "64x32", 1).crossbar == Crossbar(64, 32)


def test_unit_costs_are_checked(narrow):
    with pytest.raises(ConfigError, match="global"):
        PruneTarget("subrow", "32x32", 4.0, allocation="uniform", unit_costs={"conv1": 2.0})
    with pytest.raises(ConfigError, match="> 0"):
        PruneTarget("subrow", "32x32", 4.0, allocation="global", unit_costs={"conv1": 0.0})
    with pytest.raises(ConfigError, match="unmapped"):
        Projector(narrow, PruneTarget("subrow", "32x32", 4.0, allocation="global", unit_costs={"nope": 2.0}), EXAMPLE)


def test_keep_dense_accepts_names_and_leaves_them_untouched(narrow, nweights, make_projector):
    proj = make_projector(
        narrow, "subrow", "32x32", 6.0, keep_dense=("first", "last", "layer1.0.conv1")
    )
    assert proj.kept_dense == ("conv1", "fc", "layer1.0.conv1")
    assert "layer1.0.conv1.weight" not in proj(nweights)
