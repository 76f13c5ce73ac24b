"""Throughput and peak memory of the functional crossbar simulator.

For a few representative layers (ResNet18 shapes at 224 px, a depthwise conv,
the classifier) it packs a pruned weight matrix on a crossbar geometry, then
times ``simulate_layer`` against the dense layer's own forward in the same run
(interleaved, best of repeats, which is robust to other load on the machine)
and reports the ratio. For conv layers it also
measures the peak memory of the simulation (extra bytes allocated during the
call, from the PyTorch profiler's allocation events on CPU, or
``torch.cuda.max_memory_allocated`` on CUDA) relative to the layer's unfolded
input, next to the dense forward's peak.

Usage::

    python benchmarks/bench_simulator.py [--json OUT] [--crossbar 128x128]
        [--batch 1] [--repeats 7] [--device cpu|cuda] [--threads 1]

Pruning: each scheme is shown on a matrix pruned in its own pattern (80% of
sub-rows per column block for ``subrow``, of sub-columns per row block for
``subcolumn``, of single weights for ``unstructured``); ``dense`` is unpruned.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm import tqdm

from pimprune.geometry import Crossbar
from pimprune.mapping.matrices import matrix_to_weight, weight_to_matrix
from pimprune.mapping.packing import pack
from pimprune.mapping.simulate import simulate_layer


@dataclass
class Case:
    """One layer to benchmark.

    Attributes:
        name: Label in the table.
        make: Builds the layer.
        input_shape: Input shape per batch element (``(C, H, W)`` or ``(features,)``).
        rows_per_sample: Input rows per batch element for a linear layer (its batch).
    """

    name: str
    make: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    rows_per_sample: int = 1


CASES: list[Case] = [
    Case("conv1 7x7/2 3->64 @224", lambda: nn.Conv2d(3, 64, 7, 2, 3, bias=False), (3, 224, 224)),
    Case("layer1 3x3 64->64 @56", lambda: nn.Conv2d(64, 64, 3, 1, 1, bias=False), (64, 56, 56)),
    Case(
        "layer3 3x3 256->256 @14", lambda: nn.Conv2d(256, 256, 3, 1, 1, bias=False), (256, 14, 14)
    ),
    Case("layer4 3x3 512->512 @7", lambda: nn.Conv2d(512, 512, 3, 1, 1, bias=False), (512, 7, 7)),
    Case("dw 3x3 g=128 @28", lambda: nn.Conv2d(128, 128, 3, 1, 1, groups=128), (128, 28, 28)),
    Case("fc 512->1000 x64", lambda: nn.Linear(512, 1000), (512,), rows_per_sample=64),
]

#: Fraction of units removed by the benchmark's pruning.
SPARSITY: float = 0.8
SCHEMES: tuple[str, ...] = ("dense", "unstructured", "subrow", "subcolumn")


def _keep_top(norms: torch.Tensor, dim: int) -> torch.Tensor:
    """Keep the largest ``1 - SPARSITY`` of ``norms`` along ``dim`` (at least one)."""
    n = norms.shape[dim]
    k = max(1, round(n * (1 - SPARSITY)))
    threshold = norms.topk(k, dim=dim).values.narrow(dim, k - 1, 1)
    return norms >= threshold


def prune_matrix(matrix: torch.Tensor, scheme: str, xbar: Crossbar) -> torch.Tensor:
    """Prune ``(g, M, N)`` in the pattern that ``scheme`` compacts."""
    g, m, n = matrix.shape
    if scheme == "dense":
        return matrix
    if scheme == "unstructured":
        return matrix * _keep_top(matrix.abs().flatten(1), 1).view_as(matrix)
    pm, pn = (-m) % xbar.rows, (-n) % xbar.cols
    padded = nn.functional.pad(matrix, (0, pn, 0, pm))
    if scheme == "subrow":
        blocks = padded.view(g, m + pm, -1, xbar.cols)
        keep = _keep_top(blocks.pow(2).sum(3)[:, :m], 1)  # (g, M, NB)
        mask = keep.repeat_interleave(xbar.cols, 2)[:, :, :n]
    else:
        blocks = padded.view(g, -1, xbar.rows, n + pn)
        keep = _keep_top(blocks.pow(2).sum(2)[..., :n], 2)  # (g, MB, N)
        mask = keep.repeat_interleave(xbar.rows, 1)[:, :m]
    return matrix * mask


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pair(
    first: Callable[[], object], second: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of two calls, interleaved so both see the same load."""
    first()
    second()
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((first, a), (second, b)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - start)
    return min(a), min(b)


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Largest number of extra bytes held at once while ``fn`` runs."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak


