import pytest

from pimprune import pipeline
from pimprune.errors import ConfigError
from pimprune.pipeline import METHODS, PruneConfig, auto_method


def test_auto_method_takes_the_largest_measured_budget_not_above(monkeypatch):
    monkeypatch.setattr(pipeline, "AUTO_METHOD_BY_EPOCHS", ((0, "oneshot"), (6, "admm"), (20, "gradual")))
    assert auto_method(0) == "oneshot"
    assert auto_method(5) == "oneshot"
    assert auto_method(6) == "admm"
    assert auto_method(19) == "admm"
    assert auto_method(40) == "gradual"


def test_auto_table_names_real_methods():
    for _, name in pipeline.AUTO_METHOD_BY_EPOCHS:
        assert name in METHODS and name != "auto"


def test_bn_recalibrate_validated():
    with pytest.raises(ConfigError):
        PruneConfig(bn_recalibrate=-1)
