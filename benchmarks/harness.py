"""Shared timing and command-line harness of the JSON benchmarks (bench_counting, bench_analysis)."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


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
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0
