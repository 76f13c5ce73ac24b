"""Crossbar design-space sweep: prune for every geometry, then cost it on the hardware model.

For each crossbar geometry ``RxC`` of a grid the network is pruned with a
pattern's projection (docs/design.md section 5) and mapped on the hardware of
:mod:`pimprune.hardware.config`; :mod:`pimprune.hardware.cost` gives its energy, area and
latency per inference. The result names the sweet spot of each metric.

Modes:

``projection`` (default)
    No retraining: the pattern's projection of the trained (or freshly
    initialised) weights, with the network-wide ``global`` allocation and the
    first conv and the classifier kept dense. The budget of each geometry comes
    from one fixed criterion: the smallest crossbar budget whose projection
    keeps at least a share ``keep_energy`` of the squared weight norm of all
    mapped layers (found by bisection over the budget, i.e. over the target
    compression), or a fixed ``target_compression``.
``retrained``
    Each geometry is pruned and retrained by :func:`pimprune.workflows.pipeline.run_prune`
    (slow; for a few geometries).

Both modes plug into :func:`run_sweep` as a :data:`Pruner`, a function from a
geometry to the pruned model.
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from pimprune.errors import ConfigError
from pimprune.geometry import Crossbar
from pimprune.hardware.config import HardwareConfig
from pimprune.hardware.cost import layer_mvms
from pimprune.hardware.latency import network_latency
from pimprune.mapping.matrices import LayerMatrix, extract_layers
from pimprune.numeric import one_thread
from pimprune.workflows.config import PruneConfig, RunConfig
from pimprune.workflows.mapping_cost import chip_entry, cost_mapping

__all__ = [
    "METRICS",
    "GeometryResult",
    "Pruned",
    "Pruner",
    "ProjectionPruner",
    "SweepResult",
    "load_sweep_model",
    "retrained_pruner",
    "run_sweep",
    "sweet_spots",
]

#: Metrics a sweet spot is named for (all minimised).
METRICS: tuple[str, ...] = ("energy", "area", "edp")
_METRIC_FIELD = {"energy": "energy_nj", "area": "area_mm2", "edp": "edp"}

#: Default keep-energy share of the projection mode.
DEFAULT_KEEP_ENERGY = 0.9


@dataclass
class Pruned:
    """A network pruned for one geometry.

    Attributes:
        target_compression: The target compression it was pruned to.
        kept_energy: Share of the squared weight norm of all mapped layers that is kept
            (NaN when it has no meaning, e.g. after retraining).
        masks: Layer name -> ``(g, M, N)`` non-zero mask (None: read from the weights).
        silenced_outputs: Prunable layer -> outputs left without any weight.
        built: The pruned network, if already built.
        build: Builds the pruned network on first use of :attr:`model` (the cost model
            needs only the masks, so the projection mode never copies the network
            unless asked).
    """

    target_compression: float
    kept_energy: float
    masks: dict[str, torch.Tensor] | None = None
    silenced_outputs: dict[str, int] = field(default_factory=dict)
    built: nn.Module | None = None
    build: Callable[[], nn.Module] | None = None

    @property
    def model(self) -> nn.Module:
        """The pruned network (pruned weights exactly 0)."""
        if self.built is None:
            if self.build is None:
                raise ValueError("Pruned has neither a model nor a way to build one")
            self.built = self.build()
        return self.built


#: A function from a geometry to the network pruned for it (the sweep's hook).
Pruner = Callable[[Crossbar], Pruned]


# --------------------------------------------------------------------------- models


def load_sweep_model(
    source: str,
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    input_size: int | None = None,
    width: float = 1.0,
) -> tuple[nn.Module, str, tuple[int, int, int]]:
    """Resolve a model name or a checkpoint into ``(model, label, input shape (C, H, W))``.

    Args:
        source: A model name (``pimprune.training.models.create_model``) or a saved model:
            ``DIR/model.pt`` with ``model.json`` beside it, or ``DIR``.
        num_classes: Classes of a named model.
        in_channels: Input channels of a named model.
        input_size: Input side in px (default: 224 for a name, the saved spec for a checkpoint).
        width: Width multiplier of a named model.
    """
    path = Path(source)
    if path.suffix in {".pt", ".pth"} or "/" in source or path.exists():
        try:
            from pimprune.training.checkpoint import load_model
        except ImportError:
            raise ConfigError(
                f"loading checkpoint {source!r} needs pimprune.training.checkpoint; give a model name instead"
            ) from None
        model, meta = load_model(path)
        spec = meta.get("spec", {})
        size = int(input_size or spec.get("input_size", 224))
        channels = int(spec.get("in_channels", in_channels))
        return model, f"{spec.get('name', path.stem)} ({source})", (channels, size, size)
    size = int(input_size or 224)
    try:
        from pimprune.training.models import ModelSpec, create_model
    except ImportError:  # pragma: no cover - pimprune.training.models ships with the package
        import torchvision

        model = torchvision.models.get_model(source, weights=None, num_classes=num_classes)
        return model, source, (in_channels, size, size)
    spec = ModelSpec(source, num_classes=num_classes, in_channels=in_channels, input_size=size, width=width)
    return create_model(spec, seed=0), spec.label(), (in_channels, size, size)


# --------------------------------------------------------------------------- projection mode


#: Largest difference between the fast and the exact kept share (both float64 sums of the same
#: squares in another order: about 1e-16 relative per term); closer to the target, the exact one decides.
_FAST_SHARE_TOLERANCE = 1e-9


def _sq_energy(t: torch.Tensor) -> float:
    x = t.detach().to(torch.float64)
    return float((x * x).sum())


def _squares64(t: torch.Tensor) -> torch.Tensor:
    """Elementwise squares in float64, contiguous (the exact terms :func:`_sq_energy` sums)."""
    x = t.detach().to(torch.float64)
    return (x * x).contiguous()


class ProjectionPruner:
    """Prunes with the pruner's own projection, no retraining (the ``projection`` mode).

    Every mask comes from :class:`pimprune.pruning.projector.Projector` with the ``global``
    allocation (its keep-every-layer guard and layer normalisation included): for a
    crossbar budget ``B`` the projector is built for ``PruneTarget(pattern, xbar,
    target_compression=dense_total / B, allocation="global", keep_dense=...)`` and
    called on the model's weights. The sweep has no ranking of its own, so its masks
    are the pruner's by construction (``tests/test_sweep.py`` checks them at 16x and 32x).

    Args:
        model: The network (its weights are read, never changed).
        pattern: Pattern name (``pimprune.pruning.patterns``).
        example_input: An input batch for tracing (``(1, C, H, W)``).
        keep_energy: Keep at least this share of the squared weight norm (0 < F <= 1;
            default :data:`DEFAULT_KEEP_ENERGY` when no target compression is given).
        target_compression: Or prune every geometry to this compression (>= 1).
        keep_dense: Layers left dense (``first``, ``last`` or names).
    """

    def __init__(
        self,
        model: nn.Module,
        pattern: str,
        example_input: torch.Tensor,
        *,
        keep_energy: float | None = None,
        target_compression: float | None = None,
        keep_dense: Sequence[str] = ("first", "last"),
    ) -> None:
        from pimprune.pruning.patterns import UnitsCache, get_pattern

        if keep_energy is not None and target_compression is not None:
            raise ConfigError("give exactly one of keep_energy and target_compression")
        if keep_energy is None and target_compression is None:
            keep_energy = DEFAULT_KEEP_ENERGY
        if keep_energy is not None and not (isinstance(keep_energy, (int, float)) and 0 < keep_energy <= 1):
            raise ConfigError(f"--keep-energy must be in (0, 1], got {keep_energy!r}")
        if target_compression is not None and not (
            isinstance(target_compression, (int, float))
            and math.isfinite(target_compression)
            and target_compression >= 1
        ):
            raise ConfigError(f"--target-compression must be a number >= 1, got {target_compression!r}")
        self.model = model
        self.pattern = get_pattern(pattern)
        self.example_input = example_input
        self.keep_energy = keep_energy
        self.target_compression = target_compression
        self.keep_dense = tuple(keep_dense)
        self.layers = extract_layers(model)
        # one projector per geometry, re-targeted for every budget, and the layers' sorted
        # items shared by all of them (the weights never change here)
        self._projectors: dict[str, Any] = {}
        self._units_cache = UnitsCache(self.pattern)
        self.matrices = {lay.name: lay.matrix() for lay in self.layers}
        self.energy = {n: _sq_energy(m) for n, m in self.matrices.items()}
        self.total_energy = sum(self.energy.values())
        self.nonzero = {n: m != 0 for n, m in self.matrices.items()}
        self.has_zeros = {n: not bool(nz.all()) for n, nz in self.nonzero.items()}
        self._squares: dict[str, torch.Tensor] | None = None  # float64 squares, contiguous (fast kept share)
        self._subrows: dict[int, dict[str, torch.Tensor]] = {}  # sub-row energies by C (fast kept share)
        self._weights: dict[str, torch.Tensor] | None = None

    # -- shared helpers ------------------------------------------------------------

    def _target(self, xbar: Crossbar, compression: float, allocation: str = "global") -> Any:
        from pimprune.pruning.target import PruneTarget

        return PruneTarget(
            pattern=self.pattern.name,
            crossbar=xbar,
            target_compression=compression,
            allocation=allocation,
            keep_dense=self.keep_dense,
        )

    def _share(self, kept: float) -> float:
        return kept / self.total_energy if self.total_energy > 0 else 1.0

    def _finish(
        self,
        compression: float,
        layer_masks: Mapping[str, torch.Tensor],
        kept_dense: Sequence[str],
        silenced: Mapping[str, int],
        xbar: Crossbar | None = None,
    ) -> Pruned:
        """Non-zero masks of the pruned network; the network itself is built on demand."""
        masks: dict[str, torch.Tensor] = {}
        for lay in self.layers:
            mask = layer_masks.get(lay.name)
            if mask is None:  # kept dense
                masks[lay.name] = self.nonzero[lay.name]
                continue
            mask = mask.to(torch.bool)
            masks[lay.name] = mask & self.nonzero[lay.name] if self.has_zeros[lay.name] else mask

        def build() -> nn.Module:
            pruned = copy.deepcopy(self.model)
            with torch.no_grad():
                for lay in extract_layers(pruned):
                    lay.module.weight.masked_fill_(~lay.to_weight(masks[lay.name]), 0)
            return pruned

        quiet = {n: v for n, v in silenced.items() if n not in kept_dense}
        # the reported share, rounded to 5 decimals: the fast sum (same terms, another order) serves
        return Pruned(compression, self._kept_share(layer_masks, False, xbar), masks, quiet, build=build)

    def _project(self, xbar: Crossbar, compression: float) -> tuple[Any, dict[str, torch.Tensor]]:
        """The Projector for ``compression`` and its ``(g, M, N)`` mask of every pruned layer."""
        from pimprune.pruning.dependency import logical_parameters
        from pimprune.pruning.projector import Projector

        mapped = {lay.name: lay for lay in self.layers}
        proj = self._projectors.get(str(xbar))
        if proj is None:
            proj = Projector(self.model, self._target(xbar, compression), self.example_input, self._units_cache)
            self._projectors[str(xbar)] = proj
        else:
            proj.retarget(compression)
        if self._weights is None:  # the tensors the forward pass uses, read once: they never change here
            refs = logical_parameters(self.model)
            self._weights = {name: getattr(*ref).detach() for name, ref in refs.items()}
        masks = proj.project_matrices({n: self._weights[n] for n in proj.params})  # (g, M, N), mapped layers
        return proj, {name: mask for name, mask in masks.items() if name in mapped}

    def _kept_share(
        self, layer_masks: Mapping[str, torch.Tensor], exact: bool = True, xbar: Crossbar | None = None
    ) -> float:
        """Share of the squared weight norm that ``layer_masks`` keep.

        ``exact=False`` sums squares computed once: per sub-row (its ``C`` columns) for ``subrow``
        masks on ``xbar``, which keep or drop whole sub-rows, else per weight. The same terms in
        another order: equal up to the last bits (:data:`_FAST_SHARE_TOLERANCE`).
        """
        if exact:
            kept = sum(
                _sq_energy(self.matrices[n] * layer_masks[n]) if n in layer_masks else self.energy[n]
                for n in self.matrices
            )
            return self._share(kept)
        if self.pattern.name == "subrow" and xbar is not None:
            items = self._subrow_energy(xbar)
            step = xbar.cols
            parts = (torch.where(layer_masks[n][:, :, ::step].to(torch.bool), items[n], 0.0) for n in layer_masks)
        else:
            if self._squares is None:
                self._squares = {n: _squares64(m) for n, m in self.matrices.items()}
            parts = (torch.where(layer_masks[n].to(torch.bool), self._squares[n], 0.0) for n in layer_masks)
        pruned = {n: float(t.sum()) for n, t in zip(layer_masks, parts, strict=True)}
        return self._share(sum(pruned[n] if n in pruned else self.energy[n] for n in self.matrices))

    def _subrow_energy(self, xbar: Crossbar) -> dict[str, torch.Tensor]:
        """``(g, M, ceil(N / C))`` float64 energy of every sub-row on ``xbar`` (cached per ``C``)."""
        if xbar.cols not in self._subrows:
            out = {}
            for n, m in self.matrices.items():
                g, rows, cols = m.shape
                nb = -(-cols // xbar.cols)
                sq = torch.zeros(g, rows, nb * xbar.cols, dtype=torch.float64)
                sq[:, :, :cols] = m.detach().to(torch.float64) ** 2
                out[n] = sq.view(g, rows, nb, xbar.cols).sum(3)
            self._subrows[xbar.cols] = out
        return self._subrows[xbar.cols]

    def _compression(self, xbar: Crossbar) -> float:
        """Target compression of ``xbar``: fixed, or the smallest budget keeping ``keep_energy``."""
        from pimprune.pruning.projector import Projector

        if self.target_compression is not None:
            return float(self.target_compression)
        # ``uniform`` only to read the bookkeeping (dense and kept-dense counts): no projection
        info = Projector(self.model, self._target(xbar, 1.0, "uniform"), self.example_input)

        def share(budget: int) -> float:
            try:
                _, lm = self._project(xbar, info.dense_total / budget)
            except ConfigError:  # below what the pattern can reach: infeasible
                return -math.inf
            fast = self._kept_share(lm, exact=False, xbar=xbar)
            # the bisection only compares with the target: the fast sum decides unless it is too close
            return fast if abs(fast - self.keep_energy) > _FAST_SHARE_TOLERANCE else self._kept_share(lm)

        low = max(1, info.kept_total)  # the fewest crossbars any budget may use
        budget = _bisect_budget(share, float(self.keep_energy), low, info.dense_total)
        return info.dense_total / budget

    def __call__(self, xbar: Crossbar) -> Pruned:
        """Prune for one geometry (one intra-op thread: :func:`pimprune.numeric.one_thread`)."""
        with one_thread():
            compression = self._compression(xbar)
            proj, lm = self._project(xbar, compression)
            return self._finish(compression, lm, proj.kept_dense, proj.silenced_outputs(), xbar)


def _bisect_budget(share: Callable[[int], float], target: float, low: int, high: int) -> int:
    """Smallest budget in ``[low, high]`` whose projection keeps ``>= target`` (``high`` keeps all)."""
    if share(low) >= target:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        if share(mid) >= target:
            high = mid
        else:
            low = mid
    return high


# --------------------------------------------------------------------------- retrained mode


def retrained_pruner(
    model_source: str,
    pattern: str,
    out_dir: str | Path,
    compression_for: Callable[[Crossbar], float],
    run_options: Mapping[str, Any] | None = None,
    prune_options: Mapping[str, Any] | None = None,
) -> Pruner:
    """The ``retrained`` mode: :func:`pimprune.workflows.pipeline.run_prune` for each geometry.

    Args:
        model_source: Model name, or a dense checkpoint (used as ``PruneConfig.dense``).
        pattern: Pattern name.
        out_dir: Each geometry runs in ``out_dir/RxC``.
        compression_for: Target compression of each geometry (e.g. from the projection
            criterion).
        run_options: Extra :class:`pimprune.workflows.pipeline.RunConfig` fields (dataset, epochs...).
        prune_options: Extra :class:`pimprune.workflows.pipeline.PruneConfig` fields (epochs, method...).

    Raises:
        ConfigError: if the training pipeline is not available.
    """
    try:
        pipeline = importlib.import_module("pimprune.workflows.pipeline")
        from pimprune.training.checkpoint import load_model
    except ImportError:
        raise ConfigError(
            "retrained mode needs pimprune.workflows.pipeline; run the sweep without --retrain"
        ) from None
    is_checkpoint = Path(model_source).exists() or model_source.endswith(".pt")
    if is_checkpoint:
        from pimprune.training.checkpoint import read_model_meta

        spec = read_model_meta(model_source)["spec"]
        base = {"model": spec["name"], "width": spec.get("width", 1.0)}
    else:
        base = {"model": model_source}

    def prune(xbar: Crossbar) -> Pruned:
        target = float(compression_for(xbar))
        run = RunConfig(**{**base, "out": str(Path(out_dir) / str(xbar)), **dict(run_options or {})})
        cfg = PruneConfig(
            **{
                "pattern": pattern,
                "crossbar": str(xbar),
                "target_compression": target,
                "dense": model_source if is_checkpoint else None,
                **dict(prune_options or {}),
            }
        )
        pipeline.run_prune(run, cfg)
        model, _meta = load_model(Path(run.out) / "model.pt")
        # retrained weights differ from the dense ones: a kept share has no meaning
        return Pruned(target, kept_energy=float("nan"), built=model)

    return prune


# --------------------------------------------------------------------------- the sweep


@dataclass
class GeometryResult:
    """One geometry of a sweep.

    Attributes:
        crossbar: The geometry.
        crossbars_dense: Dense count of the unpruned network.
        crossbars_pruned: Crossbars of the pruned network under the pattern's scheme.
        target_compression: Compression the pruner aimed at.
        kept_energy: Share of the squared weight norm kept.
        energy_nj: Energy per inference of the pruned network (nJ).
        area_mm2: Area of the pruned network's crossbars and peripherals (mm^2).
        latency_us: Latency per inference (us), layer by layer on the chip of the hardware
            configuration, free crossbars holding copies (:mod:`pimprune.hardware.latency`).
        latency_pipelined_us: Latency per inference (us), pipelined across layers (ISAAC).
        throughput_pipelined_ips: Inferences per second, pipelined.
        latency_dense_us: Layer-by-layer latency of the unpruned network (us).
        fits: Whether every weight of the pruned network is resident on the chip at once.
        energy_dense_nj: Energy per inference of the unpruned network (nJ).
        area_dense_mm2: Area of the unpruned network (mm^2).
        energy_breakdown: Energy by component (nJ).
        area_breakdown: Area by component (mm^2).
        silenced_outputs: Outputs left without weights, summed over layers.
        crossbars_network: Crossbars of the pruned network under network packing
            (:func:`pimprune.mapping.network.pack_network`, layers sharing crossbars); the
            costs above are those of the per-layer mapping.
        network: Cost of that network packing: its crossbars' area, the energy of its
            activations, reads, adders and index tables, its latency on the chip
            (:meth:`pimprune.hardware.placement_cost.PlacementCost.as_dict`).
        chip: Tiles and built area of the dense network, the per-layer mapping and the
            network packing under every tile policy (:func:`pimprune.workflows.mapping_cost.chip_entry`).
    """

    crossbar: Crossbar
    crossbars_dense: int
    crossbars_pruned: int
    target_compression: float
    kept_energy: float
    energy_nj: float
    area_mm2: float
    latency_us: float
    energy_dense_nj: float
    area_dense_mm2: float
    energy_breakdown: dict[str, float]
    area_breakdown: dict[str, float]
    silenced_outputs: int = 0
    latency_pipelined_us: float = math.nan
    throughput_pipelined_ips: float = math.nan
    latency_dense_us: float = math.nan
    fits: bool = True
    crossbars_network: int = 0
    network: dict[str, Any] = field(default_factory=dict)
    chip: dict[str, Any] = field(default_factory=dict)

    @property
    def compression(self) -> float:
        """Dense crossbars / pruned crossbars."""
        return self.crossbars_dense / self.crossbars_pruned if self.crossbars_pruned else math.inf

    @property
    def edp(self) -> float:
        """Energy-delay product (nJ * us), layer-by-layer latency."""
        return self.energy_nj * self.latency_us

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "crossbar": str(self.crossbar),
            "rows": self.crossbar.rows,
            "cols": self.crossbar.cols,
            "crossbars_dense": self.crossbars_dense,
            "crossbars_pruned": self.crossbars_pruned,
            "compression": None if math.isinf(self.compression) else round(self.compression, 4),
            "crossbars_network": self.crossbars_network,
            "target_compression": round(self.target_compression, 4),
            "kept_energy": None if math.isnan(self.kept_energy) else round(self.kept_energy, 5),
            "energy_nj": round(self.energy_nj, 3),
            "area_mm2": round(self.area_mm2, 5),
            "latency_us": round(self.latency_us, 3),
            "latency_pipelined_us": round(self.latency_pipelined_us, 3),
            "throughput_pipelined_ips": round(self.throughput_pipelined_ips, 2),
            "latency_dense_us": round(self.latency_dense_us, 3),
            "fits_on_chip": self.fits,
            "edp": round(self.edp, 3),
            "energy_dense_nj": round(self.energy_dense_nj, 3),
            "area_dense_mm2": round(self.area_dense_mm2, 5),
            "energy_breakdown": {k: round(v, 3) for k, v in self.energy_breakdown.items()},
            "area_breakdown": {k: round(v, 6) for k, v in self.area_breakdown.items()},
            "silenced_outputs": self.silenced_outputs,
            "network": self.network,
            "chip": self.chip,
        }


def sweet_spots(results: Sequence[GeometryResult]) -> dict[str, str]:
    """Metric -> geometry minimising it (first one on ties)."""
    if not results:
        return {}
    out = {}
    for metric in METRICS:
        attr = _METRIC_FIELD[metric]
        best = min(range(len(results)), key=lambda i: getattr(results[i], attr))
        out[metric] = str(results[best].crossbar)
    return out


@dataclass
class SweepResult:
    """A whole sweep.

    Attributes:
        mode: ``"projection"`` or ``"retrained"``.
        model: Model label.
        pattern: Pattern name.
        scheme: Counting / packing scheme.
        criterion: ``{"keep_energy": F}`` or ``{"target_compression": X}``.
        hardware: Hardware configuration name.
        input_shape: ``(C, H, W)`` the MVMs were counted for.
        results: One entry per geometry, in sweep order.
    """

    mode: str
    model: str
    pattern: str
    scheme: str
    criterion: dict[str, float]
    hardware: str
    input_shape: tuple[int, ...]
    results: list[GeometryResult]

    @property
    def sweet_spot(self) -> dict[str, str]:
        """Metric -> best geometry."""
        return sweet_spots(self.results)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the ``--json`` output)."""
        return {
            "mode": self.mode,
            "model": self.model,
            "pattern": self.pattern,
            "scheme": self.scheme,
            "criterion": dict(self.criterion),
            "hardware": self.hardware,
            "input_shape": list(self.input_shape),
            "results": [r.as_dict() for r in self.results],
            "sweet_spot": self.sweet_spot,
        }


