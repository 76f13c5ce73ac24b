"""Plot accuracy loss against crossbar compression, one line per pattern, from compression_table.json files.

    python benchmarks/plot_ladder.py runs/cpu_protocol/table_32x32 runs/cpu_protocol/table_32x32_b \
        --out docs/ladder_fmnist_32x32.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+", help="folders (or files) of compression_table.json")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--max-loss", type=float, default=12.0, help="clip the loss axis (points)")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    patterns: dict[str, list[dict]] = {}
    title = ""
    for t in args.tables:
        path = Path(t)
        path = path / "compression_table.json" if path.is_dir() else path
        summary = json.loads(path.read_text())
        title = f"{summary['crossbar']} crossbars, dense {100 * summary['accuracy_dense']:.2f}%"
        for name, info in summary["patterns"].items():
            patterns.setdefault(name, []).extend(info["runs"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, rows in patterns.items():
        rows = sorted(rows, key=lambda r: r["compression"])
        sal = rows[0].get("saliency", "")
        ax.plot([r["compression"] for r in rows], [min(r["accuracy_loss_points"], args.max_loss) for r in rows],
                marker="o", label=f"{name} ({sal})" if sal else name)
    for bound in (0.5, 1.0):
        ax.axhline(bound, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("crossbar compression (dense / pruned crossbars)")
    ax.set_ylabel(f"accuracy loss (points, clipped at {args.max_loss:g})")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
