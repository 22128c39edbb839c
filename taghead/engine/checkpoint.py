"""Resumable training checkpoints, written atomically and readable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only (no pickled objects):

=====================  ==============================================================================
key                    content
=====================  ==============================================================================
``format``             ``"taghead-train-checkpoint"`` and ``version`` (an int)
``epoch``              number of completed epochs (training resumes at this epoch index)
``global_step``        optimiser steps taken so far
``model``              the model's ``state_dict`` (unwrapped from DDP)
``optimizer``          the optimiser's ``state_dict``
``scheduler``          the learning-rate scheduler's ``state_dict`` (or ``None``)
``scaler``             the AMP ``GradScaler``'s ``state_dict`` (``{}`` when AMP fp16 is off)
``rng``                Python, NumPy, torch CPU and CUDA generator states (:func:`capture_rng_state`)
``best_metric``        best monitored validation value so far (``None`` before the first evaluation)
``model_config``       JSON text: the model's ``config.json`` of ``save_pretrained`` (rebuilds the model)
``train_config``       JSON text: the training options
=====================  ==============================================================================

Writing (:func:`save_checkpoint`): the dict is serialised into a temporary file in the same folder,
flushed and ``fsync``-ed, then renamed over the target with ``os.replace`` (atomic on POSIX) and the
folder is ``fsync``-ed. A process killed at any moment leaves either the previous checkpoint or the
new one, never a partial file.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..weights import TRAIN_CHECKPOINT_FORMAT, CheckpointError, atomic_output

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "capture_rng_state",
    "restore_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "model_config_json",
]

CHECKPOINT_FORMAT = TRAIN_CHECKPOINT_FORMAT
CHECKPOINT_VERSION = 1
_REQUIRED = ("format", "version", "epoch", "model", "optimizer", "rng")


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (CPU and every CUDA device)."""
    np_state = np.random.get_state(legacy=False)
    np_state = dict(np_state, state=dict(np_state["state"], key=torch.from_numpy(np_state["state"]["key"].astype(np.int64))))
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    state["cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generator states saved by :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    key = np_state["state"]["key"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state(dict(np_state, state=dict(np_state["state"], key=key.astype(np.uint32))))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            # Another device count than when saved: restore what matches, by index.
            cuda = cuda[: torch.cuda.device_count()]
        for index, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, index)


def model_config_json(model: torch.nn.Module) -> str:
    """JSON text of what rebuilds ``model``: the same config ``save_pretrained`` writes to ``config.json``
    (spec, data config, label names, ...), or ``"null"`` for a model taghead cannot describe."""
    from ..models.loading import config_for

    try:
        return json.dumps(config_for(model))
    except (TypeError, ValueError):
        return "null"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``).

    ``state`` gets ``format`` and ``version`` added. On any error the temporary file is removed and
    an existing checkpoint at ``path`` is left untouched.

    Args:
        state: the checkpoint dict (tensors and plain values).
        path: the file to write.
    """
    path = Path(path)
    payload = dict(state, format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION)
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)`` and check its layout.

    Raises :class:`~taghead.weights.CheckpointError` (a ``ValueError``) for a missing, truncated,
    foreign or newer-version file.

    Args:
        path: the checkpoint file.
        map_location: where to load the tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"could not read training checkpoint {str(path)!r} ({type(err).__name__}: {err}); "
                              "the file is truncated or corrupt, or not a torch.save file") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{str(path)!r} is not a taghead training checkpoint (format {found!r}, expected "
                              f"{CHECKPOINT_FORMAT!r}); to load plain weights use taghead.from_pretrained or "
                              "create_model(..., pretrained_cfg_overlay=dict(file=...))")
    if int(state["version"]) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {state['version']}; this taghead reads "
                              f"versions <= {CHECKPOINT_VERSION}. Upgrade taghead.")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{str(path)!r} lacks the entries {missing}")
    return state