def run_sweep(
    model: nn.Module,
    geometries: Sequence[Crossbar],
    hw: HardwareConfig,
    input_shape: Sequence[int],
    pruner: Pruner,
    *,
    pattern: str,
    criterion: Mapping[str, float],
    mode: str = "projection",
    model_label: str = "model",
    progress: bool = True,
) -> SweepResult:
    """Prune ``model`` for every geometry with ``pruner`` and cost each result.

    Args:
        model: The unpruned network.
        geometries: Crossbar geometries to sweep.
        hw: Hardware configuration.
        input_shape: ``(C, H, W)`` of one input.
        pruner: Geometry -> pruned network (:class:`ProjectionPruner`, :func:`retrained_pruner`).
        pattern: Pattern name (its counting scheme maps the pruned network).
        criterion: What the pruner aimed at, for the report.
        mode: ``"projection"`` or ``"retrained"``, for the report.
        model_label: Model description, for the report.
        progress: Show a progress bar across geometries.
    """
    from pimprune.pruning.patterns import get_pattern

    scheme = get_pattern(pattern).scheme
    if not geometries:
        raise ConfigError("no crossbar geometry to sweep; pass --rows/--cols or --crossbar")
    layers = extract_layers(model)
    mvms = layer_mvms(model, input_shape)
    results = [
        _cost_geometry(model, xbar, pruner(xbar), hw, input_shape, scheme, layers, mvms)
        for xbar in tqdm(list(geometries), desc="sweep", unit="geometry", disable=not progress or None)
    ]
    return SweepResult(
        mode=mode,
        model=model_label,
        pattern=pattern,
        scheme=scheme,
        criterion=dict(criterion),
        hardware=hw.name,
        input_shape=tuple(int(s) for s in input_shape)[-3:],
        results=results,
    )


