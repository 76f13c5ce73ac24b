"""A run killed at any moment resumes with --resume and ends with the same result.

- In-process: the run is interrupted right after each checkpoint write in
  turn (and before the first one), then resumed; the result and the weights
  must equal those of an uninterrupted run bit for bit.
- Subprocess: the real command is SIGKILLed twice (mid dense training and
  mid ADMM) and resumed each time; it must end like an uninterrupted run
  started at the same time.
- An atomic write killed half-way never leaves a file that looks complete.
"""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pimprune.workflows.stages as stages
from pimprune.cli import main
from pimprune.errors import CheckpointError
from pimprune.training.checkpoint import atomic_write, load_tensors, remove_stale_temps, save_tensors

TINY = [
    "--model", "resnet18", "--width", "0.125", "--stem-stride", "2",
    "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "32",
    "--batch-size", "16", "--device", "cpu",
]  # fmt: skip
PRUNE = [
    "--pattern", "subrow", "--crossbar", "16x16", "--target-compression", "4",
    "--dense-epochs", "1", "--admm-epochs", "2", "--retrain-epochs", "1",
]  # fmt: skip
VOLATILE = ("wall_time_s", "provenance", "resumed_from")


class Killed(KeyboardInterrupt):
    """Stands for SIGKILL at a chosen moment (KeyboardInterrupt passes every handler)."""


def comparable(folder: Path) -> dict:
    result = json.loads((folder / "result.json").read_text())
    for key in VOLATILE:
        result.pop(key)
    for key in ("resume", "out"):  # where and how it was started
        result["config"]["run"].pop(key)
    return result


def assert_same_run(a: Path, b: Path) -> None:
    assert comparable(a) == comparable(b)
    sa = torch.load(a / "model.pt", weights_only=True)
    sb = torch.load(b / "model.pt", weights_only=True)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert json.loads((a / "model.json").read_text()) == json.loads((b / "model.json").read_text())
    assert not (b / "checkpoint.pt").exists()
    assert not [p for p in b.iterdir() if p.name.startswith(".")]


def interrupt_after_save(monkeypatch, n: int) -> None:
    """Make the n-th checkpoint/result write of the pipeline the last thing the run does."""
    calls = {"count": 0}

    def wrap(real):
        def write(obj, path):
            out = real(obj, path)
            calls["count"] += 1
            if calls["count"] == n:
                raise Killed
            return out

        return write

    monkeypatch.setattr(stages, "save_tensors", wrap(save_tensors))
    monkeypatch.setattr(stages, "save_json", wrap(stages.save_json))
    if n == 0:  # before the first checkpoint: killed inside the first epoch

        def epoch(*args, **kwargs):
            raise Killed

        monkeypatch.setattr(stages, "train_epoch", epoch)


