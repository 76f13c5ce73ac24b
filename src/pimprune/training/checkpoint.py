"""Checkpoints and result files, written atomically and loaded safely.

Every file goes through :func:`atomic_write` (temp file, fsync, rename), so an
interrupted write never leaves a complete-looking file; tensors load with
``weights_only=True``, so pickled code is refused. A saved model is ``model.pt``
(plain state_dict, masks baked in) plus ``model.json`` (its
:class:`pimprune.training.models.ModelSpec` and pruning metadata).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pimprune.errors import CheckpointError, ConfigError, OutputError

MODEL_FILE = "model.pt"
MODEL_META = "model.json"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) or raise :class:`OutputError` in one line."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {p}: {exc.strerror}; choose a writable --out") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {p} is not writable; choose a writable --out")
    return p


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Prefix and suffix of the temporary files :func:`atomic_write` renames into place.
TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file atomically: temp file in the same folder, fsync, rename.

    A process killed at any moment leaves either the old file (or none) or the
    complete new one under ``path``, never a partial file; at worst a hidden
    ``.NAME.*.tmp`` stays behind (:func:`remove_stale_temps` clears those).

    Args:
        path: Target file.
        write: Callback that writes the content to the open binary file.

    Raises:
        OutputError: if the folder cannot be created or the file cannot be written
            (read-only file system, disk full, a file where a folder should be).
    """
    target = Path(path)
    folder = ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write in {folder}: {exc.strerror}; choose a writable --out") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, InterruptedError)):
            raise OutputError(
                f"cannot write {target}: {exc.strerror or exc}; free space or choose a writable --out"
            ) from None
        raise
    _fsync_dir(folder)
    return target


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write` calls left in ``folder``.

    Only call it when no other process writes in ``folder``.

    Returns:
        The files removed.
    """
    removed = []
    p = Path(folder)
    if not p.is_dir():
        return removed
    for tmp in p.glob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def save_tensors(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (the object must load with ``weights_only=True``)."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically (indented, trailing newline)."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def save_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_tensors(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a tensor file with ``weights_only=True``; one-line errors for every failure."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist; check the path")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder; pass the checkpoint file (e.g. {p / MODEL_FILE})")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty; it was not written completely, re-create it")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise CheckpointError(
                f"checkpoint {p} holds pickled code or objects that are not tensors and was "
                "refused (weights_only=True); save a plain state_dict instead"
            ) from None
        raise CheckpointError(f"checkpoint {p} is corrupt ({msg[:120]}); re-create it") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on corrupt input
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {p} is corrupt or truncated ({first[:120]}); re-create it") from None


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file with one-line errors."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{p} does not exist; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{p} is not valid JSON ({first}); re-create it") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {p}: {exc.strerror or exc}; check the path") from None


#: A state_dict key of a parametrization: ``<module>.parametrizations.<attr>.<rest>``.
_PARAMETRIZED_KEY = re.compile(r"^(?:(?P<module>.*)\.)?parametrizations\.(?P<attr>[^.]+)\.(?P<rest>.+)$")


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict with any parametrization (masks) baked into plain weights.

    The same keys, in the same order, as the state_dict of the model after
    :func:`pimprune.pruning.masking.remove_masks`; the model itself is left as it is.
    """
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        match = _PARAMETRIZED_KEY.match(key)
        if match is None:
            out[key] = value.detach().clone()
        elif match["rest"] == "original":
            module, attr = match["module"] or "", match["attr"]
            out[f"{module}.{attr}" if module else attr] = getattr(modules[module], attr).detach().clone()
    return out


def save_model(model: nn.Module, spec: Any, folder: str | os.PathLike, meta: dict | None = None) -> Path:
    """Save ``model.pt`` (plain state_dict) and ``model.json`` (spec + meta) in ``folder``."""
    folder = ensure_dir(folder)
    state = plain_state_dict(model)
    info = {"format": "pimprune-model", "spec": spec.to_dict(), **(meta or {})}
    save_tensors(state, folder / MODEL_FILE)
    save_json(info, folder / MODEL_META)
    return folder / MODEL_FILE


def read_model_meta(path: str | os.PathLike) -> dict:
    """Read ``model.json`` beside a ``model.pt`` (or inside a folder)."""
    p = Path(path)
    meta_path = p / MODEL_META if p.is_dir() else p.with_name(MODEL_META)
    if not meta_path.exists():
        raise CheckpointError(
            f"no {MODEL_META} beside {p}; pimprune needs it to rebuild the model "
            "(save with pimprune, or build the model in Python and load the state_dict)"
        )
    meta = load_json(meta_path)
    if not isinstance(meta, dict) or "spec" not in meta:
        raise CheckpointError(f"{meta_path} has no model spec; re-create the checkpoint with pimprune")
    return meta


def load_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a saved model from ``model.pt`` + ``model.json``.

    Returns:
        The model (eval mode) and the metadata of ``model.json``.
    """
    from pimprune.training.models import ModelSpec, create_model, load_state_dict_checked

    p = Path(path)
    weights = p / MODEL_FILE if p.is_dir() else p
    if not weights.exists():
        raise CheckpointError(f"checkpoint {weights} does not exist; check the path")
    meta = read_model_meta(p)
    try:
        spec = ModelSpec.from_dict(meta["spec"])
        model = create_model(spec)
    except ConfigError as exc:
        raise CheckpointError(
            f"the {MODEL_META} beside {weights} describes no model pimprune can build ({exc}); "
            "re-create the checkpoint with pimprune"
        ) from None
    state = load_tensors(weights, map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights} does not hold a state_dict; save one with model.state_dict()")
    load_state_dict_checked(model, state)
    model.eval()
    return model, meta


# --------------------------------------------------------------------------- a run's output folder

#: The resumable state of a run, in its output folder.
CHECKPOINT = "checkpoint.pt"
#: The result of a finished run, in its output folder.
RESULT = "result.json"

#: What an output folder holds at the start of a run.
FRESH, RESUME, FINISHED = "fresh", "resume", "finished"


def classify_output(out: Path, resume: bool) -> str:
    """Classify a run's output folder ``out`` (without writing anything) or raise :class:`OutputError`.

    Returns:
        ``fresh`` (start a new run), ``resume`` (a checkpoint to continue) or
        ``finished`` (``resume`` on a finished run: nothing to do).
    """
    if not str(out).strip():
        raise OutputError("the output folder is empty; pass --out FOLDER")
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == out else f"cannot be created: {parent} is a file"
                raise OutputError(f"--out {out} {what}; choose a folder")
            break
    has_ckpt = (out / CHECKPOINT).exists()
    has_result = (out / RESULT).exists()
    if not resume:
        if has_result:
            raise OutputError(f"{out} already holds a finished run ({RESULT}); choose another --out")
        if has_ckpt:
            raise OutputError(
                f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another --out"
            )
        return FRESH
    return FINISHED if has_result else RESUME if has_ckpt else FRESH


def open_output(out: Path) -> None:
    """Create ``out`` and clear temporary files a killed write left there (rank 0)."""
    ensure_dir(out)
    remove_stale_temps(out)


def cpu_clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies of a dict of tensors (for checkpoints)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def rng_state() -> dict:
    """Torch's CPU (and initialised CUDA) random state, for checkpoints."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict | None) -> None:
    """Restore :func:`rng_state` (nothing for None or an empty dict)."""
    if not state:
        return
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def first_difference(saved: Any, now: Any, prefix: str = "") -> str | None:
    """The first setting (dotted path) where two identity dicts differ, or None."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now)):
            diff = first_difference(saved.get(key), now.get(key), f"{prefix}{key}.")
            if diff is not None:
                return diff
        return None
    if saved != now:
        return f"{prefix[:-1]} (was {saved!r}, now {now!r})"
    return None