def _cost_geometry(
    model: nn.Module,
    xbar: Crossbar,
    pruned: Pruned,
    hw: HardwareConfig,
    input_shape: Sequence[int],
    scheme: str,
    layers: list[LayerMatrix],
    mvms: Mapping[str, int],
) -> GeometryResult:
    """Energy, area and latency of one geometry's pruned network beside the dense one.

    The per-layer mapping (the ``energy_nj``, ``area_mm2`` and latency fields) and its network
    packing (``network``: the placement's own crossbars, activations and adders) are both costed,
    with one intra-op thread (:func:`pimprune.numeric.one_thread`).
    """
    built = model if pruned.masks is not None else pruned.model  # masks by layer name of ``model``
    with one_thread():
        cost = cost_mapping(built, layers if built is model else extract_layers(built), xbar, scheme, hw,
                            input_shape, mvms, masks=pruned.masks, packing="network", check=False)
    dense, per_layer, network = cost.dense, cost.per_layer, cost.network
    lat, lat_dense = network_latency(per_layer, hw), network_latency(dense, hw)
    return GeometryResult(
        crossbar=xbar,
        crossbars_dense=dense.crossbars,
        crossbars_pruned=per_layer.crossbars,
        target_compression=pruned.target_compression,
        kept_energy=pruned.kept_energy,
        energy_nj=per_layer.energy_nj,
        area_mm2=per_layer.area_mm2,
        latency_us=lat["layer_by_layer"].latency_us,
        latency_pipelined_us=lat["pipelined"].latency_us,
        throughput_pipelined_ips=lat["pipelined"].throughput_ips,
        latency_dense_us=lat_dense["layer_by_layer"].latency_us,
        fits=lat.fits,
        energy_dense_nj=dense.energy_nj,
        area_dense_mm2=dense.area_mm2,
        energy_breakdown=per_layer.energy_breakdown,
        area_breakdown=per_layer.area_breakdown,
        silenced_outputs=sum(pruned.silenced_outputs.values()),
        crossbars_network=network.crossbars,
        network=network.as_dict(),
        chip=chip_entry(cost),
    )
