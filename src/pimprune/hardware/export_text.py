"""The run script and README of a NeuroSim export (:mod:`pimprune.hardware.export`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pimprune.geometry import Crossbar
from pimprune.hardware.neurosim import (
    NEUROSIM_COMMIT,
    NEUROSIM_REPOSITORY,
    PARAM_COLS_LINE,
    SUBARRAY_COLS,
    MappingCheck,
)

__all__ = ["readme", "run_script"]

#: Longest list of line names the README spells out.
_MAX_NAMES = 40


def run_script(n_lines: int, weight_bits: int, input_bits: int, rows: int, images: int) -> str:
    """``run_neurosim.sh``: runs NeuroSim's ``main`` (first argument) on the export's files.

    The command is NeuroSim's own: ``main NetWork.csv <weight bits> <input bits> <sub-array rows>
    <rows read in parallel> weight1.csv input1.csv ...``, with every row read in parallel.
    An optional second argument picks the image (``1`` .. ``images``).
    """
    files = " \\\n".join(f'  "$here/weight{i}.csv" "$inputs/input{i}.csv"' for i in range(1, n_lines + 1))
    return f"""#!/bin/sh
# Runs DNN+NeuroSim V1.4 on this export (written by pimprune export neurosim).
# usage: ./run_neurosim.sh PATH/TO/NeuroSIM/main [IMAGE]    (IMAGE 1..{images}, default 1)
# NeuroSim's arguments: NetWork.csv, weight bits ({weight_bits}), input bits ({input_bits}),
# sub-array rows ({rows}; overrides numRowSubArray of Param.cpp), rows read in parallel ({rows}),
# then one weight and one input file per line. The report goes to stdout.
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 PATH/TO/NeuroSIM/main [IMAGE 1..{images}]" >&2
  exit 2
fi
main=$1
image=${{2:-1}}
here=$(cd "$(dirname "$0")" && pwd)
if [ "$image" = 1 ]; then inputs=$here; else inputs=$here/images/$image; fi
if [ ! -f "$inputs/input1.csv" ]; then
  echo "$0: no input files for image $image (this export has images 1..{images})" >&2
  exit 2
