"""``pimprune evaluate --on-chip``: a saved model's accuracy computed on crossbars, with the chip's numerics.

The crossbar geometry and packing scheme are the ones the model was pruned for (``result.json``
beside ``model.pt``, else the pruning fields of ``model.json``); a model without them (a dense
baseline) is mapped densely on ``--crossbar``. Every mapped layer then runs through
:mod:`pimprune.hardware.onchip` under a :class:`~pimprune.hardware.numerics.NumericsConfig`;
device samples ``seed, seed+1, ...`` give the mean and spread of the accuracy.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pimprune.errors import CheckpointError, ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.numerics import NumericsConfig, load_numerics, numerics_to_dict, numerics_with_overrides
from pimprune.hardware.onchip import PATHS, OnChipModel
from pimprune.mapping.counting import SCHEMES
from pimprune.workflows.pipeline import RunConfig, run_evaluate

__all__ = ["DEFAULT_CROSSBAR", "ModelMapping", "OnChipEval", "format_onchip", "model_mapping", "run_onchip_evaluate"]

#: Geometry of a model that names none (the default of ``pimprune map``).
DEFAULT_CROSSBAR = "128x128"


@dataclass(frozen=True)
class OnChipEval:
    """Settings of an on-chip evaluation.

    Attributes:
        numerics: Numerics preset (``isaac``, ``neurosim``, ``ideal``) or a YAML / JSON file.
        overrides: Field overrides of the numerics, ``{"variation_sigma": 0.05}`` (``--set numerics.F=V``).
        crossbar: Geometry ``RxC``; None: the model's own (``result.json`` / ``model.json``), else
            :data:`DEFAULT_CROSSBAR`.
        repeats: Device samples (seeds ``seed .. seed+repeats-1``); one when the numerics are
            deterministic (no variation, faults or read noise).
        seed: Seed of the first device sample.
        calibration_images: Training images (evenly spaced) whose fp32 forward pass sets each
            layer's input scale.
        path: How layers are computed (:data:`pimprune.hardware.onchip.PATHS`; ``auto``: the exact
            collapsed product when the readout is lossless, else read by read).
    """

    numerics: str = "isaac"
    overrides: tuple[tuple[str, Any], ...] = ()
    crossbar: str | None = None
    repeats: int = 1
    seed: int = 0
    calibration_images: int = 1024
    path: str = "auto"

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ConfigError(f"--repeats must be at least 1, got {self.repeats}")
        if self.calibration_images < 1:
            raise ConfigError(f"--calibration-images must be at least 1, got {self.calibration_images}")
        if self.path not in PATHS:
            raise ConfigError(f"unknown on-chip path {self.path!r}; choose one of {', '.join(PATHS)}")

    def resolve_numerics(self, meta: dict | None = None) -> NumericsConfig:
        """The numerics with the overrides applied.

        A model trained for its own bits (``prune --weight-bits``, ``quantization`` in its
        ``model.json``) is read at those weight bits and that weight scale unless the overrides say otherwise.
        """
        cfg = load_numerics(self.numerics)
        fields = {str(k).removeprefix("numerics."): v for k, v in self.overrides}
        quant = (meta or {}).get("quantization") or {}
        if quant.get("weight_bits") is not None:
            fields.setdefault("weight_bits", quant["weight_bits"])
            fields.setdefault("weight_scale", quant.get("weight_scale", "column"))
        return numerics_with_overrides(cfg, fields) if fields else cfg


@dataclass(frozen=True)
class ModelMapping:
    """Where a model's crossbar mapping comes from.

    Attributes:
        crossbar: Geometry.
        scheme: Packing scheme.
        pattern: Pruning pattern (None for a dense model).
        source: ``result.json``, ``model.json``, ``--crossbar`` or ``default`` (dense).
    """

    crossbar: Crossbar
    scheme: str
    pattern: str | None
    source: str


def _saved_mapping(path: Path, meta: dict) -> tuple[dict, str] | None:
    folder = path if path.is_dir() else path.parent
    result = folder / "result.json"
    if result.is_file():
        try:
            data = json.loads(result.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {result}: {exc}") from None
        if isinstance(data, dict) and data.get("crossbar") and data.get("scheme"):
            return data, "result.json"
    if meta.get("crossbar") and meta.get("scheme"):
        return meta, "model.json"
    return None


def model_mapping(path: str | Path, meta: dict, crossbar: str | None = None) -> ModelMapping:
    """The crossbar geometry and packing scheme a saved model is evaluated under.

    Args:
        path: ``model.pt`` or its folder.
        meta: The model's ``model.json`` (from :func:`pimprune.training.checkpoint.load_model`).
        crossbar: ``--crossbar``: replaces the saved geometry (the scheme stays the model's).

    Raises:
        ConfigError: on a bad geometry or a scheme that is not a packing scheme.
    """
    saved = _saved_mapping(Path(path), meta)
    if saved is None:
        xbar = Crossbar.parse(crossbar or DEFAULT_CROSSBAR)
        return ModelMapping(xbar, "dense", None, "--crossbar" if crossbar else "default")
    data, source = saved
    scheme = str(data["scheme"])
    if scheme not in SCHEMES:
        raise ConfigError(f"{source} of {path} names scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    xbar = Crossbar.parse(crossbar or str(data["crossbar"]))
    return ModelMapping(xbar, scheme, data.get("pattern"), "--crossbar" if crossbar else source)


def _loaders(run: RunConfig, rt: Any, images: int) -> tuple[list, Any]:
    """Calibration batches and the loader of the evaluated split.

    Calibration: evenly spaced training images, no augmentation, never the validation images. The
    evaluated split: test, or validation with ``run.validation``.
    """
    from pimprune.training.loaders import load_loaders
    from pimprune.training.sources import data_request
    from pimprune.workflows.pipeline import split_loader
    from pimprune.workflows.stages import loader_options

    opts = loader_options(run, rt, augment=False, limit_train=images)
    train, test, _ = load_loaders(run.dataset, opts, data_request(run.data_dir))
    return [x for x, _ in train], split_loader(run, rt, test)[0]


def run_onchip_evaluate(path: str, run: RunConfig, settings: OnChipEval) -> dict:
    """Accuracy of a saved model on the test split, its mapped layers computed on crossbars.

    The fp32 accuracy comes from :func:`pimprune.workflows.pipeline.run_evaluate` (which also
    checks that the model fits the dataset); the on-chip accuracy from ``repeats`` device samples.

    Returns:
        JSON-ready results: the mapping, the numerics, ``accuracy_fp32``, ``accuracy_mean``,
        ``accuracy_std`` (sample standard deviation; 0 for one sample), every sample's
        accuracy and ``loss_points`` (fp32 minus on-chip mean, in accuracy points).
    """
    from pimprune.training.checkpoint import load_model
    from pimprune.training.runtime import init_runtime

    fp32 = run_evaluate(path, run)
    model, meta = load_model(path)
    numerics = settings.resolve_numerics(meta)
    mapping = model_mapping(path, meta, settings.crossbar)
    rt = init_runtime(run.device)
    try:
        calibration, test_loader = _loaders(run, rt, settings.calibration_images)
        model = model.to(rt.device).eval()
        chip = OnChipModel(model, mapping.crossbar, mapping.scheme, numerics, calibration, path=settings.path)
        samples = settings.repeats if numerics.stochastic else 1
        seeds = [settings.seed + i for i in range(samples)]
        accuracies = [_accuracy(chip, seed, test_loader, rt.device) for seed in seeds]
    finally:
        rt.close()
    mean = statistics.fmean(accuracies)
    return {
        "model": str(path), "dataset": run.dataset, "split": fp32["split"], "samples": fp32["samples"],
        "crossbar": str(mapping.crossbar), "scheme": mapping.scheme, "pattern": mapping.pattern,
        "mapping_from": mapping.source, "numerics": numerics_to_dict(numerics),
        "numerics_overrides": dict(settings.overrides), "path": chip.path,
        "crossbars": chip.n_crossbars, "physical_arrays": chip.n_crossbars * numerics.physical_arrays,
        "calibration_images": settings.calibration_images, "repeats": settings.repeats,
        "device_samples": samples, "seeds": seeds, "accuracies": accuracies,
        "accuracy_fp32": fp32["accuracy"], "accuracy_mean": mean,
        "accuracy_std": statistics.stdev(accuracies) if samples > 1 else 0.0,
        "loss_points": round(100 * (fp32["accuracy"] - mean), 3),
    }  # fmt: skip


def _accuracy(chip: OnChipModel, seed: int, loader: Any, device: Any) -> float:
    """Test accuracy of device sample ``seed``."""
    import torch

    from pimprune.training.loops import evaluate

    chip.attach(seed)
    try:
        with torch.no_grad():
            return evaluate(chip.model, loader, device, desc=f"on-chip seed {seed}")["accuracy"]
    finally:
        chip.detach()


def format_onchip(res: dict) -> str:
    """One line of text for :func:`run_onchip_evaluate`'s result."""
    samples = res["device_samples"]
    spread = f" +- {res['accuracy_std']:.4f} over {samples} device samples" if samples > 1 else ""
    return (
        f"{res['model']} on {res['dataset']} ({res.get('split', 'test')}), on-chip ({res['numerics']['name']} "
        f"numerics, {res['numerics']['weight_bits'] or 'fp32'}-bit weights, {res['crossbar']} "
        f"{res['scheme']} from {res['mapping_from']}, {res['crossbars']} crossbars): accuracy "
        f"{res['accuracy_mean']:.4f}{spread}; fp32 {res['accuracy_fp32']:.4f} ({res['loss_points']:+.2f} points lost)"
    )