@dataclass
class Row:
    """One line of the result table."""

    layer: str
    scheme: str
    crossbars: int
    dense_ms: float
    simulate_ms: float
    ratio: float
    unfolded_mb: float | None = None
    output_mb: float | None = None
    dense_peak_mb: float | None = None
    simulate_peak_mb: float | None = None
    peak_over_unfolded: float | None = None


def run_case(case: Case, scheme: str, args: argparse.Namespace, device: torch.device) -> Row:
    """Benchmark one layer under one scheme."""
    gen = torch.Generator().manual_seed(0)
    module = case.make().to(device).eval()
    groups = module.groups if isinstance(module, nn.Conv2d) else 1
    xbar = Crossbar.parse(args.crossbar)
    with torch.no_grad():
        matrix = prune_matrix(weight_to_matrix(module.weight, groups), scheme, xbar)
        module.weight.copy_(matrix_to_weight(matrix, module.weight.shape))
        matrix = weight_to_matrix(module.weight, groups)
    packed = pack(matrix, xbar, scheme)
    batch = args.batch * case.rows_per_sample
    x = torch.randn((batch, *case.input_shape), generator=gen).to(device)
    with torch.no_grad():
        torch.testing.assert_close(simulate_layer(module, packed, x), module(x))
        dense_s, sim_s = time_pair(
            lambda: module(x), lambda: simulate_layer(module, packed, x), args.repeats, device
        )
        row = Row(
            case.name, scheme, packed.n_crossbars, dense_s * 1e3, sim_s * 1e3, sim_s / dense_s
        )
        if isinstance(module, nn.Conv2d) and not args.no_memory:
            mb = 1 / 2**20
            unfolded = nn.functional.unfold(
                x, module.kernel_size, module.dilation, module.padding, module.stride
            )
            row.unfolded_mb = unfolded.numel() * unfolded.element_size() * mb
            row.output_mb = module(x).numel() * x.element_size() * mb
            del unfolded
            row.dense_peak_mb = peak_bytes(lambda: module(x), device) * mb
            sim_peak = peak_bytes(lambda: simulate_layer(module, packed, x), device)
            row.simulate_peak_mb = sim_peak * mb
            row.peak_over_unfolded = row.simulate_peak_mb / row.unfolded_mb
    return row


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    """Print the results as an aligned table."""
    print(
        f"crossbar {args.crossbar}, batch {args.batch}, device {args.device}, "
        f"threads {torch.get_num_threads()}, best of {args.repeats}"
    )
    head = (
        f"{'layer':26} {'scheme':12} {'xbars':>6} {'dense ms':>9} {'sim ms':>9} {'ratio':>7} "
        f"{'unf MB':>7} {'out MB':>7} {'dense pk':>8} {'sim pk':>8} {'pk/unf':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.layer:26} {r.scheme:12} {r.crossbars:6d} {r.dense_ms:9.2f} {r.simulate_ms:9.2f} "
            f"{r.ratio:7.1f} {_fmt(r.unfolded_mb, '7.1f')} {_fmt(r.output_mb, '7.1f')} "
            f"{_fmt(r.dense_peak_mb, '8.1f')} {_fmt(r.simulate_peak_mb, '8.1f')} "
            f"{_fmt(r.peak_over_unfolded, '6.2f')}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    parser.add_argument("--crossbar", default="128x128", help="geometry RxC (default 128x128)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (default 7)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: stable timings on a shared machine; 0: torch's)",
    )
    parser.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated schemes")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    schemes = [s for s in args.schemes.split(",") if s]
    jobs = [(case, scheme) for case in CASES for scheme in schemes]
    rows = [
        run_case(case, scheme, args, device)
        for case, scheme in tqdm(jobs, desc="bench", file=sys.stderr)
    ]
    print_table(rows, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "crossbar": args.crossbar,
                    "batch": args.batch,
                    "device": args.device,
                    "threads": torch.get_num_threads(),
                    "repeats": args.repeats,
                    "rows": [asdict(r) for r in rows],
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
