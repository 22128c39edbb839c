"""Bounds on what an untrusted file may ask of taghead, and the checks that enforce them.

A ``config.json`` from a stranger's repository, a split CSV or a video can hold a few bytes that ask for
gigabytes or hours (a feed-forward width of ``10**7``, a label of ``10**9``, a clip of 4096 frames). The
checks here run before anything is built, allocated or decoded:

- :func:`parse_json`: JSON text of a bounded size and nesting depth, finite numbers only, integers
  that fit in 64 bits;
- :func:`check_clip_size`: a clip of at most :data:`MAX_CLIP_ELEMENTS` values (frames x crop x crop);
- :func:`local_path_entries`: values of a saved config that would make loading read a local file, and
  :func:`check_no_local_paths`, which refuses a model spec naming any;
- the constants below, used where the data is read (:data:`MAX_DECODED_CLIP_BYTES` by the video
  reader, :data:`MAX_UNVERIFIED_PARAMETER_BYTES` by architectures built from a config alone).

``docs/guides/safety.md`` lists what taghead promises about untrusted input and what it does not.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import PureWindowsPath
from typing import Any

__all__ = [
    "MAX_CONFIG_BYTES", "MAX_JSON_DEPTH", "MAX_CLIP_ELEMENTS", "MAX_DECODED_CLIP_BYTES",
    "MAX_REAL_PROBE_BYTES", "MAX_UNVERIFIED_PARAMETER_BYTES", "parse_json", "check_clip_size", "local_path_entries",
    "without_local_paths", "without_local_builder_arguments", "check_no_local_paths",
]

MAX_CONFIG_BYTES = 64 * 2**20
"""Largest ``config.json`` read (label names of 100,000 classes take about 3 MB)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of JSON objects and lists in a config (taghead's own configs nest 4 levels)."""
MAX_CLIP_ELEMENTS = 2**28
"""Largest clip a data config may describe: ``num_frames * crop_size**2`` (2**28: e.g. 1024 frames at
512 px, or 64 frames at 2048 px; a float32 RGB clip of this size takes 3 GiB)."""
MAX_DECODED_CLIP_BYTES = 2 * 2**30
"""Largest decoded clip (``frames x height x width x 3`` bytes) kept in memory when frames are decoded at
their own size (a data config without ``resize_size``): 64 frames of 4K video take 1.6 GB."""
MAX_REAL_PROBE_BYTES = 512 * 2**20
"""Largest real zero clip run through a backbone to find its feature map's shape, for the rare backbone that
runs neither on the ``meta`` device nor on fake tensors (64 frames at 224 px take 38 MiB)."""
MAX_UNVERIFIED_PARAMETER_BYTES = 16 * 2**30
"""Largest model built from a ``config.json`` without weights to compare it with (parameters and
buffers, in bytes; checked on the ``meta`` device before anything is allocated)."""

_INT64 = 2**63


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is out of range (not a finite float)")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number taghead accepts (only finite numbers are)")


def _depth_and_ints(obj: Any, where: str) -> None:
    """Raise a ``ValueError`` when ``obj`` nests deeper than :data:`MAX_JSON_DEPTH` or holds an integer beyond
    64 bits (iterative: no recursion limit to hit)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"{where} nests objects and lists more than {MAX_JSON_DEPTH} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, int) and not isinstance(item, bool) and not -_INT64 <= item < _INT64:
            raise ValueError(f"{where} holds the integer {str(item)[:20]}... ({len(str(item))} digits), beyond 64 bits")


def parse_json(text: str | bytes, where: str) -> Any:
    """Parse untrusted JSON: at most :data:`MAX_CONFIG_BYTES`, nested at most :data:`MAX_JSON_DEPTH` deep,
    finite numbers only (no ``NaN``, ``Infinity`` or ``1e999``) and integers within 64 bits.

    Args:
        text: the untrusted JSON text.
        where: where it comes from, named in errors.

    Raises:
        ValueError: naming ``where`` and what is wrong.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ValueError(f"{where} is {len(text)} bytes long; taghead reads configs of at most {MAX_CONFIG_BYTES} bytes")
    try:
        obj = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"{where} nests objects and lists too deeply to be a config") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where} is not valid JSON ({err}); the file is truncated or corrupt") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    _depth_and_ints(obj, where)
    return obj


def check_clip_size(num_frames: int, crop_size: int, owner: str = "DataConfig") -> None:
    """Refuse a clip larger than :data:`MAX_CLIP_ELEMENTS` (``num_frames * crop_size**2``) with a ``ValueError``.

    Args:
        num_frames: frames per clip.
        crop_size: crop side in pixels.
        owner: who checks, named in the error.
    """
    elements = num_frames * crop_size * crop_size
    if elements > MAX_CLIP_ELEMENTS:
        raise ValueError(
            f"{owner}: a clip of {num_frames} frames at {crop_size}x{crop_size} pixels ({elements:,} values per "
            f"channel) is beyond taghead's limit of {MAX_CLIP_ELEMENTS:,} (taghead.limits.MAX_CLIP_ELEMENTS, e.g. 64 "
            f"frames at 2048 px); one float32 clip of it would take {3 * 4 * elements / 2**30:.1f} GiB")


