import pytest
import torch

from pimprune.errors import ConfigError
from pimprune.pruning import methods
from pimprune.pruning.methods import AUTO_METHOD_BY_EPOCHS, auto_method, base
from pimprune.registry import Registry
from pimprune.workflows.config import PruneConfig
from pimprune.workflows.pipeline import METHODS


def test_auto_method_takes_the_largest_measured_budget_not_above(monkeypatch):
    monkeypatch.setattr(base, "AUTO_METHOD_BY_EPOCHS", ((0, "oneshot"), (6, "admm"), (20, "gradual")))
    assert auto_method(0) == "oneshot"
    assert auto_method(5) == "oneshot"
    assert auto_method(6) == "admm"
    assert auto_method(19) == "admm"
    assert auto_method(40) == "gradual"


def test_auto_table_names_real_methods():
    for _, name in AUTO_METHOD_BY_EPOCHS:
        assert name in METHODS and name != "auto"


def test_bn_recalibrate_validated():
    with pytest.raises(ConfigError):
        PruneConfig(bn_recalibrate=-1)


def _session(updates_per_epoch: int = 2, steps: int = 4, prune_epochs: int = 1):
    import torchvision

    from pimprune.pruning.projector import Projector
    from pimprune.pruning.saliency import get_saliency
    from pimprune.pruning.target import PruneTarget

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


@pytest.fixture
def own_registry(monkeypatch):
    """A copy of the method registry, so that a test's methods stay in the test."""
    registry = Registry("pruning method")
    for name in base.PRUNE_METHODS.names():
        registry.add(name, base.PRUNE_METHODS.get(name))
    monkeypatch.setattr(base, "PRUNE_METHODS", registry)
    return registry


def test_a_new_method_is_one_registered_class(own_registry):
    """A newcomer's method: one class in the registry, and the configuration accepts it."""

    @methods.register_method
    class Rewind(methods.PruneMethod):
        name = "rewind"

    assert "rewind" in own_registry
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


def test_method_settings_derive_the_config_and_the_options():
    from pimprune.cli import build_parser
    from pimprune.cli.prune_cmd import prune_config
    from pimprune.pruning.admm import ADMMConfig
    from pimprune.workflows.config import config_dict

    assert methods.settings_types() == {"admm": ADMMConfig}
    assert PruneConfig().settings == {"admm": ADMMConfig()}
    # written as before: the settings under the method's name, in the field's place
    written = config_dict(PruneConfig())
    assert "settings" not in written
    assert written["admm"] == {"rho": 1e-3, "rho_final": 1e-1, "update_every": 100}
    keys = list(written)
    assert keys[keys.index("retrain_lr") + 1 : keys.index("retrain_lr") + 3] == ["admm", "updates_per_epoch"]
    assert PruneConfig(settings={"admm": written["admm"]}) == PruneConfig()  # dicts are read back
    with pytest.raises(ConfigError, match="unknown method"):
        PruneConfig(settings={"lottery": {}})
    parser = build_parser()
    args = parser.parse_args(["prune", "--out", "x", "--rho", "0.5"])
    assert prune_config(args).settings["admm"] == ADMMConfig(rho=0.5, rho_final=0.5)  # raised to --rho
    args = parser.parse_args(["prune", "--out", "x", "--rho-final", "0.2"])
    assert prune_config(args).settings["admm"] == ADMMConfig(rho_final=0.2)
    with pytest.raises(SystemExit):
        parser.parse_args(["prune", "--out", "x", "--update-every", "3"])  # derived, not an option


def test_the_design_doc_example_method_runs_through_the_cli(own_registry, tmp_path, capsys):
    """The complete minimal method of docs/design.md ("Adding a pruning method"), run by ``pimprune prune``."""
    import json
    from dataclasses import dataclass

    from pimprune.cli import build_parser, main
    from pimprune.pruning.masking import apply_masks
    from pimprune.pruning.methods import PruneMethod, register_method, setting
    from pimprune.pruning.methods.gradual import gradual_target

    @dataclass(frozen=True)
    class TwoStepSettings:
        first_step: float = setting(0.5, "share of the pruning ramp taken at the start", positive=True)

    @register_method
    class TwoStep(PruneMethod):
        """Prune part of the way before the pruning epochs, the rest at the hard prune."""

        name = "twostep"
        Settings = TwoStepSettings

        def setup(self, resumed):
            super().setup(resumed)
            s = self.session
            if resumed is None:  # a resumed run has its masks back already
                s.projector.retarget(gradual_target(s.target, self.settings.first_step))
                apply_masks(s.model, s.project(s.weights(), self.factors))

    assert "--first-step" in build_parser()._subparsers._group_actions[0].choices["prune"].format_help()
    out = tmp_path / "run"
    code = main([
        "prune", "--model", "resnet18", "--width", "0.25", "--dataset", "synthetic", "--limit-train", "64",
        "--limit-test", "32", "--batch-size", "16", "--device", "cpu", "--crossbar", "32x32",
        "--target-compression", "4", "--dense-epochs", "1", "--prune-epochs", "1", "--retrain-epochs", "1",
        "--saliency", "magnitude", "--method", "twostep", "--first-step", "0.25", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "twostep"
    assert result["config"]["prune"]["twostep"] == {"first_step": 0.25}
    assert result["epochs"] == {"dense": 1, "twostep": 1, "retrain": 1}
    assert result["crossbars_pruned"] * 4 <= result["crossbars_dense"]
