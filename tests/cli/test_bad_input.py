"""Bad input is refused cleanly by train, prune, evaluate and map.

One table-driven test: every case must exit with status 2, print exactly one
line ``pimprune <command>: error: ...`` naming the problem, show no
traceback, and leave every file of the test folder as it was (nothing
created, nothing changed). Most cases run in-process through
``pimprune.cli.main``; a few run the real command in a subprocess.
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pimprune.cli import build_parser, main
from pimprune.errors import GeometryError
from pimprune.training.checkpoint import save_model, save_tensors
from pimprune.training.models import ModelSpec, create_model
from pimprune.workflows.stages import CHECKPOINT_FORMAT

DATA = ["--dataset", "synthetic", "--limit-train", "32", "--limit-test", "32", "--batch-size", "16"]
MODEL = ["--model", "resnet18", "--width", "0.125", "--stem-stride", "2"]
RUN = [*MODEL, *DATA, "--device", "cpu"]
OUT = ["--out", "{w}/new"]
TRAIN = ["train", *RUN, "--epochs", "1"]
PRUNE = ["prune", *RUN, "--dense-epochs", "1", "--admm-epochs", "1", "--retrain-epochs", "1"]
EVAL = ["--dataset", "synthetic", "--limit-test", "32", "--device", "cpu"]
SWEEP = ["resnet18", "--width", "0.125", "--input-size", "32", "--num-classes", "10"]


class Evil:
    """Pickles to a call of os.system: a checkpoint holding code."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@dataclass
class Case:
    """One bad input: the argv ({w} = the test folder) and a regex the message must match."""

    id: str
    argv: list[str]
    match: str
    subprocess: bool = False
    nan_at_call: int | None = None
    creates: list[str] = field(default_factory=list)


def _case(id_, argv, match, **kw) -> Case:
    return Case(id_, list(argv), match, **kw)