# Keys whose string value names a file to read (timm's checkpoint_path, pretrained_file, cache_dir, ...).
_PATH_KEY = re.compile(r"(^|_)(path|paths|file|files|filename|dir|directory|folder|root|checkpoint|cache|url)$",
                       re.IGNORECASE)


def _path_like(text: str) -> bool:
    """An absolute path, a home-relative one, a parent-relative one or a ``file:`` URL."""
    stripped = text.strip()
    return (stripped.startswith(("/", "~", "\\", "file:")) or PureWindowsPath(stripped).drive != ""
            or any(part == ".." for part in re.split(r"[/\\]", stripped)))


def local_path_entries(obj: Any, where: str, *, by_key: bool = True) -> list[str]:
    """Where ``obj`` (JSON data) names a local file: every string that is path-like (absolute, ``~``, ``..``,
    ``file:``) and, with ``by_key``, every non-empty string under a key that names a file or folder
    (``checkpoint_path``, ``pretrained_file``, ``cache_dir``, ...).

    Returns ``"where.key.sub: 'value'"`` entries, empty when there are none.

    Args:
        obj: the JSON data to search.
        where: its name, the prefix of the entries.
        by_key: also report every string under a key that names a file or folder.
    """
    found: list[str] = []
    stack: list[tuple[Any, str, str]] = [(obj, where, "")]
    while stack:
        item, name, key = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{name}.{k}", str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{name}[{i}]", key) for i, v in enumerate(item))
        elif isinstance(item, str) and item.strip() and (_path_like(item) or (by_key and _PATH_KEY.search(key))):
            found.append(f"{name}: {item[:80]!r}")
    return sorted(found)


def without_local_paths(kwargs: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """``kwargs`` (a builder's keyword arguments) without the arguments that name local files (see
    :func:`local_path_entries`), and those found (``"where.key: 'value'"``).

    Args:
        kwargs: a builder's keyword arguments.
        where: their name, the prefix of the entries found.
    """
    kept, dropped = {}, []
    for key, value in kwargs.items():
        found = local_path_entries({key: value}, where)
        if found:
            dropped += found
        else:
            kept[key] = value
    return kept, dropped


def without_local_builder_arguments(spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of a model spec whose ``backbone_kwargs`` and ``adapter_kwargs`` (``{}`` when unset) lack the
    arguments that name local files (:func:`without_local_paths`), and those found: what a spec written to a
    file (a saved model's ``config.json``, a feature cache's ``cache.json``) may hold.

    Args:
        spec: the model spec; it is not modified.
    """
    spec, dropped = dict(spec), []
    for key in ("backbone_kwargs", "adapter_kwargs"):
        spec[key], found = without_local_paths(dict(spec.get(key) or {}), f"spec.{key}")
        dropped += found
    return spec, dropped


def check_no_local_paths(spec: dict[str, Any], where: str, *, pretrained_cfg: Any = None) -> None:
    """Refuse a model spec (``config.json``'s, a feature cache's ``cache.json``'s) that names local files.

    Building from such a spec would make loading read a file of the machine it is loaded on. Checked: every
    file-naming key or path-like string in ``backbone_kwargs``, ``adapter_kwargs`` and ``head_config``, every
    path-like string elsewhere in ``spec``, and in ``pretrained_cfg`` (whose ``file`` must be unset).

    Args:
        spec: the spec as read from JSON.
        where: the file, for the message.
        pretrained_cfg: the config's ``pretrained_cfg`` (``None`` when it has none).

    Raises:
        ValueError: naming each entry found.
    """
    named = [*local_path_entries({k: spec.get(k) for k in ("backbone_kwargs", "adapter_kwargs", "head_config")},
                                 "spec"),
             *local_path_entries(spec, "spec", by_key=False), *local_path_entries(pretrained_cfg, "pretrained_cfg",
                                                                                    by_key=False)]
    if isinstance(pretrained_cfg, dict) and pretrained_cfg.get("file") is not None:
        named.append(f"pretrained_cfg.file: {str(pretrained_cfg['file'])[:80]!r}")
    if named:
        raise ValueError(
            f"{where} names local files, which a saved config must not do (loading it would read them): "
            f"{', '.join(sorted(set(named)))}. Load the weights into the model instead of naming their file in the "
            "backbone's or head's arguments, then save it again.")
