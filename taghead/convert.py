"""Load the TAG-Head reference checkpoints (``gym99_best.pth``, ...) into taghead models.

``haa500_best.pth``, ``gym99_best.pth`` and ``gym288_last.pth`` are the checkpoints the authors' reference
implementation trains and names; no public copy exists yet (their weights page's download link is still
"to be added"). Whoever has such a file, or any state dict in that layout, converts it here. The layout
and the renaming of its keys are in :mod:`taghead.models.reference` (re-exported here); this module
builds the model and loads it. Files are read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import os
from pathlib import Path

from .heads.tag import TAG_PRESETS
from .models.classifier import VideoClassifier
from .models.reference import (
    convert_official_state_dict,
    infer_preset,
    read_official_state_dict,
    unwrap_official_state_dict,
)
from .models.registry import create_model, get_pretrained_cfg
from .weights import load_state_dict_checked

__all__ = ["load_official", "read_official_state_dict", "unwrap_official_state_dict", "infer_preset",
           "convert_official_state_dict", "reference_model"]


def reference_model(preset: str) -> VideoClassifier:
    """The taghead model for a reference preset (R(2+1)D-34 + TAG-Head), randomly initialised.

    Args:
        preset: ``"haa500"``, ``"gym99"`` or ``"gym288"``.
    """
    return create_model(f"tag_r2plus1d_34_{preset}")


def load_official(path: str | os.PathLike, preset: str | None = None) -> VideoClassifier:
    """Load a reference checkpoint as a taghead model (R(2+1)D-34 + TAG-Head) in eval mode.

    Args:
        path: ``haa500_best.pth``, ``gym99_best.pth``, ``gym288_last.pth`` or any state dict in the
            reference layout, bare or under ``model_state_dict``. Read with ``weights_only=True``:
            files holding pickled objects other than tensors are refused.
        preset: ``"haa500"``, ``"gym99"`` or ``"gym288"``; ``None`` infers it from the shapes.

    Returns:
        a :class:`~taghead.VideoClassifier` whose logits equal the reference model's (eval mode),
        with ``pretrained_cfg`` naming the source file, the MIT licence and the paper.
    """
    state = read_official_state_dict(path)
    preset = preset or infer_preset(state)
    if preset not in TAG_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(TAG_PRESETS)}")
    model = reference_model(preset)
    source = f"{os.fspath(path)!r} (converted to preset {preset!r})"
    load_state_dict_checked(model, convert_official_state_dict(state, model, source), source=source)
    # the reference checkpoint: the registered provenance of the preset (licence, dataset, the paper's results)
    model.pretrained_cfg = get_pretrained_cfg(f"tag_r2plus1d_34_{preset}").with_overlay(
        dict(source_file=Path(path).name))
    return model.eval()