CASES = [
    # crossbar geometry
    _case("prune-geometry-word", [*PRUNE, "--crossbar", "32by32", *OUT],
          r"invalid crossbar geometry '32by32'.*RxC", subprocess=True),
    _case("prune-geometry-zero", [*PRUNE, "--crossbar", "0x32", *OUT], r"'0x32'.*at least 1"),
    _case("prune-geometry-float", [*PRUNE, "--crossbar", "32.5x32", *OUT], r"'32.5x32'"),
    _case("map-geometry", ["map", "resnet18", "--crossbar", "12"], r"invalid crossbar geometry '12'"),
    _case("map-geometry-negative", ["map", "resnet18", "--crossbar=-4x4"], r"'-4x4'"),
    # packing, objective, distillation, validation options
    _case("prune-packing-network-objective", [*PRUNE, "--packing", "network", "--objective", "energy", *OUT],
          r"network-packing budget counts shared crossbars only"),
    _case("prune-objective-unknown", [*PRUNE, "--objective", "power", *OUT], r"unknown objective 'power'"),
    _case("prune-distill-above-1", [*PRUNE, "--distill", "2", *OUT], r"distillation weight must be in \[0, 1\]"),
    _case("prune-validation-all", [*PRUNE, "--validation", "100000", *OUT], r"validation must be an integer"),
    _case("prune-subrow-channel-uniform", [*PRUNE, "--pattern", "subrow-channel", "--allocation", "uniform", *OUT],
          r"not available for the subrow-channel pattern"),
    _case("prune-guard-outputs-subcolumn", [*PRUNE, "--pattern", "subcolumn", "--guard", "outputs", *OUT],
          r"'subcolumn' has no output groups to guard"),
    _case("prune-guard-outputs-uniform", [*PRUNE, "--pattern", "crossbar", "--guard", "outputs",
                                          "--allocation", "uniform", *OUT], r"rule of the global allocation"),
    # numbers out of range
    _case("prune-target-below-1", [*PRUNE, "--target-compression", "0.5", *OUT],
          r"target compression must be .*>= 1"),
    _case("prune-target-unreachable", [*PRUNE, "--target-compression", "1e6", *OUT],
          r"highest reachable compression"),
    _case("prune-target-nan", [*PRUNE, "--target-compression", "nan", *OUT],
          r"--target-compression.*finite"),
    _case("prune-target-inf", [*PRUNE, "--target-compression", "inf", *OUT],
          r"--target-compression.*finite"),
    _case("train-epochs-negative", [*TRAIN, "--epochs", "-1", *OUT], r"--epochs.*>= 0"),
    _case("train-epochs-word", [*TRAIN, "--epochs", "ten", *OUT], r"--epochs.*'ten'"),
    _case("train-epochs-huge", [*TRAIN, "--epochs", "1000000", *OUT], r"epochs must be .*100000"),
    _case("train-lr-huge", [*TRAIN, "--lr", "1e9", *OUT], r"learning rate must be in \(0, 10\]"),
    _case("train-lr-zero", [*TRAIN, "--lr", "0", *OUT], r"--lr.*> 0"),
    _case("train-lr-nan", [*TRAIN, "--lr", "nan", *OUT], r"--lr.*finite"),
    _case("prune-admm-lr-huge", [*PRUNE, "--admm-lr", "100", *OUT], r"prune lr must be in"),
    _case("prune-retrain-lr-negative", [*PRUNE, "--retrain-lr=-1", *OUT], r"--retrain-lr"),
    _case("train-width-huge", [*TRAIN, "--width", "100", *OUT], r"width must be .*\(0, 8\]"),
    _case("train-width-zero", [*TRAIN, "--width", "0", *OUT], r"--width.*> 0"),
    _case("train-batch-zero", [*TRAIN, "--batch-size", "0", *OUT], r"--batch-size.*positive"),
    _case("train-batch-huge", [*TRAIN, "--batch-size", str(1 << 21), *OUT],
          r"batch size must be an integer in"),
    _case("train-momentum", [*TRAIN, "--momentum", "1.5", *OUT], r"momentum must be in \[0, 1\)"),
    _case("train-weight-decay", [*TRAIN, "--weight-decay=-1", *OUT], r"weight decay must be"),
    _case("train-label-smoothing", [*TRAIN, "--label-smoothing", "nan", *OUT],
          r"label smoothing must be"),
    _case("train-warmup", [*TRAIN, "--warmup-epochs=-2", *OUT], r"warm-up must be"),
    _case("train-limit-zero", [*TRAIN, "--limit-train", "0", *OUT], r"--limit-train.*positive"),
    _case("train-seed-negative", [*TRAIN, "--seed=-3", *OUT], r"--seed.*>= 0"),
    _case("train-stem-stride-zero", [*TRAIN, "--stem-stride", "0", *OUT], r"--stem-stride"),
    _case("prune-updates-zero", [*PRUNE, "--updates-per-epoch", "0", *OUT],
          r"--updates-per-epoch.*positive"),
    _case("prune-rho-zero", [*PRUNE, "--rho", "0", *OUT], r"--rho.*> 0"),
    _case("map-classes-zero", ["map", "resnet18", "--num-classes", "0"], r"num_classes must be"),
    _case("map-width-negative", ["map", "resnet18", "--width=-1"], r"width must be"),
    _case("map-input-tiny", ["map", "resnet18", "--input-size", "2"], r"input_size must be"),
    _case("evaluate-batch-zero", ["evaluate", "{w}/dense/model.pt", *EVAL, "--batch-size", "0"],
          r"--batch-size.*positive"),
    # unknown names
    _case("train-model", ["train", "--model", "resnet999", *DATA, "--device", "cpu", *OUT],
          r"unknown model 'resnet999'; choose one of"),
    _case("map-model", ["map", "resnet999"], r"unknown model 'resnet999'"),
    _case("prune-pattern", [*PRUNE, "--pattern", "diagonal", *OUT],
          r"unknown pattern 'diagonal'; choose one of"),
    _case("prune-method", [*PRUNE, "--method", "best", *OUT], r"--method.*invalid choice"),
    _case("prune-allocation", [*PRUNE, "--allocation", "fair", *OUT], r"--allocation.*invalid"),
    _case("train-precision", [*TRAIN, "--precision", "fp8", *OUT], r"unknown precision 'fp8'"),
    _case("prune-saliency", [*PRUNE, "--saliency", "taylor", *OUT],
          r"unknown saliency 'taylor'; choose one of"),
    _case("prune-saliency-batches", [*PRUNE, "--saliency-batches", "0", *OUT],
          r"--saliency-batches.*positive"),
    _case("train-dataset", [*TRAIN, "--dataset", "mnist2", *OUT],
          r"unknown dataset 'mnist2'; choose one of"),
    _case("evaluate-dataset", ["evaluate", "{w}/dense/model.pt", "--dataset", "mnist2"],
          r"unknown dataset 'mnist2'"),
    _case("train-device-word", [*TRAIN, "--device", "tpu", *OUT], r"device 'tpu'"),
    _case("train-device-gpu", [*TRAIN, "--device", "cuda:99", *OUT], r"'cuda:99'"),
    _case("prune-keep-dense", [*PRUNE, "--keep-dense", "nosuchlayer", *OUT],
          r"'nosuchlayer' is not a mapped layer"),
    _case("prune-budgets-missing-option", [*PRUNE, "--allocation", "file", *OUT],
          r"budgets file goes with allocation 'file'"),
    _case("prune-budgets-no-file", [*PRUNE, "--allocation", "file", "--budgets",
                                    "{w}/nofile.yaml", *OUT], r"budgets file"),
    _case("prune-budgets-bad-yaml", [*PRUNE, "--allocation", "file", "--budgets",
                                     "{w}/bad.yaml", *OUT], r"not valid YAML"),
    _case("prune-budgets-bad-layer", [*PRUNE, "--allocation", "file", "--budgets",
                                      "{w}/badlayer.yaml", *OUT], r"'nosuch.layer' is not"),
    # data
    _case("train-data-missing", [*TRAIN, "--dataset", "fashion-mnist", "--data-dir",
                                 "{w}/nodata", *OUT], r"folder .*nodata does not exist"),
    _case("train-data-empty", [*TRAIN, "--dataset", "fashion-mnist", "--data-dir",
                               "{w}/emptydir", *OUT], r"folder .*emptydir is empty"),
    _case("train-data-is-file", [*TRAIN, "--dataset", "fashion-mnist", "--data-dir",
                                 "{w}/afile", *OUT], r"afile is not a folder"),
    _case("train-data-truncated", [*TRAIN, "--dataset", "fashion-mnist", "--data-dir",
                                   "{w}/fmnist_truncated", *OUT], r"truncated or corrupt"),
    _case("train-data-bad-gzip", [*TRAIN, "--dataset", "fashion-mnist", "--data-dir",
                                  "{w}/fmnist_gzip", *OUT], r"gzip"),
    _case("train-data-cifar-corrupt", [*TRAIN, "--dataset", "cifar10", "--data-dir",
                                       "{w}/cifar", *OUT], r"CIFAR-10 file .*corrupt"),
    _case("evaluate-data-missing", ["evaluate", "{w}/dense/model.pt", "--dataset",
                                    "fashion-mnist", "--data-dir", "{w}/nodata"],
          r"does not exist"),
    # checkpoints
    _case("prune-dense-other-arch", [*PRUNE, "--dense", "{w}/other_arch/model.pt", *OUT],
          r"does not fit"),
    _case("prune-dense-other-channels", [*PRUNE, "--dense", "{w}/grey/model.pt", *OUT],
          r"in_channels=1 .*needs 3"),
    _case("prune-dense-corrupt", [*PRUNE, "--dense", "{w}/corrupt/model.pt", *OUT], r"corrupt"),
    _case("prune-dense-missing", [*PRUNE, "--dense", "{w}/nofile.pt", *OUT], r"does not exist"),
    _case("prune-dense-evil", [*PRUNE, "--dense", "{w}/evil/model.pt", *OUT],
          r"pickled code.*refused"),
    _case("evaluate-other-arch", ["evaluate", "{w}/other_arch/model.pt", *EVAL], r"does not fit"),
    _case("evaluate-corrupt", ["evaluate", "{w}/corrupt/model.pt", *EVAL], r"corrupt"),
    _case("evaluate-truncated", ["evaluate", "{w}/truncated/model.pt", *EVAL],
          r"corrupt or truncated"),
    _case("evaluate-evil", ["evaluate", "{w}/evil/model.pt", *EVAL],
          r"pickled code.*refused.*weights_only", subprocess=True),
    _case("evaluate-bad-json", ["evaluate", "{w}/badjson/model.pt", *EVAL], r"not valid JSON"),
    _case("evaluate-no-spec", ["evaluate", "{w}/nospec/model.pt", *EVAL], r"no model spec"),
    _case("evaluate-bad-spec", ["evaluate", "{w}/badspec/model.pt", *EVAL],
          r"describes no model"),
    _case("evaluate-no-json", ["evaluate", "{w}/nojson/model.pt", *EVAL], r"no model.json"),
    _case("evaluate-other-dataset", ["evaluate", "{w}/grey/model.pt", *EVAL],
          r"input channels.*dataset it was trained on"),
    _case("evaluate-empty-folder", ["evaluate", "{w}/emptydir", *EVAL], r"does not exist"),
    _case("map-corrupt", ["map", "{w}/corrupt/model.pt"], r"corrupt"),
    _case("map-evil", ["map", "{w}/evil/model.pt"], r"refused"),
    _case("map-other-arch", ["map", "{w}/other_arch/model.pt"], r"does not fit"),
    _case("resume-corrupt", [*TRAIN, "--out", "{w}/resume_corrupt", "--resume"], r"corrupt"),
    _case("resume-evil", [*TRAIN, "--out", "{w}/resume_evil", "--resume"], r"refused"),
    _case("resume-other-settings", [*TRAIN, "--out", "{w}/resume_other", "--resume"],
          r"other settings: kind \(was 'prune', now 'train'\)"),
    _case("resume-old-format", [*TRAIN, "--out", "{w}/resume_old", "--resume"],
          r"not a run checkpoint of this pimprune version"),
    # output folder
    _case("train-out-under-file", [*TRAIN, "--out", "{w}/afile/sub"],
          r"afile is a file; choose a folder", subprocess=True),
    _case("train-out-is-file", [*TRAIN, "--out", "{w}/afile"], r"afile is a file"),
    _case("train-out-proc", [*TRAIN, "--out", "/proc/pimprune-test/run"],
          r"cannot create output folder"),
    _case("train-out-finished", [*TRAIN, "--out", "{w}/finished"],
          r"already holds a finished run"),
    _case("train-out-running", [*TRAIN, "--out", "{w}/resume_other"], r"pass --resume"),
    _case("train-out-empty", [*TRAIN, "--out", ""], r"--out is empty"),
    # sweep and hardware
    _case("sweep-geometry", ["sweep", *SWEEP, "--crossbar", "12"], r"invalid crossbar geometry '12'"),
    _case("sweep-rows-zero", ["sweep", *SWEEP, "--rows", "0", "--cols", "32"], r"--rows value '0'"),
    _case("sweep-both-grids", ["sweep", *SWEEP, "--rows", "32", "--crossbar", "32x32"],
          r"either --crossbar or --rows"),
    _case("sweep-target", ["sweep", *SWEEP, "--crossbar", "32x32", "--target-compression", "0.5"],
          r"--target-compression must be"),
    _case("sweep-energy", ["sweep", *SWEEP, "--crossbar", "32x32", "--keep-energy", "2"],
          r"--keep-energy must be"),
    _case("sweep-model", ["sweep", "resnet999", "--crossbar", "32x32"], r"unknown model"),
    _case("sweep-pattern", ["sweep", *SWEEP, "--crossbar", "32x32", "--pattern", "foo"],
          r"unknown pattern 'foo'"),
    _case("sweep-evil", ["sweep", "{w}/evil/model.pt", "--crossbar", "32x32"], r"refused"),
    _case("sweep-corrupt", ["sweep", "{w}/corrupt/model.pt", "--crossbar", "32x32"], r"corrupt"),
    _case("hardware-preset", ["hardware", "nosuchpreset"], r"no hardware preset or file"),
    _case("hardware-field", ["hardware", "isaac", "--set", "foo=1"], r"unknown hardware field"),
    _case("hardware-value", ["hardware", "isaac", "--set", "read_cycle_ns=-5"],
          r"read_cycle_ns must be"),
    _case("hardware-file", ["hardware", "{w}/afile"], r"must hold a mapping"),
    _case("hardware-option", ["hardware", "--no-such-option"], r"unrecognized arguments"),
    # training diverges: one line, the last good checkpoint stays
    _case("train-nan-loss", [*TRAIN, "--epochs", "2", "--out", "{w}/nan"],
          r"loss became nan.*lower the learning rate \(--lr\).*dense epoch 1",
          nan_at_call=3, creates=["nan", "nan/checkpoint.pt"]),
    _case("prune-nan-loss", [*PRUNE, "--method", "admm", "--out", "{w}/nan_prune"],
          r"admm 1/1: loss became nan.*--admm-lr.*last good checkpoint",
          nan_at_call=3, creates=["nan_prune", "nan_prune/checkpoint.pt"]),
]  # fmt: skip


