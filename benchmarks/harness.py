"""Shared harness of the benchmarks: timing and JSON output (bench_counting, bench_analysis), and the
options and cached runs of the pruning benchmarks (compression_table, method_comparison, design_space)."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pimprune.pruning.saliency import AUTO, SALIENCIES
from pimprune.training.loops import PRECISIONS


def time_call(fn: Callable[[], Any], repeats: int, digits: int = 3) -> dict[str, float]:
    """Wall and CPU time of ``fn`` over ``repeats`` runs: median, minimum, CPU median."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {
        "median_s": round(statistics.median(walls), digits),
        "min_s": round(min(walls), digits),
        "cpu_median_s": round(statistics.median(cpus), digits),
        "runs": repeats,
    }


def json_main(
    name: str,
    description: str,
    bench_model: Callable[[str, int], dict[str, Any]],
    default_repeats: int,
    argv: list[str] | None = None,
) -> int:
    """Parse ``--models/--repeats/--threads/--json``, run ``bench_model`` per model, print JSON."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models", default="resnet18,resnet50", help="comma-separated model names")
    p.add_argument("--repeats", type=int, default=default_repeats, help="runs per measurement (median)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--json", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {
        "benchmark": name,
        "machine": {
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
        "results": [bench_model(m.strip(), args.repeats) for m in args.models.split(",") if m.strip()],
    }
    emit_json(out, args.json)
    return 0


def emit_json(out: dict, path: str | None) -> None:
    """Print ``out`` as indented JSON and, with ``path``, write the same text there."""
    text = json.dumps(out, indent=2)
    print(text)
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


def add_prune_run_args(p: argparse.ArgumentParser) -> None:
    """Options every pruning benchmark shares: dense model, data, device, speed settings, saliency."""
    p.add_argument("--dense", required=True, help="dense model.pt (trained to its plateau)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--validation", type=int, default=0,
                   help="training images held out for validation (choices are made on them; default 0)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bn-recalibrate", type=int, default=0,
                   help="batch-norm re-estimation batches after hard pruning (the CPU protocol ran with 0)")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="fp32 or bf16 (autocast; the GPU protocol)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (GPU protocol)")
    p.add_argument("--saliency", default="auto", choices=[AUTO, *SALIENCIES.names()],
                   help="what masks keep: auto, magnitude, activation, fisher")


def cached_prune(args: argparse.Namespace, folder: Path, **prune: Any) -> dict:
    """The result of the finished run in ``folder``, else ``run_prune`` there (continuing a killed run).

    ``args`` carries the options of :func:`add_prune_run_args`; ``prune`` the
    :class:`pimprune.workflows.pipeline.PruneConfig` fields of this run (pattern, crossbar, target...).
    """
    from pimprune.training.loops import Execution, OptimConfig
    from pimprune.workflows.config import PruneConfig, RunConfig
    from pimprune.workflows.pipeline import run_prune

    if (folder / "result.json").exists():
        return json.loads((folder / "result.json").read_text())
    run = RunConfig(
        dataset=args.dataset, data_dir=args.data_dir, batch_size=args.batch_size,
        limit_train=args.limit_train, validation=getattr(args, "validation", 0), seed=args.seed,
        device=args.device, out=str(folder),
        resume=(folder / "checkpoint.pt").exists(), epochs=0, optim=OptimConfig(), eval_each_epoch=False,
        execution=Execution(precision=args.precision, channels_last=args.channels_last),
    )
    config = PruneConfig(**{"dense": args.dense, "bn_recalibrate": args.bn_recalibrate, "saliency": args.saliency,
                            **prune})
    return run_prune(run, config)


def numbers(text: str, what: str) -> list[float]:
    """``"2,4,8"`` -> ``[2.0, 4.0, 8.0]``; anything else is a one-line ConfigError naming the option."""
    from pimprune.errors import ConfigError

    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, e.g. 2,4,8; got {text!r}") from None


def epoch_budgets(text: str) -> list[tuple[int, int]]:
    """``"1+2,3+3"`` -> ``[(1, 2), (3, 3)]`` (pruning + retraining epochs)."""
    from pimprune.errors import ConfigError

    out = []
    for item in (t for t in text.split(",") if t.strip()):
        try:
            pe, re_ = (int(x) for x in item.split("+"))
        except ValueError:
            raise ConfigError(f"--budgets must look like 1+2,3+3 (pruning+retraining epochs); got {text!r}") from None
        out.append((pe, re_))
    return out


def script_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a benchmark's ``main``; a user error (bad value, missing file) prints one line and exits 2."""
    from pimprune.errors import PimpruneError

    try:
        return main(argv)
    except PimpruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
