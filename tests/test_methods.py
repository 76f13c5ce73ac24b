import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.pruning import methods
from pimprune.workflows import pipeline
from pimprune.workflows.pipeline import METHODS, PruneConfig, auto_method


def test_auto_method_takes_the_largest_measured_budget_not_above(monkeypatch):
    monkeypatch.setattr(methods, "AUTO_METHOD_BY_EPOCHS", ((0, "oneshot"), (6, "admm"), (20, "gradual")))
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


def _session(updates_per_epoch: int = 2, steps: int = 4, prune_epochs: int = 1):
    import torchvision

    from pimprune.pruning.budgets import Projector, PruneTarget
    from pimprune.pruning.saliency import get_saliency

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    projector = Projector(model, PruneTarget("subrow", "32x32", 8.0, allocation="global"), torch.zeros(1, 3, 32, 32))
    return methods.PruneSession(
        model=model,
        projector=projector,
        saliency=get_saliency("magnitude"),
        factors_at=lambda epoch: {},
        broadcast=lambda t: t,
        prune_epochs=prune_epochs,
        first_epoch=0,
        steps_per_epoch=steps,
        updates_per_epoch=updates_per_epoch,
    )


def test_methods_are_registered_objects():
    assert set(methods.PRUNE_METHODS.names()) == {"admm", "gradual", "oneshot"}
    assert set(METHODS) == {"auto", *methods.PRUNE_METHODS.names()}
    assert methods.resolve_method("auto", 2) == "oneshot"
    with pytest.raises(ConfigError, match="pruning method"):
        methods.resolve_method("lottery", 2)
    session = _session()
    oneshot = methods.create_method("oneshot", session)
    assert oneshot.epochs(2, 3) == (0, 5)  # no pruning epochs: they are spent retraining
    assert methods.create_method("gradual", session).epochs(2, 3) == (2, 3)


def test_a_new_method_is_one_registered_class(monkeypatch):
    """A newcomer's method: one class in the registry, and the configuration accepts it."""
    registry = methods.Registry("pruning method")
    for name in methods.PRUNE_METHODS.names():
        registry.add(name, methods.PRUNE_METHODS.get(name))
    monkeypatch.setattr(methods, "PRUNE_METHODS", registry)

    @registry.register("rewind")
    class Rewind(methods.PruneMethod):
        name = "rewind"

    assert PruneConfig(method="rewind").method == "rewind"
    assert isinstance(methods.create_method("rewind", _session()), Rewind)


def test_gradual_retargets_one_projector_and_hard_prunes_at_the_final_target():
    session = _session()
    gradual = methods.create_method("gradual", session)
    gradual.setup(None)
    projector = session.projector
    optimizer = torch.optim.SGD(session.model.parameters(), lr=0.0)
    gradual.attach(optimizer)
    budgets = []
    for _ in range(4):
        optimizer.step()
        budgets.append(projector.network_budget)
    assert gradual.steps == 4
    assert budgets[1] > budgets[-1]  # half-way along the ramp the budget is larger
    assert budgets[-1] == budgets[0]  # the ramp ends at the target the projector was built for
    assert session.projector is projector
    masks = gradual.hard_prune()
    assert projector.target.target_compression == 8.0
    assert projector.total_crossbars(masks) <= projector.network_budget
    assert gradual.state_dict()["gradual_steps"] == 4


def test_cli_defaults_and_choices_come_from_the_configs_and_registries():
    from pimprune.cli import build_parser
    from pimprune.cli.common import run_config
    from pimprune.cli.prune_cmd import prune_config
    from pimprune.workflows.config import RunConfig

    parser = build_parser()
    args = parser.parse_args(["prune", "--out", "x"])
    assert prune_config(args) == PruneConfig()
    assert args.dense_epochs == RunConfig().epochs
    assert run_config(args, args.dense_epochs) == RunConfig(out="x")
    train = parser.parse_args(["train", "--out", "x"])
    assert train.epochs == RunConfig().epochs
    with pytest.raises(SystemExit):
        parser.parse_args(["prune", "--out", "x", "--method", "lottery"])