AVAILABLE = set(build_parser()._subparsers._group_actions[0].choices)


def _idx(magic: int, dims: tuple[int, ...], data: bytes) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + data


def build_world(w: Path) -> None:
    """Folders and files that the cases point at (none of them may change)."""
    spec = ModelSpec("resnet18", 10, 3, 32, width=0.125, stem_stride=2)
    save_model(create_model(spec), spec, w / "dense")
    dense_pt = (w / "dense" / "model.pt").read_bytes()
    dense_json = (w / "dense" / "model.json").read_text()

    def checkpoint_folder(name: str, pt: bytes | None, meta: str | None) -> None:
        (w / name).mkdir()
        if pt is not None:
            (w / name / "model.pt").write_bytes(pt)
        if meta is not None:
            (w / name / "model.json").write_text(meta)

    other = create_model(ModelSpec("resnet20", 10, 3, 32, width=0.25))
    checkpoint_folder("other_arch", None, dense_json)
    torch.save(other.state_dict(), w / "other_arch" / "model.pt")
    grey = replace(spec, in_channels=1, input_size=28)
    save_model(create_model(grey), grey, w / "grey")
    checkpoint_folder("corrupt", os.urandom(4096), dense_json)
    checkpoint_folder("truncated", dense_pt[: len(dense_pt) // 2], dense_json)
    checkpoint_folder("evil", None, dense_json)
    torch.save({"conv1.weight": Evil()}, w / "evil" / "model.pt")
    checkpoint_folder("badjson", dense_pt, "{not json")
    checkpoint_folder("nospec", dense_pt, json.dumps({"format": "pimprune-model"}))
    checkpoint_folder("badspec", dense_pt, json.dumps({"spec": {"name": "resnet18", "depth": 7}}))
    checkpoint_folder("nojson", dense_pt, None)
    (w / "afile").write_text("a regular file\n")
    (w / "emptydir").mkdir()
    (w / "bad.yaml").write_text("layer1.0.conv1: [unclosed\n")
    (w / "badlayer.yaml").write_text("nosuch.layer: 3\n")

    fm = w / "fmnist_truncated"
    fm.mkdir()
    for prefix, n in (("train", 10), ("t10k", 4)):
        images = _idx(0x803, (n, 28, 28), bytes(n * 28 * 28))
        (fm / f"{prefix}-images-idx3-ubyte").write_bytes(images[: len(images) // 2])
        (fm / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(0x801, (n,), bytes(n)))
    gz = w / "fmnist_gzip"
    gz.mkdir()
    for prefix, kind in (("train", "images-idx3"), ("train", "labels-idx1"),
                         ("t10k", "images-idx3"), ("t10k", "labels-idx1")):  # fmt: skip
        (gz / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(b"\0" * 64)[:20])
    cifar = w / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / name).write_bytes(b"\x80\x04not a pickle at all")

    for name, state in (
        ("resume_corrupt", None),
        ("resume_evil", {"format": CHECKPOINT_FORMAT, "identity": Evil()}),
        ("resume_other", {"format": CHECKPOINT_FORMAT, "identity": {"kind": "prune"}}),
        ("resume_old", {"epoch": 1, "config_key": "train|resnet18"}),
    ):
        (w / name).mkdir()
        if state is None:
            (w / name / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated zip")
        elif name == "resume_evil":
            torch.save(state, w / name / "checkpoint.pt")
        else:
            save_tensors(state, w / name / "checkpoint.pt")
    (w / "finished").mkdir()
    (w / "finished" / "result.json").write_text(json.dumps({"kind": "train"}))


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the hash of its content (``dir`` for folders)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("world")
    build_world(w)
    return w


def _nan_after(monkeypatch, call: int) -> None:
    """From the ``call``-th training loss on, the loss is NaN (evaluation losses unaffected)."""
    real = F.cross_entropy
    count = {"n": 0}

    def fake(input, target, *args, **kwargs):
        loss = real(input, target, *args, **kwargs)
        if kwargs.get("reduction", "mean") == "mean":
            count["n"] += 1
            if count["n"] >= call:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(F, "cross_entropy", fake)


def _run(case: Case, argv: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    if case.subprocess:
        env = {**os.environ, "PIMPRUNE_QUIET": "1", "OMP_NUM_THREADS": "1"}
        env.pop("PIMPRUNE_DEBUG", None)
        proc = subprocess.run(
            [sys.executable, "-m", "pimprune", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        return proc.returncode, proc.stdout, proc.stderr
    if case.nan_at_call is not None:
        _nan_after(monkeypatch, case.nan_at_call)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, world, capsys, monkeypatch):
    argv = [a.replace("{w}", str(world)) for a in case.argv]
    if argv[0] not in AVAILABLE:
        pytest.skip(f"pimprune {argv[0]} is not available")
    before = snapshot(world)
    code, out, err = _run(case, argv, capsys, monkeypatch)
    command = argv[0]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pimprune {command}: error: "), lines[0]
    assert "Traceback" not in err + out
    assert re.search(case.match, lines[0]), lines[0]
    after = snapshot(world)
    created = sorted(set(after) - set(before))
    assert created == case.creates
    assert {k: v for k, v in after.items() if k in before} == before
    for name in case.creates:  # the checkpoint a diverged run keeps is the last good one
        if name.endswith("checkpoint.pt"):
            state = torch.load(world / name, weights_only=True)
            assert state["stage"] in ("dense", "admm") and state["epoch"] >= 1
            assert all(bool(torch.isfinite(t).all()) for t in state["model"].values()
                       if t.is_floating_point())  # fmt: skip
            shutil.rmtree(world / name.split("/")[0])


def test_debug_shows_the_traceback(world):
    argv = ["--debug", *PRUNE, "--crossbar", "32by32", "--out", str(world / "new")]
    with pytest.raises(GeometryError, match="32by32"):
        main(argv)
    assert not (world / "new").exists()
