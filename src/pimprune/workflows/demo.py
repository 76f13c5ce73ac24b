"""``pimprune demo``: the main job on an embedded default.

Takes the dense ResNet18 (width 0.25, stride-2 stem) this project trained on
Fashion-MNIST and ships in ``pimprune/assets/demo_dense``, prunes it with
PIM-Prune's ``subrow`` pattern and with the coarse baselines (``filter``,
dependency-aware, and ``row``) to the same crossbar budget on 32x32 crossbars
(the tiling of full-width ResNet18 on 128x128), retrains each for the same
short number of epochs, and prints the side-by-side table: accuracy, crossbars,
compression and energy per inference (ISAAC preset). A report folder gets
Markdown, JSON and PNG plots. Runs offline: Fashion-MNIST comes from the
Debian package ``dataset-fashion-mnist`` when installed, else from the subset
shipped with pimprune (the output says which).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pimprune.errors import PimpruneError
from pimprune.geometry import Crossbar
from pimprune.mapping.counting import count_network
from pimprune.mapping.matrices import extract_layers
from pimprune.training.checkpoint import ensure_dir, load_model, save_json, save_text

DEMO_ASSET = "demo_dense"


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo.

    Attributes:
        out: Report folder.
        patterns: Patterns pruned side by side (the first is PIM-Prune's).
        crossbar: Crossbar geometry.
        target_compression: Network-wide crossbar compression target.
        prune_epochs: Gradual pruning epochs per pattern.
        retrain_epochs: Masked retraining epochs per pattern.
        limit_train: Training images used for pruning/retraining (None: all).
        limit_test: Test images evaluated (None: all).
        data_dir: Fashion-MNIST folder (None: Debian package or shipped subset).
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: Random seed.
        method: Pruning method (``auto`` picks by the epoch budget).
        distill: Weight of knowledge distillation from the dense model (the measured best
            recipe, docs/results.md; 0: off).
    """

    out: str = "pimprune-demo"
    patterns: tuple[str, ...] = ("subrow", "row", "filter")
    crossbar: str = "32x32"
    target_compression: float = 10.0
    prune_epochs: int = 2
    retrain_epochs: int = 4
    limit_train: int | None = 20000
    limit_test: int | None = None
    data_dir: str | None = None
    device: str = "auto"
    seed: int = 0
    method: str = "auto"
    distill: float = 0.9


def dense_checkpoint() -> Path:
    """Path of the shipped dense checkpoint (``model.pt`` with ``model.json``)."""
    return Path(str(resources.files("pimprune") / "assets" / DEMO_ASSET / "model.pt"))


def _dataset(cfg: DemoConfig) -> tuple[str, str | None, str]:
    from pimprune.training.readers import fashion_mnist_dir
    from pimprune.training.sources import DataRequest

    if cfg.data_dir:
        return "fashion-mnist", cfg.data_dir, f"Fashion-MNIST from {cfg.data_dir}"
    try:
        found = fashion_mnist_dir(DataRequest())
    except PimpruneError:
        found = None
    if found is not None:
        return "fashion-mnist", None, f"Fashion-MNIST (60k/10k) from {found}"
    return (
        "fashion-mnist-subset",
        None,
        "the Fashion-MNIST subset shipped with pimprune (6000 train / 2000 test images; "
        "install the Debian package dataset-fashion-mnist for the full set)",
    )


def _configs(cfg: DemoConfig, pattern: str, spec: dict, data: tuple[str, str | None], out: Path) -> tuple:
    """The run and prune configurations of one pattern (the shipped dense model, no dense epochs)."""
    from pimprune.workflows.config import PruneConfig, RunConfig

    dataset, data_dir = data
    run = RunConfig(
        model=spec["name"], width=spec["width"], stem_stride=spec.get("stem_stride"),
        dataset=dataset, data_dir=data_dir, batch_size=128, limit_train=cfg.limit_train, limit_test=cfg.limit_test,
        seed=cfg.seed, device=cfg.device, out=str(out), epochs=0, eval_each_epoch=False,
    )  # fmt: skip
    prune = PruneConfig(
        pattern=pattern, crossbar=str(Crossbar.parse(cfg.crossbar)), target_compression=cfg.target_compression,
        method=cfg.method, dense=str(dense_checkpoint()), prune_epochs=cfg.prune_epochs,
        retrain_epochs=cfg.retrain_epochs, distill=cfg.distill,
    )  # fmt: skip
    return run, prune


