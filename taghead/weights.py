"""Reading and writing weight files safely: atomic safetensors, pickle-free ``.pth``, strict key matching."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "StateDictMismatchError",
    "TRAIN_CHECKPOINT_FORMAT",
    "atomic_output",
    "atomic_outputs",
    "atomic_write_text",
    "atomic_write_json",
    "save_safetensors",
    "write_safetensors",
    "unwrap_state_dict",
    "load_safetensors",
    "load_torch_checkpoint",
    "check_state_dict",
    "load_state_dict_checked",
]


#: ``format`` entry of taghead's training checkpoints (:mod:`taghead.engine.checkpoint`).
TRAIN_CHECKPOINT_FORMAT = "taghead-train-checkpoint"
_PARALLEL_PREFIX = "module."


class CheckpointError(ValueError):
    """A weight file that cannot be read: missing, truncated, corrupt, or holding more than tensors."""


class StateDictMismatchError(ValueError):
    """Weights that do not fit a model: lists missing keys, unexpected keys and shape mismatches."""

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        source: str = "checkpoint",
    ) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f"the weights in {source} do not match the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}, in the model but not in the weights): {_clip(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}, in the weights but not in the model): {_clip(unexpected)}")
        if mismatched:
            shown = [f"{k}: weights {list(a)} vs model {list(b)}" for k, a, b in mismatched]
            lines.append(f"  shape mismatches ({len(mismatched)}): {_clip(shown)}")
        lines.append("Check that the config (architecture, num_classes, frames) matches the weights.")
        super().__init__("\n".join(lines))


def _clip(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (after a rename) where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def default_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` would give a new file (``mkstemp`` gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_replace(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` onto ``path``, with the permissions of a plainly created file (the
    temporary file has ``mkstemp``'s 0o600, and safetensors recreates it with that mode too)."""
    with open(tmp, "rb+") as f:
        os.fchmod(f.fileno(), default_file_mode())
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _temp_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; when the block ends without an error it replaces
    ``path`` (fsync of the file, ``os.replace``, fsync of the folder), else it is removed.

    A process killed at any moment leaves either the old ``path`` or the complete new one, never a
    partial file. The folder is created if missing.

    Example::

        with atomic_output("run/metrics.csv") as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        yield tmp
        _atomic_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """:func:`atomic_output` for several files written together: a temporary file beside each path; none
    replaces its target until the block has written them all without an error, else all are removed.

    An error while writing (a full disk, a failing serialiser) leaves every old file as it was.
    """
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_output(path)) for path in paths]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (and a final newline) to ``path`` atomically (see :func:`atomic_output`)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _dedup_storage(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors with no two sharing memory (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, expected a tensor")
        t = value.detach().cpu().contiguous()
        ident = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() and ident in seen:
            t = t.clone()
        seen.add((t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()))
        out[key] = t
    return out


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Save tensors to a ``.safetensors`` file atomically (temporary file, fsync, ``os.replace``)."""
    with atomic_output(path) as tmp:
        write_safetensors(state_dict, tmp, metadata)


def write_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write tensors to ``path`` in the safetensors format, in place (not atomic: for the temporary file of
    :func:`atomic_output`; use :func:`save_safetensors` otherwise)."""
    from safetensors.torch import save_file

    save_file(_dedup_storage(state_dict), str(path), metadata={"format": "pt", **(metadata or {})})


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file to CPU tensors; a truncated or corrupt file is a :class:`CheckpointError`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {str(path)!r} does not exist")
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError (not a subclass of anything useful)
        raise CheckpointError(
            f"could not read {str(path)!r} as safetensors ({err}); the file is truncated or corrupt, or not a "
            "safetensors file. Download or convert it again."
        ) from None


def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a foreign ``.pth`` file with ``torch.load(weights_only=True)``: tensors and containers only.

    Pickled code or arbitrary objects are refused (never executed); a truncated or corrupt file, or
    one whose top level is not a dict, is a :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).strip().splitlines()
        reason = next((line for line in detail if "GLOBAL" in line or "Unsupported" in line), detail[-1] if detail else "")
        raise CheckpointError(
            f"refused to load {str(path)!r}: it holds pickled objects other than tensors and plain containers "
            f"({reason.strip()}). taghead only loads with torch.load(weights_only=True) and never unpickles "
            "arbitrary objects, which could run code. Re-save the weights as a plain state dict "
            "(torch.save(model.state_dict(), path)) from a trusted environment."
        ) from None
    except Exception as err:
        raise CheckpointError(
            f"could not read {str(path)!r} as a PyTorch checkpoint ({type(err).__name__}: {err}); the file is "
            "truncated or corrupt, or not a torch.save file."
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(obj).__name__}, expected a dict (a state dict)")
    return obj


def unwrap_state_dict(obj: Mapping[str, Any], source: str = "the checkpoint") -> dict[str, Any]:
    """The state dict inside a loaded checkpoint ``obj``: the ``model`` entry of a taghead training checkpoint
    (it has ``format`` and ``version``), the dict under ``model_state_dict``, ``state_dict`` or ``model_state``
    (pytorchvideo's and PySlowFast's files), or ``obj`` itself; a ``module.`` prefix that every key shares
    (saved from ``nn.DataParallel`` or DDP) is removed."""
    if obj.get("format") == TRAIN_CHECKPOINT_FORMAT and "version" in obj:
        inner = obj.get("model")
        if not isinstance(inner, Mapping):
            raise CheckpointError(f"{source} is a taghead training checkpoint whose 'model' entry is a "
                                  f"{type(inner).__name__}, expected the model's state dict")
        obj = inner
    else:
        obj = next((obj[k] for k in ("model_state_dict", "state_dict", "model_state") if isinstance(obj.get(k), Mapping)),
                   obj)
    if obj and all(isinstance(k, str) and k.startswith(_PARALLEL_PREFIX) for k in obj):
        return {k[len(_PARALLEL_PREFIX):]: v for k, v in obj.items()}
    return dict(obj)


def check_state_dict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, ignore: Iterable[str] = (), source: str = "checkpoint"
) -> None:
    """Raise :class:`StateDictMismatchError` unless ``state_dict`` has exactly the module's keys and shapes.

    Keys in ``ignore`` are left out of the comparison on both sides.
    """
    skip = set(ignore)
    expected = {k: v for k, v in module.state_dict().items() if k not in skip}
    given = {k: v for k, v in state_dict.items() if k not in skip}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        (k, tuple(given[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise StateDictMismatchError(missing, unexpected, mismatched, source)


def load_state_dict_checked(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, ignore: Iterable[str] = (), source: str = "checkpoint"
) -> None:
    """Check keys and shapes with :func:`check_state_dict`, then load (keys in ``ignore`` keep their values)."""
    skip = set(ignore)
    check_state_dict(module, state_dict, ignore=skip, source=source)
    module.load_state_dict({k: v for k, v in state_dict.items() if k not in skip}, strict=not skip)