def count_writes(monkeypatch, argv) -> int:
    calls = {"count": 0}

    def wrap(real):
        def write(obj, path):
            calls["count"] += 1
            return real(obj, path)

        return write

    with monkeypatch.context() as m:
        m.setattr(stages, "save_tensors", wrap(save_tensors))
        m.setattr(stages, "save_json", wrap(stages.save_json))
        assert main(argv) == 0
    return calls["count"]


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("prune", ["--method", "admm"]),
        ("prune", ["--method", "gradual"]),
        ("prune", ["--method", "gradual", "--saliency", "fisher", "--saliency-batches", "2"]),
        ("prune", ["--method", "oneshot"]),
        ("prune", ["--method", "oneshot", "--weight-bits", "4", "--input-bits", "8", "--train-noise", "0.05"]),
        ("train", ["--epochs", "2"]),
    ],
    ids=["admm", "gradual", "gradual-fisher", "oneshot", "oneshot-quant", "train"],
)
def test_interrupt_at_every_checkpoint_then_resume(command, extra, tmp_path, monkeypatch, capsys):
    base = [command, *TINY, *(PRUNE if command == "prune" else []), *extra]
    reference = tmp_path / "reference"
    writes = count_writes(monkeypatch, [*base, "--out", str(reference)])
    assert writes >= 3
    # n = 0: killed before the first checkpoint; n = writes: after result.json
    points = range(writes + 1) if command != "oneshot" else (writes // 2,)
    for n in points:
        out = tmp_path / f"killed{n}"
        with monkeypatch.context() as m:
            interrupt_after_save(m, n)
            assert main([*base, "--out", str(out)]) == 130
        assert (out / "result.json").exists() == (n == writes)
        (out / ".checkpoint.pt.stale.tmp").write_bytes(b"left by a killed write")
        capsys.readouterr()
        assert main([*base, "--out", str(out), "--resume"]) == 0
        said = capsys.readouterr().out
        if n == 0:
            assert "nothing to resume" in said
        elif n < writes:
            assert "resuming" in said
        else:
            assert "finished run" in said
        assert_same_run(reference, out)


def test_resume_refuses_other_settings_and_finished_run_is_kept(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", *TINY, "--epochs", "1", "--out", str(out)]
    assert main(base) == 0
    before = (out / "result.json").read_bytes()
    assert main([*base, "--resume"]) == 0  # finished: nothing to do, result kept
    assert (out / "result.json").read_bytes() == before
    assert main(base) == 2  # without --resume a finished run is not overwritten
    assert "already holds a finished run" in capsys.readouterr().err

    ck = tmp_path / "ck"
    with pytest.MonkeyPatch.context() as m:
        interrupt_after_save(m, 1)
        assert main(["train", *TINY, "--epochs", "2", "--out", str(ck)]) == 130
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "2", "--out", str(ck)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", *TINY, "--epochs", "2", "--lr", "0.05", "--out", str(ck), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings" in err and "optim.lr" in err and "\n" not in err


# --------------------------------------------------------------------------- SIGKILL


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PIMPRUNE_QUIET": "1"}


def _checkpoint_position(path: Path) -> tuple[str, int] | None:
    try:
        state = torch.load(path, weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError):
        return None
    assert isinstance(state, dict) and state["format"] == stages.CHECKPOINT_FORMAT
    return (state["stage"], int(state["epoch"])) if "stage" in state else None


ORDER = ["dense", "admm", "retrain"]


def _run_until(argv: list[str], out: Path, stage: str, epoch: int, timeout: float = 120) -> None:
    """Start the CLI, SIGKILL it once its checkpoint reached (stage, epoch) or later."""
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            pos = _checkpoint_position(out / "checkpoint.pt")
            if pos and (ORDER.index(pos[0]), pos[1]) >= (ORDER.index(stage), epoch):
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not (out / "result.json").exists()
    assert _checkpoint_position(out / "checkpoint.pt") is not None  # complete, loadable


def test_sigkill_twice_then_resume_matches_uninterrupted(tmp_path):
    cli = [sys.executable, "-m", "pimprune", "prune", *TINY, "--method", "admm", *PRUNE,
           "--dense-epochs", "2", "--retrain-epochs", "2"]  # fmt: skip
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    uninterrupted = subprocess.Popen(
        [*cli, "--out", str(reference)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _run_until([*cli, "--out", str(killed)], killed, "dense", 1)
        _run_until([*cli, "--out", str(killed), "--resume"], killed, "admm", 1)
        done = subprocess.run([*cli, "--out", str(killed), "--resume"], env=_env(), capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        _, err = uninterrupted.communicate(timeout=300)
        assert uninterrupted.returncode == 0, err.decode()
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.communicate()
    assert_same_run(reference, killed)


# --------------------------------------------------------------------------- atomic writes


def _write_slowly(target: str, ready, payload: bytes) -> None:
    def write(fh):
        fh.write(payload[: len(payload) // 2])
        fh.flush()
        ready.set()
        time.sleep(60)
        fh.write(payload[len(payload) // 2 :])

    atomic_write(target, write)


@pytest.mark.parametrize("old", [True, False], ids=["over-old-file", "new-file"])
def test_sigkill_mid_write_never_leaves_a_complete_looking_file(tmp_path, old):
    target = tmp_path / "checkpoint.pt"
    if old:
        save_tensors({"epoch": 1}, target)
    import io

    buf = io.BytesIO()
    torch.save({"epoch": 2, "w": torch.randn(256, 256)}, buf)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_write_slowly, args=(str(target), ready, buf.getvalue()))
    child.start()
    try:
        assert ready.wait(30)
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == -signal.SIGKILL
    if old:
        assert load_tensors(target) == {"epoch": 1}
    else:
        assert not target.exists()
    temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1 and temps[0].name.startswith(".checkpoint.pt.")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_tensors(temps[0])  # the half-written file does not pass as complete
    assert remove_stale_temps(tmp_path) == temps
    assert sorted(p.name for p in tmp_path.iterdir()) == (["checkpoint.pt"] if old else [])