def _prune_patterns(cfg: DemoConfig, spec: dict, data: tuple[str, str | None], cost_of, out: Path) -> list[tuple]:
    """Prune with every pattern; ``(pattern, result, cost, model)`` rows, models copied to ``out/models``."""
    from pimprune.workflows.pipeline import run_prune

    rows = []
    work = Path(tempfile.mkdtemp(prefix="pimprune-demo-"))
    try:
        for pattern in cfg.patterns:
            print(f"\n== {pattern} ==", flush=True)
            res = run_prune(*_configs(cfg, pattern, spec, data, work / pattern))
            model, _ = load_model(work / pattern / "model.pt")
            rows.append((pattern, res, cost_of(model, res["scheme"]), model))
            dest = ensure_dir(out / "models" / pattern)
            for name in ("model.pt", "model.json", "result.json"):
                shutil.copyfile(work / pattern / name, dest / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _table_row(pattern: str, method: str, saliency: str, accuracy: float, model, scheme: str, cost, hw):
    """One table row: both mappings (per layer, and network packing, docs/design.md section 4), each costed.

    The network packing's energy and area are those of the placement itself (its crossbars,
    activations, adders and index tables: :mod:`pimprune.hardware.placement_cost`), proved by
    :func:`pimprune.mapping.network.check_placement`.
    """
    from pimprune.hardware.cost import layer_mvms
    from pimprune.workflows.mapping_cost import network_packing

    layers = extract_layers(model)
    mvms = layer_mvms(model, cost.input_shape)
    placement, network = network_packing({lay.name: lay.matrix() for lay in layers}, cost.crossbar, scheme, hw, mvms)
    dense = count_network(layers, cost.crossbar, schemes=("dense",)).total("dense")
    return {
        "pattern": pattern, "method": method, "saliency": saliency, "accuracy": accuracy,
        "crossbars": cost.crossbars, "compression": dense / cost.crossbars,
        "crossbars_network": placement.n_crossbars, "compression_network": dense / placement.n_crossbars,
        "energy_nj": cost.energy_nj, "area_mm2": cost.area_mm2,
        "energy_network_nj": network.energy_nj, "area_network_mm2": network.area_mm2,
    }  # fmt: skip


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo; returns the summary also written to ``out/demo.json``."""
    from pimprune.hardware.config import load_preset
    from pimprune.hardware.cost import network_cost

    t0 = time.time()
    xbar = Crossbar.parse(cfg.crossbar)
    # every setting checked (by the configs' own validation) before anything is written
    for pattern in cfg.patterns:
        _configs(cfg, pattern, {"name": "resnet18", "width": 0.25}, ("synthetic", None), Path("."))
    out = ensure_dir(cfg.out)
    dense_model, meta = load_model(dense_checkpoint())
    dataset, data_dir, data_text = _dataset(cfg)
    print(f"pimprune demo: dense ResNet18 (width 0.25) shipped with pimprune, trained on Fashion-MNIST "
          f"for {meta.get('epochs', '?')} epochs")
    print(f"data: {data_text}")
    print(f"pruning to {cfg.target_compression:g}x fewer {xbar} crossbars with "
          f"{', '.join(cfg.patterns)}; {cfg.prune_epochs} pruning + {cfg.retrain_epochs} retraining epochs each"
          + (f" on up to {cfg.limit_train} training images" if cfg.limit_train else "")
          + (f", distilled from the dense model (weight {cfg.distill:g})" if cfg.distill else ""), flush=True)
    hw = load_preset("isaac")
    spec = meta["spec"]
    input_shape = (1, spec["in_channels"], spec["input_size"], spec["input_size"])

    def cost_of(model, scheme: str):
        return network_cost(model, xbar, scheme, hw, input_shape)

    dense_cost = cost_of(dense_model, "dense")
    rows = _prune_patterns(cfg, spec, (dataset, data_dir), cost_of, out)
    acc_dense = rows[0][1]["accuracy_dense"] if rows else float("nan")
    table = [_table_row("dense", "-", "-", acc_dense, dense_model, "dense", dense_cost, hw)]
    for pattern, res, cost, model in rows:
        table.append(_table_row(pattern, res["method"], res.get("saliency", "-"), res["accuracy_pruned"],
                                model, res["scheme"], cost, hw))  # fmt: skip
    text = format_table(table, acc_dense)
    print("\n" + text)
    summary = {
        "dataset": data_text,
        "crossbar": str(xbar),
        "target_compression": cfg.target_compression,
        "epochs": {"prune": cfg.prune_epochs, "retrain": cfg.retrain_epochs, "dense": meta.get("epochs")},
        "train_images": rows[0][1]["resolved"]["train_samples"] if rows else None,
        "table": table,
        "config": dataclasses.asdict(cfg),
        "wall_time_s": round(time.time() - t0, 1),
    }
    _write_report(out, cfg, xbar, summary, text, dense_model, rows)
    print(f"\nreport written to {out}/report.md ({summary['wall_time_s']:.0f} s)")
    return summary


def format_table(table: list[dict], acc_dense: float) -> str:
    """The side-by-side table as Markdown."""
    lines = [
        "| pattern | method | saliency | accuracy | loss (points) | crossbars (per layer) | compression "
        "| energy / inference (nJ) | area (mm^2) | crossbars (network packing) | compression "
        "| energy / inference (nJ) | area (mm^2) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        loss = 100 * (acc_dense - r["accuracy"])
        lines.append(
            f"| {r['pattern']} | {r['method']} | {r.get('saliency', '-')} | {100 * r['accuracy']:.2f}% | {loss:+.2f} "
            f"| {r['crossbars']} | {r['compression']:.2f}x | {r['energy_nj']:.1f} | {r['area_mm2']:.3f} "
            f"| {r['crossbars_network']} | {r['compression_network']:.2f}x | {r['energy_network_nj']:.1f} "
            f"| {r['area_network_mm2']:.3f} |"
        )
    return "\n".join(lines)


def _write_report(out: Path, cfg: DemoConfig, xbar: Crossbar, summary: dict, text: str, dense_model, rows) -> None:
    from pimprune.reporting.report import plot_layer_crossbars, plot_matrix_heatmap

    save_json(summary, out / "demo.json")
    dense_layers = extract_layers(dense_model)
    names = [lay.name for lay in dense_layers]
    dense_counts = [lc.dense for lc in count_network(dense_layers, xbar, schemes=("dense",)).layers]
    pruned = {}
    for pattern, res, _, _ in rows:
        per = {lay["name"]: lay["compacted"][res["scheme"]] for lay in res["layers"]}
        pruned[pattern] = [per[n] for n in names]
    plots = []
    try:
        plots.append(plot_layer_crossbars(names, dense_counts, pruned, out / "crossbars_per_layer.png",
                                          f"crossbars per layer on {xbar}"))
        for pattern, _res, _, model in rows:
            layers = extract_layers(model)
            pick = next((lay for lay in layers if lay.name == "layer3.0.conv2"), layers[len(layers) // 2])
            plots.append(plot_matrix_heatmap(
                pick.matrix()[0], xbar, out / f"matrix_{pattern}.png",
                f"{pattern}: {pick.name} ({pick.rows}x{pick.cols}), {xbar} grid",
            ))
    except ImportError:
        print("matplotlib is not installed: no plots (pip install 'pimprune[plot]')")
    md = [
        "# pimprune demo",
        "",
        f"Data: {summary['dataset']}.",
        f"Dense model: ResNet18 width 0.25 shipped with pimprune ({summary['epochs']['dense']} training epochs).",
        f"Crossbar {xbar}; target {cfg.target_compression:g}x; each pattern: {cfg.prune_epochs} pruning + "
        f"{cfg.retrain_epochs} retraining epochs on {summary['train_images']} training images"
        + (f", distilled from the dense model (weight {cfg.distill:g})" if cfg.distill else "") + ".",
        "Energy and area per inference: ISAAC 32 nm preset (docs/hardware.md).",
        "",
        text,
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
        "",
        f"Wall time: {summary['wall_time_s']:.0f} s. Machine-readable: demo.json; models in models/.",
    ]
    save_text("\n".join(md) + "\n", out / "report.md")
