"""Reading and writing weight files safely: atomic safetensors, pickle-free ``.pth``, strict key matching."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .limits import parse_json

__all__ = [
    "CheckpointError",
    "StateDictMismatchError",
    "TRAIN_CHECKPOINT_FORMAT",
    "atomic_output",
    "atomic_outputs",
    "check_output_folder",
    "recover_interrupted_write",
    "remove_stale_temporaries",
    "InterruptedWriteError",
    "COMMIT_RECORD",
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


TRAIN_CHECKPOINT_FORMAT = "taghead-train-checkpoint"
"""``format`` entry of taghead's training checkpoints (:mod:`taghead.engine.checkpoint`)."""
_PARALLEL_PREFIX = "module."


class CheckpointError(ValueError):
    """A weight file that cannot be read: missing, truncated, corrupt, or holding more than tensors."""


class StateDictMismatchError(ValueError):
    """Weights that do not fit a model: lists missing keys, unexpected keys, shape mismatches and tensors of a
    kind of dtype that cannot be right (integers or booleans for floating-point parameters, and so on).

    Args:
        missing: keys the model has and the weights lack.
        unexpected: keys the weights have and the model lacks.
        mismatched: ``(key, weights shape, model shape)`` of the tensors whose shapes differ.
        source: where the weights come from, named in the message.
        wrong_dtypes: ``(key, weights dtype, model dtype)`` of the tensors of the wrong kind of dtype.
    """

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        source: str = "checkpoint",
        wrong_dtypes: list[tuple[str, torch.dtype, torch.dtype]] | None = None,
    ) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        self.wrong_dtypes = list(wrong_dtypes or [])
        lines = [f"the weights in {source} do not match the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}, in the model but not in the weights): {_clip(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}, in the weights but not in the model): {_clip(unexpected)}")
        if mismatched:
            shown = [f"{k}: weights {list(a)} vs model {list(b)}" for k, a, b in mismatched]
            lines.append(f"  shape mismatches ({len(mismatched)}): {_clip(shown)}")
        if self.wrong_dtypes:
            shown = [f"{k}: weights {_dtype_name(a)} vs model {_dtype_name(b)}" for k, a, b in self.wrong_dtypes]
            lines.append(f"  dtypes that cannot be converted ({len(self.wrong_dtypes)}; floating-point weights are "
                         f"converted, integers and booleans are not): {_clip(shown)}")
        lines.append("Check that the config (architecture, num_classes, frames) matches the weights.")
        super().__init__("\n".join(lines))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype_kind(dtype: torch.dtype) -> str:
    """``"float"``, ``"complex"``, ``"bool"`` or ``"int"``: weights convert only within one kind."""
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "int"


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
    _finish_temp(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _finish_temp(tmp: Path) -> None:
    """Give a complete temporary file its final permissions and flush it to disk."""
    with open(tmp, "rb+") as f:
        os.fchmod(f.fileno(), default_file_mode())
        os.fsync(f.fileno())


# Temporary files are named ``.<target name>.<host>.<pid>.<random>.tmp``: a later write of the same target
# removes those whose writer (same host, that pid) is no longer running, i.e. was killed mid-write.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TEMP_SUFFIX = ".tmp"


def _temp_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=_TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(name)


def _temp_owner(temp_name: str, target_name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of the writer of ``temp_name`` when it is a temporary file of ``target_name``, else ``None``."""
    prefix = f".{target_name}."
    if not (temp_name.startswith(prefix) and temp_name.endswith(_TEMP_SUFFIX)):
        return None
    parts = temp_name[len(prefix):-len(_TEMP_SUFFIX)].split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: never call a temporary file stale
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but belongs to someone else (or cannot be asked): keep its files
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it; returns them.

    A temporary file counts as stale when it was made on this host (same host name) by a process that
    no longer runs (no such pid in this process's pid namespace). Temporary files of live writers, of
    other hosts (a shared file system) and of other targets are left alone. :func:`atomic_output` and
    :func:`atomic_outputs` call this before they write.

    Args:
        path: the target file whose temporary files to look for.
    """
    path = Path(path)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        owner = _temp_owner(name, path.name)
        if owner is not None and owner[0] == _HOST and owner[1] != os.getpid() and not _process_alive(owner[1]):
            stale = path.parent / name
            with contextlib.suppress(OSError):
                stale.unlink()
                removed.append(stale)
    return removed


def fault_point(name: str) -> None:
    """Stop here, for ever, when the environment variable ``TAGHEAD_FAULT_POINT`` is ``name``.

    For the kill tests: a writer run with ``TAGHEAD_FAULT_POINT=<name>`` creates the file named by
    ``TAGHEAD_FAULT_READY`` (when set) on reaching the point, then waits to be killed, so a test can kill
    it at an exact step of a write instead of hoping to hit a window. A no-op otherwise.
    """
    if os.environ.get("TAGHEAD_FAULT_POINT") != name:
        return
    ready = os.environ.get("TAGHEAD_FAULT_READY")
    if ready:
        Path(ready).write_text(name)
    while True:
        time.sleep(3600)


def check_output_folder(path: str | os.PathLike, what: str = "the output folder") -> Path:
    """``path`` as a folder to write into (it may not exist yet): a ``NotADirectoryError`` naming ``what`` when
    it, or a folder above it, is an existing file. Returns ``Path(path)``.

    Args:
        path: the folder.
        what: what it is, named in the error.
    """
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise NotADirectoryError(f"{what} {str(path)!r}: {str(part)!r} is a file, not a folder; give a folder")
            break
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; when the block ends without an error it replaces
    ``path`` (fsync of the file, ``os.replace``, fsync of the folder), else it is removed.

    A process killed at any moment leaves either the old ``path`` or the complete new one, never a
    partial file; the temporary file it leaves is removed by the next write of ``path``. The folder is
    created if missing.

    Example::

        with atomic_output("run/metrics.csv") as tmp:
            tmp.write_text(text)

    Args:
        path: the file to replace.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _temp_path(path)
    try:
        yield tmp
        fault_point("atomic_output:written")
        _atomic_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


COMMIT_RECORD = ".taghead-commit.json"
"""The commit record of :func:`atomic_outputs`, in the folder of the files it replaces."""
_COMMIT_FORMAT = "taghead-commit"


class InterruptedWriteError(OSError):
    """A folder holds an interrupted multi-file write that cannot be completed here (e.g. a read-only folder)."""


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name \
        and "\0" not in name


def recover_interrupted_write(folder: str | os.PathLike) -> bool:
    """Finish the multi-file write of :func:`atomic_outputs` that a killed process left in ``folder``.

    Such a write is committed once its commit record (``.taghead-commit.json``) exists: every new file
    was complete and flushed before the record was written. Recovery moves the new files that are still
    under their temporary names onto their targets and removes the record, so the folder holds the new
    files only. Without a record there is nothing to finish (the old files were never touched). Returns
    whether a write was finished.

    The record names files of ``folder`` only (plain names, each a temporary file of its target), so a
    forged record can do nothing the folder's own files could not. Raises :class:`InterruptedWriteError`
    when the record is unreadable or the folder cannot be written.

    Args:
        folder: the folder the write was for.
    """
    folder = Path(folder)
    record = folder / COMMIT_RECORD
    if not record.is_file():
        return False
    try:
        data = parse_json(record.read_bytes(), repr(str(record)))
        moves = data["moves"] if isinstance(data, dict) and data.get("format") == _COMMIT_FORMAT else None
        ok = isinstance(moves, list) and all(
            isinstance(m, list) and len(m) == 2 and all(map(_plain_name, m)) and _temp_owner(m[0], m[1]) is not None
            for m in moves)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        ok = False
    if not ok:
        raise InterruptedWriteError(
            f"{str(record)!r} is not a valid record of an interrupted save; remove it if the folder's files are "
            "the ones you want")
    try:
        moved = False
        for tmp_name, target_name in moves:
            with contextlib.suppress(FileNotFoundError):  # already moved (by the writer, or another reader)
                os.replace(folder / tmp_name, folder / target_name)
                moved = True
        if moved:
            fsync_dir(folder)
        # Not flushed: a record that comes back after a power loss names no temporary file any more (harmless).
        record.unlink(missing_ok=True)
    except OSError as err:
        raise InterruptedWriteError(
            f"{str(folder)!r} holds a save that was interrupted after it was committed, and it cannot be finished "
            f"here ({err}); open the folder once where it is writable (any taghead load or save finishes it)"
        ) from None
    return True


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """:func:`atomic_output` for several files of one folder written together, all or nothing.

    Yields a temporary file beside each path. When the block ends without an error, the write is
    committed: every temporary file is flushed, a commit record naming them is written (atomically),
    the files are moved onto their targets and the record is removed. An error in the block removes the
    temporary files and leaves every old file as it was.

    A process killed at any moment leaves either all the old files or, once the commit record exists,
    all the new ones: :func:`recover_interrupted_write` (called by the next :func:`atomic_outputs` in the
    folder, and by :func:`taghead.hub.read_config` before a saved folder is read) finishes a committed
    write. Temporary files of writes killed before their commit are removed by the next write.
    """
    targets = [Path(p) for p in paths]
    if not targets:
        raise ValueError("atomic_outputs needs at least one path")
    folder = targets[0].parent
    if any(t.parent != folder for t in targets) or len({t.name for t in targets}) != len(targets):
        raise ValueError(f"atomic_outputs writes distinct files of one folder, got {[str(t) for t in targets]}")
    folder.mkdir(parents=True, exist_ok=True)
    recover_interrupted_write(folder)
    for target in targets:
        remove_stale_temporaries(target)
    temps: list[Path] = []
    committed = False
    try:
        temps.extend(_temp_path(t) for t in targets)
        yield list(temps)
        for tmp in temps:
            _finish_temp(tmp)
        fault_point("atomic_outputs:written")
        atomic_write_json(folder / COMMIT_RECORD, {"format": _COMMIT_FORMAT, "version": 1,
                                                   "moves": [[tmp.name, t.name] for tmp, t in zip(temps, targets)]})
        committed = True  # from here on the new files are the folder's content, whatever happens
        for i, (tmp, target) in enumerate(zip(temps, targets)):
            fault_point(f"atomic_outputs:moving:{i}")
            os.replace(tmp, target)
        fsync_dir(folder)
        fault_point("atomic_outputs:moved")
    finally:
        if committed:
            recover_interrupted_write(folder)  # moves what is left (nothing, normally) and removes the record
        else:
            for tmp in temps:
                tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_output`).

    Args:
        path: the file to write.
        text: its content.
    """
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (and a final newline) to ``path`` atomically (see :func:`atomic_output`).

    Args:
        path: the file to write.
        obj: a JSON-serialisable value.
    """
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
    """Save tensors to a ``.safetensors`` file atomically (temporary file, fsync, ``os.replace``).

    Args:
        state_dict: the weights, by state-dict key.
        path: the file to write.
        metadata: string metadata for the header.
    """
    with atomic_output(path) as tmp:
        write_safetensors(state_dict, tmp, metadata)


def write_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write tensors to ``path`` in the safetensors format, in place (not atomic: for the temporary file of
    :func:`atomic_output`; use :func:`save_safetensors` otherwise).

    Args:
        state_dict: the weights, by state-dict key.
        path: the file to write.
        metadata: string metadata for the header.
    """
    from safetensors.torch import save_file

    save_file(_dedup_storage(state_dict), str(path), metadata={"format": "pt", **(metadata or {})})


def _read_safetensors(path: str | os.PathLike, read: Callable[[Any], Any]) -> tuple[Any, dict[str, str]]:
    """``(read(f), metadata)`` of the open safetensors file ``f`` at ``path``; a missing, truncated or corrupt
    file is a :class:`CheckpointError`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return read(f), dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own SafetensorError (not a subclass of anything useful)
        raise CheckpointError(
            f"could not read {str(path)!r} as safetensors ({err}); the file is truncated or corrupt, or not a "
            "safetensors file. Download or convert it again."
        ) from None


def load_safetensors(path: str | os.PathLike, *, with_metadata: bool = False) -> Any:
    """Read a ``.safetensors`` file to CPU tensors; a truncated or corrupt file is a :class:`CheckpointError`.

    With ``with_metadata``, returns ``(tensors, metadata)``: the header's string metadata, read from the
    same open file as the tensors.

    Args:
        path: the file.
        with_metadata: also return the header's metadata.
    """
    tensors, metadata = _read_safetensors(path, lambda f: {key: f.get_tensor(key) for key in f.keys()})
    return (tensors, metadata) if with_metadata else tensors


_SAFETENSORS_DTYPES = {
    name: getattr(torch, attr) for name, attr in (
        ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"),
        ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("I64", "int64"), ("I32", "int32"),
        ("I16", "int16"), ("I8", "int8"), ("U64", "uint64"), ("U32", "uint32"), ("U16", "uint16"), ("U8", "uint8"),
        ("BOOL", "bool"), ("C64", "complex64"), ("C128", "complex128"),
    ) if hasattr(torch, attr)
}


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a ``.safetensors`` file as empty ``meta`` tensors (name, shape, dtype: no data is
    read), and the header's metadata. A missing, corrupt or unknown-dtype file is a :class:`CheckpointError`."""
    entries, metadata = _read_safetensors(
        path, lambda f: {key: (f.get_slice(key).get_dtype(), f.get_slice(key).get_shape()) for key in f.keys()})
    unknown = sorted({dtype for dtype, _ in entries.values() if dtype not in _SAFETENSORS_DTYPES})
    if unknown:
        raise CheckpointError(f"{str(path)!r} holds tensors of the dtypes {unknown}, which taghead cannot load")
    return {key: torch.empty(shape, dtype=_SAFETENSORS_DTYPES[dtype], device="meta")
            for key, (dtype, shape) in entries.items()}, metadata


def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a foreign ``.pth`` file with ``torch.load(weights_only=True)``: tensors and containers only.

    Pickled code or arbitrary objects are refused (never executed); a truncated or corrupt file, or
    one whose top level is not a dict, is a :class:`CheckpointError`.

    Args:
        path: the ``.pth`` file.
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
    (saved from ``nn.DataParallel`` or DDP) is removed.

    Args:
        obj: the loaded checkpoint.
        source: where it came from, named in errors.
    """
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
) -> list[tuple[str, torch.dtype, torch.dtype]]:
    """Raise :class:`StateDictMismatchError` unless ``state_dict`` has exactly the module's keys and shapes, and
    each tensor's dtype is of the module's kind (floating point for floating point, integer for integer, bool for
    bool). Returns the floating-point tensors whose dtype differs (``(key, weights dtype, model dtype)``), which
    loading converts.

    ``state_dict`` may hold ``meta`` tensors (e.g. :func:`read_safetensors_header`'s), and ``module`` may live on
    the ``meta`` device: only names, shapes and dtypes are compared. Keys in ``ignore`` are left out on both sides.

    Args:
        module: the model the weights are for.
        state_dict: the weights, by state-dict key.
        ignore: keys to leave out on both sides.
        source: where the weights come from, named in the error.
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
    common = [k for k in expected if k in given and isinstance(given[k], torch.Tensor)]
    wrong = [(k, given[k].dtype, expected[k].dtype) for k in common
             if _dtype_kind(given[k].dtype) != _dtype_kind(expected[k].dtype)]
    if missing or unexpected or mismatched or wrong:
        raise StateDictMismatchError(missing, unexpected, mismatched, source, wrong)
    return [(k, given[k].dtype, expected[k].dtype) for k in common if given[k].dtype != expected[k].dtype]


def load_state_dict_checked(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, ignore: Iterable[str] = (), source: str = "checkpoint"
) -> None:
    """Check keys, shapes and dtypes with :func:`check_state_dict`, then load (keys in ``ignore`` keep their
    values). Floating-point weights of another precision are converted to the module's, with a warning that
    says so (``float16`` weights in a ``float32`` model, for instance).

    Args:
        module: the model to load into.
        state_dict: the weights, by state-dict key.
        ignore: keys that keep the module's values.
        source: where the weights come from, named in errors and warnings.
    """
    skip = set(ignore)
    converted = check_state_dict(module, state_dict, ignore=skip, source=source)
    if converted:
        pairs = sorted({f"{_dtype_name(a)} -> {_dtype_name(b)}" for _, a, b in converted})
        warnings.warn(f"{source}: converted {len(converted)} weight tensor(s) to the model's dtype ({', '.join(pairs)}; "
                      f"e.g. {converted[0][0]})", UserWarning, stacklevel=3)
    module.load_state_dict({k: v for k, v in state_dict.items() if k not in skip}, strict=not skip)
