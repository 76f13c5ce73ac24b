"""The retrained design space (docs/results.md) costed again under the current hardware model.

A one-shot run's masks are fixed at its hard prune, from the dense weights and the saliency of the
first batches of its first pruning epoch; retraining changes the kept weights but not which ones are
kept. So the masks of every point of ``benchmarks/design_space.py``'s table can be rebuilt exactly
without retraining, and their energy, area and latency recomputed after the hardware model changes
(the 128-column ADC overcharge fix, the ADC scaling laws). The crossbar count of every rebuilt model is
checked against the table (equal masks give equal counts).

    python benchmarks/design_space_recost.py --table results/cpu_protocol/cpu_protocol.json \
        --laws walden,table,schreier --out results/design_space_recost.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_main  # noqa: E402


def _masks(point: dict, table: dict, dense: str, limit_train: int) -> tuple[torch.nn.Module, object]:
    """The dense model with the one-shot masks of ``point`` applied (as its run made them)."""
    from pimprune.pruning.masking import apply_masks
    from pimprune.training.runtime import init_runtime
    from pimprune.workflows.config import PruneConfig, RunConfig
    from pimprune.workflows.pipeline import PruneChoice, PruneRun
    from pimprune.workflows.stages import prepare

    epochs = table["epochs"]
    run = RunConfig(dataset="fashion-mnist", limit_train=limit_train, out="/nonexistent/recost", epochs=0,
                    eval_each_epoch=False)
    prune = PruneConfig(pattern=table["pattern"], crossbar=point["crossbar"], method="oneshot", dense=dense,
                        target_compression=point["target_compression"], prune_epochs=epochs["prune"],
                        retrain_epochs=epochs["retrain"], bn_recalibrate=0)
    rt = init_runtime("cpu")
    try:
        job = PruneRun(prepare(run, rt), prune, PruneChoice.of(prune))
        s = job.session
        s.projector.retarget(s.target)
        apply_masks(job.model, s.project(s.weights(), s.factors_at(s.first_epoch + s.prune_epochs)))
        return job.model, job.projector
    finally:
        rt.close()


def main(argv=None) -> int:
    from pimprune.hardware.config import load_preset, with_overrides
    from pimprune.hardware.cost import network_cost
    from pimprune.hardware.latency import network_latency
    from pimprune.pruning.masking import remove_masks

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default="results/cpu_protocol/cpu_protocol.json")
    p.add_argument("--dense", default="src/pimprune/assets/demo_dense/model.pt")
    p.add_argument("--limit-train", type=int, default=20000)
    p.add_argument("--laws", default="walden,table,schreier")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    table = json.loads(Path(args.table).read_text())["design_space"]
    dense = _dense(args.dense)
    rows = []
    for geo in table["geometries"]:
        point = {"crossbar": geo["crossbar"], **geo["best"]}
        model, _ = _masks(point, table, args.dense, args.limit_train)
        remove_masks(model)
        row = {"crossbar": geo["crossbar"], "compression": point["compression"],
               "crossbars_table": point["crossbars_pruned"], "loss_points": point["accuracy_loss_points"]}
        for law in args.laws.split(","):
            hw = with_overrides(load_preset("isaac"), {"adc.law": law})
            for name, m, scheme in (("dense", dense, "dense"), ("pruned", model, table["pattern"])):
                cost = network_cost(m, geo["crossbar"], scheme, hw, (1, 1, 28, 28))
                lat = network_latency(cost, hw)
                row[f"{law}_{name}"] = {
                    "crossbars": cost.crossbars, "energy_nj": round(cost.energy_nj, 1),
                    "area_mm2": round(cost.area_mm2, 4),
                    "latency_us": round(lat["layer_by_layer"].latency_us, 2),
                    "pipelined_throughput_ips": round(lat["pipelined"].throughput_ips, 1),
                    "edp_nj_us": round(cost.energy_nj * lat["layer_by_layer"].latency_us, 1),
                }
        if row[f"{args.laws.split(',')[0]}_pruned"]["crossbars"] != point["crossbars_pruned"]:
            raise SystemExit(f"error: {geo['crossbar']}: rebuilt masks give another crossbar count than the table")
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps({"source": args.table, "rows": rows}, indent=2) + "\n")
    return 0


def _dense(path: str):
    from pimprune.training.checkpoint import load_model

    return load_model(path)[0]


if __name__ == "__main__":
    raise SystemExit(script_main(main))
