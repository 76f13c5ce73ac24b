"""Training-step overhead of ADMM and of masked retraining, relative to plain training.

Times interleaved blocks of optimizer steps in ONE process on the same model
and data (plain, ADMM-hooked, masked), so machine drift hits all three alike,
and reports the median time per step and the ratios to plain training.

    python benchmarks/bench_training_overhead.py [--pattern subrow] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from pimprune.geometry import Crossbar
from pimprune.pruning.admm import ADMM, ADMMConfig
from pimprune.pruning.masking import apply_masks
from pimprune.pruning.projector import Projector
from pimprune.pruning.target import PruneTarget
from pimprune.training.models import ModelSpec, create_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pattern", default="subrow")
    p.add_argument("--crossbar", default="32x32")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--update-every", type=int, default=100, help="ADMM Z-update interval (steps)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    spec = ModelSpec("resnet18", num_classes=10, in_channels=1, input_size=28, width=args.width, stem_stride=2)
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    target = PruneTarget(args.pattern, Crossbar.parse(args.crossbar), 10.0, allocation="global")

    def make(kind: str):
        torch.manual_seed(0)
        model = create_model(spec)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        proj = Projector(model, target, x[:1])
        if kind == "admm":
            admm = ADMM(model, proj, proj.params, ADMMConfig(update_every=args.update_every))
            admm.attach(opt)
        elif kind == "masked":
            named = dict(model.named_parameters())
            apply_masks(model, proj({n: named[n].detach() for n in proj.params}))
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        return model, opt

    def block(model, opt) -> float:
        t = time.perf_counter()
        for _ in range(args.steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (time.perf_counter() - t) / args.steps

    kinds = ("plain", "admm", "masked")
    setups = {k: make(k) for k in kinds}
    for k in kinds:
        block(*setups[k])  # warm-up
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.blocks):
        for k in kinds:
            times[k].append(block(*setups[k]))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "pattern": args.pattern, "crossbar": args.crossbar, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "median_step_s": {k: round(v, 5) for k, v in med.items()},
        "ratio_to_plain": {k: round(med[k] / med["plain"], 3) for k in kinds},
    }
    print(f"median step time ({args.batch_size} images, {torch.get_num_threads()} threads):")
    for k in kinds:
        print(f"  {k:<7} {1000 * med[k]:8.2f} ms   x{med[k] / med['plain']:.3f} of plain")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
