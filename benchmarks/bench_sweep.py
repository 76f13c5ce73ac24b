"""Time of the design-space sweep of ResNet18 on the 25-geometry grid, as a user runs it.

Runs ``pimprune sweep resnet18 --rows 32,64,128,256,512 --cols 32,64,128,256,512 --no-plot``
(network packing, its placement costing and the chip's tiles included) ``--repeats`` times as a
subprocess (imports and model construction counted, as for a user) and reports the median wall
time and the median CPU time of the child (user + system). The build machine is often loaded by
training runs: the CPU time is the steadier figure, and the load average is recorded beside it.
``--source DIR`` times another source tree instead (e.g. the code before a change, unpacked with
``git archive HEAD src | tar -x -C DIR``), so before and after can be run in turn under the same
load. ``--profile`` adds one in-process run under cProfile (CPU clock) with the CPU time of each
stage: imports and model, projection (the keep-energy bisection), per-layer costing, network
packing, placement costing.

Usage::

    python benchmarks/bench_sweep.py [--repeats 3] [--threads N] [--source DIR] [--profile] [--json OUT]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIDES = "32,64,128,256,512"
COMMAND = ["sweep", "resnet18", "--rows", SIDES, "--cols", SIDES, "--no-plot"]
#: Stages of the profile: name -> (file suffix, function) whose cumulative CPU time is reported.
STAGES = {
    "projection": ("workflows/sweep.py", "__call__"),
    "per_layer_costing": ("hardware/cost.py", "network_cost"),
    "latency": ("hardware/latency.py", "latency"),
    "network_packing": ("mapping/network.py", "pack_network"),
    "placement_costing": ("hardware/placement_cost.py", "placement_cost"),
    "chip": ("workflows/mapping_cost.py", "chip_entry"),
    "model": ("workflows/sweep.py", "load_sweep_model"),
    "sweep_total": ("workflows/sweep.py", "run_sweep"),
}


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_runs(repeats: int, env: dict[str, str]) -> list[dict[str, float]]:
    """Wall and CPU seconds of each run of the sweep command in a fresh process."""
    runs = []
    for _ in range(repeats):
        load = os.getloadavg()[0]
        c0, w0 = _child_cpu(), time.perf_counter()
        subprocess.run([sys.executable, "-m", "pimprune", *COMMAND], env=env, check=True, stdout=subprocess.DEVNULL)
        runs.append({"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(_child_cpu() - c0, 2),
                     "load_1min": round(load, 2)})
    return runs


def profile_stages() -> dict[str, float]:
    """CPU seconds of each stage of :data:`STAGES` in one in-process run (cProfile, CPU clock)."""
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    from pimprune.cli import main

    main([*COMMAND, "--json"])
    prof.disable()
    stats = pstats.Stats(prof).stats
    out = {}
    for stage, (suffix, func) in STAGES.items():
        out[stage] = round(sum(v[3] for (f, _, name), v in stats.items() if f.endswith(suffix) and name == func), 2)
    out["total_cpu_s"] = round(sum(v[2] for v in stats.values()), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    """Time the sweep and print (and optionally write) the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: unset)")
    p.add_argument("--source", default=None, help="source tree (its src/) to time instead of the installed one")
    p.add_argument("--profile", action="store_true", help="add one in-process run under cProfile, by stage")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if args.source:
        env["PYTHONPATH"] = str(Path(args.source).resolve() / "src") + os.pathsep + env.get("PYTHONPATH", "")
    runs = time_runs(args.repeats, env)
    out = {
        "benchmark": "bench_sweep",
        "command": "pimprune " + " ".join(COMMAND),
        "source": args.source or "installed",
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "omp_num_threads": env.get("OMP_NUM_THREADS")},
        "runs": runs,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
    }
    if args.profile:
        out["profile_cpu_s"] = profile_stages()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
