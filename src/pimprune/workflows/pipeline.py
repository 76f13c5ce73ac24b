"""The train / prune / evaluate pipeline behind the command line.

``run_train`` trains a dense baseline; ``run_prune`` prunes a dense model to a crossbar budget with a
registered method (:mod:`pimprune.pruning.methods`) and retrains it with masks, every method getting the
same epochs. Every input is checked before anything is written; each epoch ends with an atomic
``checkpoint.pt`` from which ``resume=True`` continues to the same result as an uninterrupted run. Under
``torchrun`` the model runs in DDP and only rank 0 writes.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from pimprune.errors import CheckpointError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count_network
from pimprune.mapping.matrices import extract_layers
from pimprune.numeric import json_ratio
from pimprune.pruning.masking import apply_masks, get_masks
from pimprune.pruning.methods import (
    PruneMethod,
    PruneSession,
    create_method,
    method_choices,
    resolve_method,
)
from pimprune.pruning.patterns import get_pattern
from pimprune.pruning.projector import Projector
from pimprune.pruning.quantization import attach_quantization
from pimprune.pruning.saliency import calibration_batches, get_saliency, resolve_saliency
from pimprune.pruning.target import PruneTarget
from pimprune.training.checkpoint import (
    FINISHED,
    load_model,
    open_output,
    plain_state_dict,
    set_rng_state,
)
from pimprune.training.loops import Distillation, evaluate, recalibrate_batchnorm
from pimprune.training.runtime import init_runtime
from pimprune.workflows.config import PruneConfig, RunConfig, config_dict, run_identity
from pimprune.workflows.mapping_cost import chip_entry, packing_bounds
from pimprune.workflows.stages import (
    Checkpointer,
    RunContext,
    cpu_clone,
    dump_rank_state,
    finished,
    first_epoch_shard,
    loader_options,
    new_model,
    prepare,
    resolved,
    restore_model,
    run_result,
    run_stage,
    validation_accuracy,
    write_run,
)

#: Pruning methods a user may name; ``auto`` picks by the epoch budget (see :func:`auto_method`).
METHODS = method_choices()

__all__ = ["METHODS", "PruneChoice", "PruneRun", "evaluation_loader", "split_loader", "run_train", "run_prune",
           "run_evaluate"]


# --------------------------------------------------------------------------- train


def run_train(run: RunConfig) -> dict:
    """Train a dense baseline; writes ``model.pt``, ``model.json``, ``result.json``.

    Returns:
        The result dictionary also written to ``result.json`` (on every rank).
    """
    t0 = time.time()
    rt = init_runtime(run.device)
    try:
        ctx = prepare(run, rt)
        if ctx.status == FINISHED:
            return finished(ctx)
        model = new_model(ctx)
        ctx.identity = {"kind": "train", "run": run_identity(run), "world_size": rt.world_size}
        rt.on_main(lambda: open_output(ctx.out))
        ck = Checkpointer(ctx)
        if ck.state:
            restore_model(model, ck)
        run_stage(ctx, ck, model, "dense", run.epochs, run.optim, 0)
        test = evaluate(model, ctx.test_loader, rt.device, desc="final eval", execution=run.execution)
        result = run_result(
            ctx,
            ck,
            t0,
            kind="train",
            model=run.model,
            dataset=run.dataset,
            accuracy=test["accuracy"],
            accuracy_val=validation_accuracy(ctx, model),
            validation_samples=run.validation,
            epochs={"dense": run.epochs},
            config={"run": config_dict(run), "spec": ctx.spec.to_dict()},
            resolved=resolved(ctx),
            spec=ctx.spec.to_dict(),
        )
        dump_rank_state(rt, "final", lambda: {"state": cpu_clone(model.state_dict())})
        write_run(ctx, model, result, {"accuracy": test["accuracy"], "dataset": run.dataset, "epochs": run.epochs})
        return result
    finally:
        rt.close()


# --------------------------------------------------------------------------- prune


def _load_dense(path: str, ctx: RunContext) -> tuple[nn.Module, dict]:
    """Load a dense checkpoint and check that it fits the dataset."""
    from pimprune.training.models import ModelSpec

    model, meta = load_model(path)
    spec_saved = meta["spec"]
    for key in ("num_classes", "in_channels"):
        if spec_saved.get(key) != getattr(ctx.spec, key):
            raise CheckpointError(
                f"dense checkpoint {path} has {key}={spec_saved.get(key)} but dataset "
                f"{ctx.run.dataset} needs {getattr(ctx.spec, key)}; train a baseline on this dataset"
            )
    ctx.spec = ModelSpec.from_dict(spec_saved)
    return ctx.run.execution.model(model.to(ctx.rt.device)), meta


@dataclass
class PruneChoice:
    """The names and the target a prune run resolved from its configuration (checked, no I/O)."""

    method: str
    saliency: str
    target: PruneTarget

    @classmethod
    def of(cls, prune: PruneConfig) -> PruneChoice:
        """Resolve ``auto`` method and saliency and build the target of ``prune``."""
        saliency = resolve_saliency(prune.saliency, prune.pattern)
        target = PruneTarget(
            pattern=prune.pattern,
            crossbar=Crossbar.parse(prune.crossbar),
            target_compression=float(prune.target_compression),
            allocation=prune.allocation,
            budgets_file=prune.budgets_file,
            keep_dense=tuple(prune.keep_dense),
            normalize_layers=not get_saliency(saliency).comparable_across_layers,
            packing=prune.packing,
            guard=prune.guard,
        )
        return cls(resolve_method(prune.method, prune.prune_epochs + prune.retrain_epochs), saliency, target)


class PruneRun:
    """The stages of one :func:`run_prune`, sharing the model, projector and method.

    Building it checks everything that can fail on the input (the dense checkpoint,
    the target's reachability, the budgets file) before anything is written.
    """

    def __init__(self, ctx: RunContext, prune: PruneConfig, choice: PruneChoice) -> None:
        self.ctx, self.prune, self.choice = ctx, prune, choice
        if prune.dense:
            self.model, meta = _load_dense(prune.dense, ctx)
            self.dense_epochs = int(meta.get("epochs", 0) or 0)
        else:
            self.model = new_model(ctx)
            self.dense_epochs = ctx.run.epochs
        if prune.objective != "crossbars":  # what one crossbar of each layer adds to the objective
            choice.target = dataclasses.replace(choice.target, unit_costs=self._objective_costs())
        # Its structure does not depend on the weights, and every use projects the
        # weights it is given, so the same projector serves after dense training.
        self.projector = Projector(self.model, choice.target, ctx.example.to(ctx.rt.device))
        self.saliency = get_saliency(choice.saliency)
        session = PruneSession(
            model=self.model,
            projector=self.projector,
            saliency=self.saliency,
            factors_at=self._factors_at,
            broadcast=ctx.rt.broadcast_tensors,
            prune_epochs=prune.prune_epochs,
            first_epoch=self.dense_epochs,
            steps_per_epoch=len(ctx.train_loader),
            updates_per_epoch=prune.updates_per_epoch,
        )
        self.method: PruneMethod = create_method(choice.method, session, prune.settings.get(choice.method))
        self.session = session
        self.epochs = self.method.epochs(prune.prune_epochs, prune.retrain_epochs)
        ctx.identity = self._identity()

    def _objective_costs(self) -> dict[str, float]:
        from pimprune.hardware.config import load_preset
        from pimprune.hardware.objective import model_objective_weights

        hw = load_preset(self.prune.hardware)
        weights = model_objective_weights(
            self.model, self.choice.target.crossbar, hw, self.prune.objective, tuple(self.ctx.example.shape[1:]),
            scheme=get_pattern(self.prune.pattern).scheme,
        )
        floor = 1e-6 * max(weights.values())  # a layer that never runs on the input still costs a little
        return {n: max(w, floor) for n, w in weights.items()}

    def _mapped_cost(self, plain: nn.Module, layers: list, scheme: str):
        """Costs of the pruned model under the mapping the run reports (the hardware preset).

        Under network packing the placement is proved (:func:`pimprune.mapping.network.check_placement`)
        before rank 0 writes it as ``placement.json``, and the hardware entry costs that placement.
        """
        from pimprune.hardware.config import load_preset
        from pimprune.hardware.cost import layer_mvms
        from pimprune.training.checkpoint import save_json
        from pimprune.workflows.mapping_cost import cost_mapping

        shape = tuple(self.ctx.example.shape[1:])
        hw, bits = load_preset(self.prune.hardware), self.prune.quant
        if bits.weight_bits is not None or bits.input_bits is not None:  # fewer slices, reads and input cycles
            hw = dataclasses.replace(hw, weight_bits=bits.weight_bits or hw.weight_bits,
                                     input_bits=bits.input_bits or hw.input_bits)
        cost = cost_mapping(plain, layers, self.choice.target.crossbar, scheme, hw,
                            shape, layer_mvms(plain, shape), packing=self.prune.packing)
        if cost.placement is not None and self.ctx.rt.is_main:
            save_json(cost.placement.as_json(), self.ctx.out / "placement.json")
        return cost

    def _hardware(self, cost) -> dict:
        """The ``hardware`` entry: energy, area and latency per inference of the mapping the run reports."""
        per_layer = cost.per_layer
        out = {"preset": self.prune.hardware, "energy_nj": round(per_layer.energy_nj, 4),
               "area_mm2": round(per_layer.area_mm2, 6), "latency_us": round(per_layer.latency_us, 3)}
        if cost.network is None:
            return out
        return {"preset": self.prune.hardware, **cost.network.as_dict(), "per_layer": {"crossbars": per_layer.crossbars,
                **{k: out[k] for k in ("energy_nj", "area_mm2", "latency_us")}}}

    def _physical(self, dense_crossbars: int, cost) -> dict:
        """Physical arrays: the dense model at the ``isaac`` numerics' bits over the pruned one's crossbars at its own.

        The pruned crossbars are those the run reports (the network packing's under ``--packing network``).
        """
        from pimprune.hardware.numerics import load_numerics, numerics_with_overrides, physical_summary

        preset = load_numerics("isaac")
        bits = self.prune.quant.weight_bits
        own = preset if bits is None else numerics_with_overrides(preset, {"weight_bits": bits})
        crossbars = cost.placement.n_crossbars if cost.placement is not None else cost.per_layer.crossbars
        return physical_summary(dense_crossbars, crossbars, preset, own)

    def _identity(self) -> dict:
        identity = {
            "kind": "prune",
            "run": run_identity(self.ctx.run),
            "prune": config_dict(self.prune),
            "method": self.choice.method,
            "world_size": self.ctx.rt.world_size,  # the global batch and the data shards depend on it
        }
        if self.prune.dense:  # the baseline's own settings, not the ignored --model/--width
            for key in ("model", "width", "stem_stride"):
                identity["run"].pop(key)
        return identity

    def _factors_at(self, epoch: int) -> dict[str, torch.Tensor]:
        """Saliency factors from the first batches of ``epoch``'s order (same on resume)."""
        if not self.saliency.needs_data:
            return {}
        self.ctx.train_loader.set_epoch(epoch)
        batches = calibration_batches(self.ctx.train_loader, self.prune.saliency_batches)
        return self.saliency.factors(self.model, self.projector.params, batches, self.ctx.rt.device)

    def dense_stage(self, ck: Checkpointer) -> None:
        """Train (or load) the dense baseline, measure it, and make it the teacher."""
        ctx, model, run = self.ctx, self.model, self.ctx.run
        if not self.prune.dense:
            if not ck.state.get("dense_done", False):
                if ck.state:
                    restore_model(model, ck)
                run_stage(ctx, ck, model, "dense", run.epochs, run.optim, 0)
                ck.save(dense_done=True, dense_state=cpu_clone(model.state_dict()))
            else:
                model.load_state_dict(ck.state["dense_state"])
        self.acc_dense = ck.state.get("accuracy_dense")
        if self.acc_dense is None:
            self.acc_dense = evaluate(
                model, ctx.test_loader, ctx.rt.device, desc="dense eval", execution=run.execution
            )["accuracy"]
            ck.save(accuracy_dense=self.acc_dense)
        self.acc_dense_val = validation_accuracy(ctx, model, ck, "accuracy_dense_val")
        if ctx.rt.is_main:
            print(f"dense accuracy {self.acc_dense:.4f}", flush=True)
        if self.prune.distill > 0:  # the dense model as teacher (the model holds the dense weights here)
            ctx.distill = Distillation(copy.deepcopy(model), self.prune.distill, self.prune.distill_temperature)

    def prune_stage(self, ck: Checkpointer) -> None:
        """The method's pruning epochs, the hard prune and the batch-norm recalibration."""
        ctx, model, method, stage = self.ctx, self.model, self.method, ck.state.get("stage")
        if stage == "retrain":
            restore_model(model, ck, prepare=self._quantize)
            return
        if stage == method.name:
            restore_model(model, ck)
        if stage == "dense":  # resumed after the dense stage: continue its random state (noise, recalibration)
            set_rng_state(ck.state.get("rng"))
        prune_epochs, first = self.epochs[0], self.dense_epochs
        if prune_epochs > 0:
            method.setup(ck.state if stage == method.name else None)
            optim = dataclasses.replace(ctx.run.optim, lr=self.prune.prune_lr)
            run_stage(
                ctx, ck, model, method.name, prune_epochs, optim, first,
                attach=method.attach, state_extra=method.state_dict, load_extra=method.load_state_dict,
            )  # fmt: skip
            if method.rank_state() is not None:
                dump_rank_state(ctx.rt, method.name, method.rank_state)
        apply_masks(model, method.hard_prune())
        self._quantize()
        if self.prune.bn_recalibrate:
            ctx.train_loader.set_epoch(first + self.prune.prune_epochs)
            recalibrate_batchnorm(model, ctx.train_loader, self.prune.bn_recalibrate, ctx.rt.device)
            ctx.rt.sync_module(model)
        # kept in memory; the retraining checkpoints carry it
        ck.state["projection"] = {
            "budgets": dict(self.projector.budgets),
            "silenced_outputs": self.projector.silenced_outputs(),
        }

    def _quantize(self) -> None:
        """Quantization-aware retraining: weight quantizers after the masks, input hooks (``prune.quant``)."""
        self.input_hooks = attach_quantization(self.model, self.prune.quant, self.ctx.run.seed)

    def retrain_stage(self, ck: Checkpointer) -> dict:
        """Masked retraining; returns the final test evaluation."""
        ctx = self.ctx
        optim = dataclasses.replace(ctx.run.optim, lr=self.prune.retrain_lr)
        run_stage(ctx, ck, self.model, "retrain", self.epochs[1], optim, self.dense_epochs + self.prune.prune_epochs)
        return evaluate(self.model, ctx.test_loader, ctx.rt.device, desc="final eval", execution=ctx.run.execution)

    def finish(self, ck: Checkpointer, test: dict, t0: float) -> dict:
        """Count the pruned network's crossbars, write the model and result (rank 0)."""
        from pimprune.training.models import create_model

        ctx, prune = self.ctx, self.prune
        plain = create_model(ctx.spec)
        plain.load_state_dict(plain_state_dict(self.model))
        result = self._result(ck, test, plain, t0)
        dump_rank_state(
            ctx.rt,
            "final",
            lambda: {
                "masks": cpu_clone(get_masks(self.model)),
                "state": cpu_clone(plain.state_dict()),
                "train_indices_epoch0": first_epoch_shard(ctx.train_loader),
                "accuracy": torch.tensor(test["accuracy"], dtype=torch.float64),
            },
        )
        meta = {key: result[key] for key in ("pattern", "scheme", "crossbar")}
        meta.update(accuracy=test["accuracy"], dataset=ctx.run.dataset, epochs=self.dense_epochs + sum(self.epochs))
        if prune.quant.enabled:
            meta["quantization"] = result["quantization"]
        write_run(ctx, plain, result, meta)
        if ctx.rt.is_main:
            print(
                f"{prune.pattern} on {result['crossbar']}: {result['crossbars_dense']} -> "
                f"{result['crossbars_pruned']} crossbars ({result['compression']}x), "
                f"accuracy {self.acc_dense:.4f} -> {test['accuracy']:.4f}",
                flush=True,
            )
        return result

    def _result(self, ck: Checkpointer, test: dict, plain: nn.Module, t0: float) -> dict:
        ctx, prune, method = self.ctx, self.prune, self.method
        xbar, scheme = self.choice.target.crossbar, self.projector.pattern.scheme
        layers = extract_layers(plain)
        counts = count_network(layers, xbar)
        projection = ck.state["projection"]
        cost = self._mapped_cost(plain, layers, scheme)
        network = None
        if cost.placement is not None:
            network = {"crossbars": cost.placement.n_crossbars,
                       "compression": json_ratio(counts.total("dense") / max(cost.placement.n_crossbars, 1))}
        prune_key = method.name if method.trains_while_pruning else "prune"
        return run_result(
            ctx,
            ck,
            t0,
            kind="prune", model=ctx.spec.name, dataset=ctx.run.dataset, pattern=prune.pattern, scheme=scheme,
            crossbar=str(xbar), method=method.name, saliency=self.choice.saliency,
            accuracy_dense=self.acc_dense, accuracy_pruned=test["accuracy"],
            accuracy_loss_points=round(100 * (self.acc_dense - test["accuracy"]), 3),
            accuracy_dense_val=self.acc_dense_val, accuracy_val=validation_accuracy(ctx, self.model),
            validation_samples=ctx.run.validation,
            distill={"weight": prune.distill, "temperature": prune.distill_temperature} if prune.distill else None,
            crossbars_dense=counts.total("dense"), crossbars_pruned=counts.total(scheme),
            compression=json_ratio(counts.compression(scheme)),
            compression_conv=json_ratio(counts.compression(scheme, "conv")),
            **packing_bounds(counts),
            target_compression=prune.target_compression,
            packing=prune.packing, network_packing=network, objective=prune.objective,
            hardware=self._hardware(cost), chip=chip_entry(cost),
            quantization=config_dict(prune.quant) if prune.quant.enabled else None,
            physical=self._physical(counts.total("dense"), cost),
            epochs={"dense": self.dense_epochs, prune_key: self.epochs[0], "retrain": self.epochs[1]},
            silenced_outputs=projection["silenced_outputs"], budgets=projection["budgets"],
            layers=[lc.as_dict() for lc in counts.layers],
            config={"run": config_dict(ctx.run), "prune": config_dict(prune), "spec": ctx.spec.to_dict()},
            resolved=resolved(ctx, method=method.name, saliency=self.choice.saliency,
                               update_every_steps=self.session.every),
        )  # fmt: skip


def run_prune(run: RunConfig, prune: PruneConfig) -> dict:
    """Prune a dense model to a crossbar budget and retrain it with masks.

    Returns:
        The result dictionary also written to ``result.json`` (on every rank).
    """
    t0 = time.time()
    choice = PruneChoice.of(prune)
    rt = init_runtime(run.device)
    try:
        ctx = prepare(run, rt)
        if ctx.status == FINISHED:
            return finished(ctx)
        job = PruneRun(ctx, prune, choice)  # 0. every check of the input, before anything is written
        rt.on_main(lambda: open_output(ctx.out))
        ck = Checkpointer(ctx)
        job.dense_stage(ck)  # 1. the dense baseline
        job.prune_stage(ck)  # 2. the method's pruning epochs and the hard prune
        test = job.retrain_stage(ck)  # 3. masked retraining
        return job.finish(ck, test, t0)  # 4. count and write
    finally:
        rt.close()


def split_loader(run: RunConfig, rt, test_loader) -> tuple:
    """``(loader, split)``: ``test_loader``, or with ``run.validation`` the fixed validation split."""
    if not run.validation:
        return test_loader, "test"
    from pimprune.training.loaders import make_validation_loader

    loader = make_validation_loader(run.dataset, run.batch_size, run.validation, run.data_dir, rt.device, rt.rank,
                                    rt.world_size)
    return loader, "validation"


def evaluation_loader(run: RunConfig, rt) -> tuple:
    """``(loader, info, split)``: the test split, or with ``run.validation`` the fixed validation split."""
    from pimprune.training.loaders import load_loaders
    from pimprune.training.sources import data_request

    opts = loader_options(run, rt, augment=False, limit_train=1, validation=0)
    _, test_loader, info = load_loaders(run.dataset, opts, data_request(run.data_dir))
    loader, split = split_loader(run, rt, test_loader)
    return loader, info, split


def run_evaluate(path: str, run: RunConfig) -> dict:
    """Accuracy of a saved model on a dataset's test split, or its validation split with ``run.validation``.

    Every sample of the split is counted once.
    """
    rt = init_runtime(run.device)
    try:
        model, meta = load_model(path)
        model = model.to(rt.device)
        test_loader, info, split = evaluation_loader(run, rt)
        spec = meta["spec"]
        if spec.get("num_classes") != info.num_classes or spec.get("in_channels") != info.in_channels:
            raise CheckpointError(
                f"{path} was built for {spec.get('num_classes')} classes and "
                f"{spec.get('in_channels')} input channels, but {run.dataset} has "
                f"{info.num_classes} and {info.in_channels}; "
                "evaluate it on the dataset it was trained on"
            )
        test = evaluate(run.execution.model(model), test_loader, rt.device, execution=run.execution)
        return {"model": str(path), "dataset": run.dataset, "split": split, **test, "meta": meta}
    finally:
        rt.close()