fi
exec "$main" "$here/NetWork.csv" {weight_bits} {input_bits} {rows} {rows} \\
{files}
"""


def _names(names: Sequence[str]) -> str:
    """A comma-separated list, shortened past :data:`_MAX_NAMES` names."""
    shown = ", ".join(f"`{n}`" for n in names[:_MAX_NAMES])
    return shown + (f" and {len(names) - _MAX_NAMES} more" if len(names) > _MAX_NAMES else "")


def _run_section(xbar: Crossbar, wbits: int, ibits: int, n_lines: int, images: int) -> list[str]:
    cols = (
        f"This export is for {xbar.rows}x{xbar.cols} crossbars: before running, change the line "
        f"`{PARAM_COLS_LINE}` in NeuroSim's `Param.cpp` to `numColSubArray = {xbar.cols};` and rebuild "
        "(`make` in its `NeuroSIM` folder)."
        if xbar.cols != SUBARRAY_COLS
        else f"This export is for {xbar.rows}x{xbar.cols} crossbars, which NeuroSim's default `Param.cpp` "
        "runs as it is."
    )
    more = f" (`./run_neurosim.sh PATH/TO/NeuroSIM/main K` for image K of {images})" if images > 1 else ""
    return [
        "## Running NeuroSim on it",
        "",
        f"Get and build DNN+NeuroSim V1.4 ({NEUROSIM_REPOSITORY}; checked at commit {NEUROSIM_COMMIT}): "
        "`make` in its `Inference_pytorch/NeuroSIM` folder builds `main`. Then",
        "",
        "    ./run_neurosim.sh PATH/TO/NeuroSIM/main > report.txt",
        "",
        f"runs it on image 1{more}; the script runs, from any folder,",
        "",
        f"    main NetWork.csv {wbits} {ibits} {xbar.rows} {xbar.rows} weight1.csv input1.csv ... "
        f"weight{n_lines}.csv input{n_lines}.csv",
        "",
        "NeuroSim's arguments are the weight bits, the input bits, the sub-array rows and the rows read "
        "in parallel (all of them), then a weight and an input file per line; the rows argument overrides "
        "`numRowSubArray` of `Param.cpp`, which need not change. NeuroSim's sub-array has "
        f"{SUBARRAY_COLS} columns, fixed in `Param.cpp` (`{PARAM_COLS_LINE}`), not on the command line. "
        + cols,
        "",
    ]


def _files_section(wbits: int, ibits: int, images: int, note: str) -> list[str]:
    more = (
        f"- `images/<k>/input<L>.csv`: the same for image k = 2 .. {images}." if images > 1 else
        "- (one image: `--images N` writes images 2 .. N to `images/<k>/input<L>.csv`.)"
    )
    return [
        "## Files",
        "",
        "- `NetWork.csv`: one line per mapped layer in execution order, NeuroSim's columns IFM_H, IFM_W, "
        "IFM_C, K_H, K_W, OFM_C, pooling flag, stride (no header).",
        "- `weight<L>.csv`: line L's weights, IFM_C x K_H x K_W rows in (channel, kh, kw) order by OFM_C "
        f"columns, times the line's `weight_scale` (max |w| -> 1 - 2^-{wbits - 1}) on NeuroSim's "
        f"{wbits}-bit grid: values in [-1, 1), as NeuroSim's weight loader needs (+1.0 would wrap to 0).",
        "- `input<L>.csv`: line L's input on image 1: the layer's real input (recorded with a forward hook), "
        "padded and unfolded like the layer, times the layer's `input_scale` (its largest |input| over the "
        f"images -> 1 - 2^-{ibits - 1}), on the {ibits}-bit grid; rows = the weight rows, columns = "
        f"positions x {ibits}, `0`/`1` characters; column p*{ibits}+b is bit b of position p (bit 0 the "
        "sign, then the two's-complement bits, most significant first, as NeuroSim's PyTorch wrapper writes).",
        more,
        "- `scales.json`: each line's `weight_scale` and `input_scale`.",
        "- `run_neurosim.sh`: the NeuroSim command.",
        "",
        f"Inputs: {note}.",
        "",
    ]


def _layout_section(lines: Sequence[Any], empty: Sequence[str]) -> list[str]:
    compacted = [line.name for line in lines if line.compacted]
    out = [
        "## How the lines are written",
        "",
        "NeuroSim runs `(IFM_H - K_H + 1) / stride x (IFM_W - K_W + 1) / stride` positions per line: it "
        "ignores padding. Every conv line here has `IFM = output x stride + K - 1` per side, so that this "
        "count equals the layer's real output positions (what pimprune counts). NeuroSim's own network "
        "files write the input size before padding instead: its shipped `NetWork_ResNet18.csv` runs its "
        "7x7 layers with 3x3 kernels on 5 x 5 = 25 positions instead of 49. Kernels, channels, pooling "
        "and stride flags are what NeuroSim's files hold. A linear layer is `1,1,in,1,1,out,0,1`.",
        "",
        "A compacted line (a pruned layer whose matrix has whole rows or columns empty) keeps the layer's "
        "K x K kernel, stride and positions: its M' kept rows are ceil(M' / (K*K)) input channels (zero "
        "rows pad the last one), its kept columns the output channels; its input file holds the inputs "
        "of the kept rows. "
        + (f"Compacted lines: {_names(compacted)}." if compacted else "No line is compacted (dense model)."),
    ]
    if empty:
        out.append(f"Layers without any weight left have no line: {_names(empty)}.")
    return [*out, ""]


def _mapping_section(lines: Sequence[Any], check: MappingCheck, wbits: int) -> list[str]:
    if check.mapping == "novel":
        novel = [line.name for line, n in zip(lines, check.novel, strict=True) if n]
        text = (
            f"NeuroSim (default `novelMapping = true;`) maps the lines whose kernel area is the most common "
            f"({check.kernel_area}) and with IFM_C*K_H*K_W >= {check.subarray_rows} rows with its novel mapping; "
            f"one of them needs OFM_C*{wbits} > {check.subarray_rows}, else NeuroSim stops with 'SubArray Size "
            f"is too large' and crashes. Novel-mapped here: {_names(novel)} (widest {check.novel_pe} columns): "
            "the check passed."
        )
    else:
        text = (
            "Written for conventional mapping: set `novelMapping = false;` in NeuroSim's `Param.cpp` and "
            f"rebuild. Its floorplan needs a line with OFM_C*{wbits} > {2 * check.subarray_rows} (widest here: "
            f"{check.conventional_tile} columns): the check passed."
        )
    return ["## NeuroSim's mapping", "", text, ""]


def readme(
    lines: Sequence[Any],
    xbar: Crossbar,
    label: str,
    check: MappingCheck,
    weight_bits: int,
    input_bits: int,
    images: int,
    note: str,
    empty: Sequence[str] = (),
) -> str:
    """The export's ``README.md``: how to run NeuroSim, the files, how lines are written, what is not modelled."""
    text = [
        f"# DNN+NeuroSim V1.4 input for {label}",
        "",
        f"Written by `pimprune export neurosim`: {len(lines)} lines, {xbar.rows}x{xbar.cols} crossbars, "
        f"{weight_bits}-bit weights, {input_bits}-bit inputs, {images} image(s).",
        "",
        *_run_section(xbar, weight_bits, input_bits, len(lines), images),
        *_files_section(weight_bits, input_bits, images, note),
        *_layout_section(lines, empty),
        *_mapping_section(lines, check, weight_bits),
        "## What NeuroSim does not model",
        "",
        "- The index tables of the sub-row / sub-column compaction: the input index that routes each packed "
        "row to its input, the output index of packed columns, their registers and multiplexers (pimprune's "
        "`index` energy and area, docs/hardware.md). NeuroSim sees a smaller dense layer.",
        "- Sub-rows: a compacted line holds the union of the rows kept by any column (a kept row is kept for "
        "every output); pimprune packs the sub-rows of each column block apart, which can use fewer crossbars.",
        "- Network packing (several layers on one crossbar): NeuroSim gives every line its own tiles.",
        "- In NeuroSim's default SRAM configuration the weight values do not change any result, only the "
        "files' shapes do; the input bits change the dynamic energy.",
    ]
    return "\n".join(text) + "\n"
