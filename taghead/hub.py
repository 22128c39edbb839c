"""Hugging Face Hub I/O: ``save_pretrained``, ``from_pretrained``, ``push_to_hub`` and the model card.

A saved folder (and a Hub repository) holds three files:

- ``model.safetensors``: the weights;
- ``config.json``: everything needed to rebuild the module without the weights: ``kind``
  (``"model"`` or ``"head"``), ``spec`` (backbone name and arguments, adapter and its arguments,
  head name and ``head_config``), ``data_config``, ``label_names``, ``num_classes``,
  ``taghead_version`` and, when known, ``architecture`` (the registered model name) and
  ``pretrained_cfg`` (licence, citation, dataset, reported metrics, source of the weights);
- ``README.md``: a model card with YAML metadata (``library_name: taghead``, tags, licence,
  datasets, metrics) and a usage snippet.

Only :mod:`huggingface_hub`'s APIs touch the network (``snapshot_download``, ``HfApi.create_repo``,
``HfApi.upload_folder``). With ``HF_HUB_OFFLINE=1`` repositories load from the local cache only.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from torch import nn

from .config import DataConfig
from .version import __version__
from .weights import (
    atomic_write_json,
    atomic_write_text,
    load_safetensors,
    load_state_dict_checked,
    save_safetensors,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .models.classifier import VideoClassifier

__all__ = [
    "CONFIG_NAME", "WEIGHTS_NAME", "MODEL_CARD_NAME",
    "HubMixin", "save_pretrained", "from_pretrained", "push_to_hub", "load_weights", "model_card",
    "read_config", "resolve_pretrained_folder", "apply_num_classes", "HubDownloadKwargs",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
_KINDS = ("model", "head")


# ----------------------------------------------------------------------------------------------------- config
def _registered_head_name(head: nn.Module) -> str | None:
    """The registry name of ``head``'s class, or ``None`` for a head the registry cannot rebuild."""
    from .heads.registry import get_head_class, list_heads

    name = getattr(type(head), "head_name", "")
    return name if name in list_heads() and get_head_class(name) is type(head) else None


def _head_config(head: nn.Module) -> dict[str, Any] | None:
    get_config = getattr(head, "get_config", None)
    return get_config() if callable(get_config) else None


def _json_ready(obj: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be JSON-serialisable to be saved in {CONFIG_NAME}: {err}") from None


def _model_spec(model: VideoClassifier) -> dict[str, Any]:
    """The model's spec, completed for a hand-assembled model and refreshed from the live head."""
    spec = dict(model.spec or {})
    if "head" not in spec:  # assembled by hand: the backbone module is the feature extractor itself
        spec = dict(backbone=spec.get("backbone"), backbone_kwargs=spec.get("backbone_kwargs", {}),
                    adapter=spec.get("adapter"), adapter_kwargs=spec.get("adapter_kwargs", {}),
                    head=_registered_head_name(model.head), head_config=None,
                    freeze_backbone=spec.get("freeze_backbone", False))
    if spec.get("head") is not None:
        spec["head_config"] = _head_config(model.head)  # follows reset_classifier
    return spec


def _config_for(obj: nn.Module, *, label_names: list[str] | None = None,
                data_config: DataConfig | None = None) -> dict[str, Any]:
    from .models.classifier import VideoClassifier

    pretrained_cfg = getattr(obj, "pretrained_cfg", None)
    if pretrained_cfg is not None and hasattr(pretrained_cfg, "to_dict"):
        pretrained_cfg = pretrained_cfg.to_dict()
    if isinstance(obj, VideoClassifier):
        labels = obj.label_names if label_names is None else list(label_names)
        data = obj.data_config if data_config is None else data_config
        config = dict(kind="model", taghead_version=__version__, architecture=getattr(obj, "architecture", None),
                      num_classes=getattr(obj.head, "num_classes", None), label_names=labels,
                      data_config=data.to_dict(),
                      spec=_model_spec(obj), pretrained_cfg=pretrained_cfg)
    elif hasattr(obj, "get_config") and hasattr(obj, "head_name"):
        labels = list(label_names) if label_names is not None else getattr(obj, "label_names", None)
        config = dict(kind="head", taghead_version=__version__, architecture=None,
                      num_classes=getattr(obj, "num_classes", None),
                      label_names=labels, data_config=data_config.to_dict() if data_config else None,
                      spec=dict(head=_registered_head_name(obj), head_config=obj.get_config()),
                      pretrained_cfg=pretrained_cfg)
    else:
        raise TypeError(
            f"save_pretrained expects a taghead VideoClassifier or a head (VideoHead), got {type(obj).__name__}"
        )
    if labels is not None and config["num_classes"] is not None and len(labels) != config["num_classes"]:
        raise ValueError(f"got {len(labels)} label names for {config['num_classes']} classes")
    return _json_ready(config, "the model config (spec, labels, pretrained_cfg)")


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a saved folder's ``config.json``."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no {CONFIG_NAME}; expected a folder written by save_pretrained "
            f"({CONFIG_NAME}, {WEIGHTS_NAME}, {MODEL_CARD_NAME})"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}); the file is truncated or corrupt") from None
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(config).__name__}")
    missing = [k for k in ("kind", "spec", "num_classes") if k not in config]
    if missing:
        raise ValueError(f"{str(path)!r} is not a taghead config: missing {missing}")
    if config["kind"] not in _KINDS:
        raise ValueError(f"{str(path)!r}: kind must be one of {list(_KINDS)}, got {config['kind']!r}")
    if config["kind"] == "model" and not config.get("data_config"):
        raise ValueError(f"{str(path)!r}: a model config needs data_config")
    return config


# ---------------------------------------------------------------------------------------------- model card
_TASK_TAGS = ["video-classification", "action-recognition", "taghead"]


def _card_yaml(config: dict[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    spec, pcfg = config.get("spec") or {}, config.get("pretrained_cfg") or {}
    tags = list(_TASK_TAGS)
    head_name = spec.get("head")
    if head_name and head_name not in tags:
        tags.append(head_name)
    if head_name == "tag" and "tag-head" not in tags:
        tags.append("tag-head")
    if spec.get("backbone"):
        tags.append(str(spec["backbone"]).replace("/", "-"))
    metrics = pcfg.get("metrics") or {}
    data = ModelCardData(
        library_name="taghead",
        pipeline_tag="video-classification",
        tags=tags,
        license=pcfg.get("license"),
        datasets=[pcfg["dataset"]] if pcfg.get("dataset") else None,
        metrics=["accuracy"] if metrics else None,
    )
    return data.to_yaml()


def model_card(config: dict[str, Any], *, repo_id: str | None = None) -> str:
    """The ``README.md`` of a saved folder: YAML metadata, description, usage, provenance, citation."""
    spec, pcfg = config.get("spec") or {}, config.get("pretrained_cfg") or {}
    kind, name = config["kind"], config.get("architecture")
    head_name = spec.get("head") or "custom"
    backbone = spec.get("backbone")
    target = repo_id or "path/to/this/folder"
    classes = f", {config['num_classes']} classes" if config.get("num_classes") is not None else ""
    title = name or (f"{head_name} head" if kind == "head" else f"{head_name} head on {backbone or 'a custom backbone'}")
    lines = ["---", _card_yaml(config).strip(), "---", "", f"# {title}", ""]

    if kind == "model":
        dc = config.get("data_config") or {}
        lines += [
            f"A video classifier built with [taghead](https://pypi.org/project/taghead/): the "
            f"`{head_name}` head on the `{backbone or 'user-supplied'}` backbone{classes}.",
            "",
            f"Input: clips of {dc.get('num_frames')} frames sampled uniformly over the video, shorter side "
            f"resized to {dc.get('resize_size')}, centre crop {dc.get('crop_size')}x{dc.get('crop_size')}, pixels "
            f"scaled to [0, 1] then normalised with mean {dc.get('mean')} and std {dc.get('std')}; tensor layout "
            "`[B, 3, T, H, W]`.",
            "",
            "## Usage",
            "",
            "```python",
            "import torch",
            "import taghead",
            "",
        ]
        if backbone is None:
            lines += [
                "# this checkpoint was saved with a user-supplied backbone: pass the same module again",
                f'model = taghead.from_pretrained("{target}", backbone=my_backbone).eval()',
            ]
        else:
            lines.append(f'model = taghead.from_pretrained("{target}").eval()')
        lines += [
            f"video = torch.randn(1, 3, {dc.get('num_frames')}, {dc.get('crop_size')}, {dc.get('crop_size')})"
            "  # a normalised clip",
            "with torch.no_grad():",
            "    probs = model(video).softmax(-1)",
            "```",
            "",
        ]
    else:
        hc = spec.get("head_config") or {}
        c, t, h, w = (hc.get(k) for k in ("in_channels", "t", "h", "w"))
        lines += [
            f"A head-only [taghead](https://pypi.org/project/taghead/) checkpoint: the `{head_name}` head for "
            f"backbone feature maps `[B, {c}, {t}, {h}, {w}]`{classes}. Attach it to any "
            "backbone whose last feature map has this shape.",
            "",
            "## Usage",
            "",
            "```python",
            "import taghead",
            "",
            f'head = taghead.from_pretrained("{target}")',
            "model = taghead.VideoClassifier(my_backbone, head, taghead.DataConfig(...))"
            "  # my_backbone: video -> [B, C, T, H, W]",
            "```",
            "",
        ]

    lines += ["## Weights", ""]
    if pcfg.get("source_file"):
        lines += [
            f"Converted with `taghead convert` from `{pcfg['source_file']}`, a checkpoint in the layout of the "
            "TAG-Head authors' reference implementation (MIT licence), which released `haa500_best.pth`, "
            "`gym99_best.pth` and `gym288_last.pth`. taghead's converter is tested to reproduce the reference "
            "model's logits (max abs difference <= 1e-4 in float32, eval mode).",
            "",
        ]
    elif pcfg.get("source"):
        lines += [pcfg["source"], ""]
    else:
        lines += ["Trained or fine-tuned with taghead; see the repository history for details.", ""]
    if pcfg.get("license"):
        lines += [f"Licence: {str(pcfg['license']).upper() if pcfg['license'] == 'mit' else pcfg['license']}.", ""]
    if pcfg.get("metrics"):
        lines += ["## Reported results", "",
                  "Numbers reported in the TAG-Head paper for these weights (RGB only); not re-measured here.", "",
                  "| dataset | metric | value (%) |", "| --- | --- | --- |"]
        lines += [f"| {pcfg.get('dataset')} | {key} | {value} |" for key, value in pcfg["metrics"].items()]
        lines.append("")
    if config.get("label_names"):
        lines += [f"Class names ({len(config['label_names'])}) are in `config.json` under `label_names`.", ""]
    elif pcfg.get("preset"):
        lines += ["Class names are not included: class indices follow the `ClassEncoded` column of the "
                  "reference implementation's split files for this dataset.", ""]
    lines += [f"Saved with taghead {config.get('taghead_version')}.", ""]
    if pcfg.get("citation"):
        lines += ["## Citation", "", "TAG-Head: Time-Aligned Graph Head for Fine-Grained Action Recognition "
                  "(ICPR 2026), arXiv:2604.11498.", "", "```bibtex", pcfg["citation"], "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- saving
def save_pretrained(
    obj: nn.Module,
    save_directory: str | os.PathLike,
    *,
    label_names: list[str] | None = None,
    data_config: DataConfig | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` to ``save_directory``.

    ``obj`` is a :class:`~taghead.VideoClassifier` or a head (head-only checkpoint; ``label_names``
    and ``data_config`` may then be given, as a head does not carry them). Each file is written
    atomically. ``repo_id`` only changes the usage snippet of the model card.
    """
    config = _config_for(obj, label_names=label_names, data_config=data_config)
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"save_pretrained needs a directory, but {str(folder)!r} is a file")
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(obj.state_dict(), folder / WEIGHTS_NAME, metadata={"taghead_version": __version__})
    atomic_write_json(folder / CONFIG_NAME, config)
    atomic_write_text(folder / MODEL_CARD_NAME, model_card(config, repo_id=repo_id))
    return folder


def push_to_hub(
    obj: nn.Module,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload taghead model",
    revision: str | None = None,
    create_pr: bool = False,
    label_names: list[str] | None = None,
    data_config: DataConfig | None = None,
) -> Any:
    """Create (or reuse) the Hub repository ``repo_id`` and upload a ``save_pretrained`` folder to it.

    Uses ``HfApi.create_repo(exist_ok=True)`` and ``HfApi.upload_folder``; returns the latter's
    ``CommitInfo``. ``token=None`` uses the locally saved token (``hf auth login``).
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="taghead-push-") as tmp:
        save_pretrained(obj, tmp, label_names=label_names, data_config=data_config, repo_id=repo_id)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, token=token,
                                 repo_type="model", revision=revision, create_pr=create_pr)


# --------------------------------------------------------------------------------------------------- loading
def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


class HubDownloadKwargs(TypedDict, total=False):
    """The download options of :func:`from_pretrained` and :func:`load_weights` (see
    :func:`resolve_pretrained_folder`), passed to ``huggingface_hub.snapshot_download``."""

    revision: str | None
    cache_dir: str | os.PathLike | None
    force_download: bool
    token: str | None
    local_files_only: bool


def resolve_pretrained_folder(
    repo_id_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    token: str | None = None,
    local_files_only: bool = False,
) -> Path:
    """A local folder for ``repo_id_or_path``: the directory itself, or the Hub snapshot (downloaded if needed)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import validate_repo_id

    text = os.fspath(repo_id_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        raise ValueError(
            f"{text!r} is a file; from_pretrained expects a folder written by save_pretrained or a Hub repo id. "
            "For a bare weights file use create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...)), "
            "and taghead.convert.load_official for the reference .pth files."
        )
    try:
        validate_repo_id(text)
    except HFValidationError:
        raise FileNotFoundError(f"{text!r} is neither an existing folder nor a valid Hub repo id ('org/name')") from None
    offline = _offline() or local_files_only
    try:
        folder = snapshot_download(
            text, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
            local_files_only=offline, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME],
            library_name="taghead", library_version=__version__,
        )
    except LocalEntryNotFoundError as err:
        if offline:
            why = "HF_HUB_OFFLINE=1 is set" if _offline() else "local_files_only=True was passed"
            raise FileNotFoundError(
                f"{text!r} (revision {revision or 'main'}) is not in the local Hugging Face cache "
                f"({cache_dir or 'HF_HUB_CACHE'}), and no local folder of that name exists; {why}, so nothing is "
                "downloaded. To fix it: unset HF_HUB_OFFLINE (or set it to 0) and call from_pretrained again, "
                f"or download it first while online (`hf download {text}`), or pass the path of a saved folder."
            ) from None
        raise OSError(
            f"could not reach the Hugging Face Hub to download {text!r}, and it is not in the local cache "
            f"({err}). Check the connection, or pass the path of a saved folder."
        ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"no Hub repository {text!r} (or it is private/gated: pass token=), and no local folder of that name"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(f"the Hub repository {text!r} has no revision {revision!r}") from None
    return Path(folder)


def _classifier_keys(module: nn.Module) -> list[str]:
    get_classifier = getattr(module, "get_classifier", None)
    if not callable(get_classifier):
        return []
    classifier = get_classifier()
    prefix = next((name for name, m in module.named_modules() if m is classifier), None)
    if prefix is None:
        return []
    return [f"{prefix}.{k}" if prefix else k for k in classifier.state_dict()]


def _class_dependent_keys(module: nn.Module) -> tuple[list[str], list[str]]:
    """State-dict keys that follow ``num_classes``: the classifier's, and the others that the head lists in
    ``class_dependent_keys()`` (``head.``-prefixed in a full model)."""
    classifier = _classifier_keys(module)
    for prefix, owner in (("", module), ("head.", getattr(module, "head", None))):
        class_dependent_keys = getattr(owner, "class_dependent_keys", None)
        if callable(class_dependent_keys):
            return classifier, [prefix + k for k in class_dependent_keys() if prefix + k not in classifier]
    return classifier, []


def apply_num_classes(module: nn.Module, num_classes: int | None, *, what: str) -> None:
    """Re-initialise the classifier (and the head's other class-dependent weights) for ``num_classes``
    (if different), with a warning that names them."""
    if num_classes is None or num_classes == module.num_classes:
        return
    if not callable(getattr(module, "reset_classifier", None)):
        raise TypeError(f"{what}: cannot change num_classes, the model has no reset_classifier()")
    old, before = module.num_classes, _class_dependent_keys(module)
    module.reset_classifier(num_classes)
    # Keys from both sides of the reset: with 0 classes a head has none.
    classifier, others = (list(dict.fromkeys(b + a)) for b, a in zip(before, _class_dependent_keys(module)))
    also = f" and the other class-dependent weights ({', '.join(others)})" if others else ""
    warnings.warn(
        f"{what}: loaded the pretrained weights ({old} classes) except the classifier ({', '.join(classifier)})"
        f"{also}, which {'were' if others else 'was'} re-initialised for num_classes={num_classes}; "
        f"train {'them' if others else 'it'} before use.",
        UserWarning,
        stacklevel=3,
    )


def _build_from_config(config: dict[str, Any], backbone: nn.Module | None, source: str) -> nn.Module:
    from .heads.registry import get_head_class
    from .models.classifier import VideoClassifier

    spec = config["spec"]
    head_name = spec.get("head")
    if head_name is None or spec.get("head_config") is None:
        raise ValueError(
            f"{source} was saved with a custom head that the head registry cannot rebuild. Build the same model "
            "yourself and load the weights into it with taghead.hub.load_weights(model, path_or_repo_id)."
        )
    if config["kind"] == "head":
        if backbone is not None:
            raise ValueError(f"{source} is a head-only checkpoint; backbone= does not apply. Attach the loaded "
                             "head with taghead.VideoClassifier(backbone, head, data_config).")
        return get_head_class(head_name)(**spec["head_config"])

    data_config = DataConfig.from_dict(config["data_config"])
    labels = config.get("label_names")
    if spec.get("backbone") is None and backbone is None:
        raise ValueError(
            f"{source} was saved with a user-supplied backbone (spec['backbone'] is None), which cannot be "
            "rebuilt by name: pass the same backbone module, from_pretrained(path, backbone=my_backbone). Its "
            "weights are then loaded from the checkpoint."
        )
    if spec.get("backbone") is not None and backbone is not None:
        raise ValueError(
            f"{source} rebuilds its own backbone ({spec['backbone']!r}); do not pass backbone=. To put the "
            "saved head on another backbone, load the head alone: taghead.TAGHead.from_pretrained(path)."
        )
    if spec.get("adapter") is None and spec.get("backbone") is None:
        # Assembled by hand: the supplied module is the feature extractor itself.
        head = get_head_class(head_name)(**spec["head_config"])
        return VideoClassifier(backbone, head, data_config, spec=spec, label_names=labels)
    from .models.wrap import build_from_spec

    return build_from_spec(spec, data_config, label_names=labels, backbone=backbone)


def _head_from_model_config(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A head config made from a full model's config (to load only its head), and the weight prefix."""
    spec = config["spec"]
    return dict(config, kind="head", spec=dict(head=spec.get("head"), head_config=spec.get("head_config"))), "head."


def from_pretrained(
    repo_id_or_path: str | os.PathLike,
    *,
    backbone: nn.Module | None = None,
    num_classes: int | None = None,
    kind: str | None = None,
    **hub_kwargs: Unpack[HubDownloadKwargs],
) -> nn.Module:
    """Rebuild a model (or a head) from a saved folder or a Hub repository and load its weights.

    Args:
        repo_id_or_path: a folder written by :func:`save_pretrained`, or a Hub repo id ``"org/name"``.
        backbone: the backbone module, required when the model was saved with a user-supplied one.
        num_classes: a different class count: everything but the classifier (and the head's other
            class-dependent weights) is loaded, those are re-initialised and a warning names them.
        kind: ``"head"`` to load only the head of a full-model checkpoint; ``None`` loads what was saved.
        **hub_kwargs: ``revision``, ``cache_dir``, ``force_download``, ``token``, ``local_files_only``
            (:class:`HubDownloadKwargs`), passed to ``huggingface_hub.snapshot_download``.
            ``HF_HUB_OFFLINE=1`` implies ``local_files_only``.

    Returns:
        a :class:`~taghead.VideoClassifier` (``kind="model"``) or a head (``kind="head"``), in eval mode.
    """
    folder = resolve_pretrained_folder(repo_id_or_path, **hub_kwargs)
    source = repr(os.fspath(repo_id_or_path))
    config = read_config(folder)
    if kind not in (None, *_KINDS):
        raise ValueError(f"kind must be None, 'model' or 'head', got {kind!r}")
    prefix = ""
    if kind == "head" and config["kind"] == "model":
        config, prefix = _head_from_model_config(config)
    elif kind == "model" and config["kind"] == "head":
        raise ValueError(
            f"{source} is a head-only checkpoint, not a full model. Load the head (TAGHead.from_pretrained or "
            "taghead.from_pretrained) and attach it: taghead.VideoClassifier(backbone, head, data_config)."
        )
    module = _build_from_config(config, backbone, source)
    state = load_safetensors(folder / WEIGHTS_NAME)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    load_state_dict_checked(module, state, source=f"{source} ({WEIGHTS_NAME})")
    if config.get("pretrained_cfg") is not None:
        from .models.pretrained import PretrainedCfg

        module.pretrained_cfg = PretrainedCfg.from_dict(config["pretrained_cfg"])
    if config.get("architecture"):
        module.architecture = config["architecture"]
    if config["kind"] == "head" and config.get("label_names") is not None:
        module.label_names = list(config["label_names"])
    apply_num_classes(module, num_classes, what=f"from_pretrained({source})")
    return module.eval()


def load_weights(module: nn.Module, repo_id_or_path: str | os.PathLike,
                 **hub_kwargs: Unpack[HubDownloadKwargs]) -> nn.Module:
    """Load a saved folder's (or Hub repo's) ``model.safetensors`` into an already built ``module``.

    For models whose head or backbone cannot be rebuilt from ``config.json``. Keys and shapes are
    checked; a mismatch lists missing keys, unexpected keys and shape differences.
    """
    folder = resolve_pretrained_folder(repo_id_or_path, **hub_kwargs)
    state = load_safetensors(folder / WEIGHTS_NAME)
    load_state_dict_checked(module, state, source=f"{os.fspath(repo_id_or_path)!r} ({WEIGHTS_NAME})")
    return module


# ---------------------------------------------------------------------------------------------------- mixin
class HubMixin:
    """``save_pretrained`` / ``push_to_hub`` methods and the ``from_pretrained`` class method."""

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Path:
        """Write ``model.safetensors``, ``config.json`` and ``README.md`` (see :func:`taghead.hub.save_pretrained`)."""
        return save_pretrained(self, save_directory, **kwargs)  # type: ignore[arg-type]

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload taghead model", **kwargs: Any) -> Any:
        """Upload to the Hub repository ``repo_id`` (see :func:`taghead.hub.push_to_hub`)."""
        return push_to_hub(self, repo_id, private=private, token=token,  # type: ignore[arg-type]
                           commit_message=commit_message, **kwargs)

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """Load from a saved folder or a Hub repo id; the result must be an instance of this class.

        On a head class (e.g. ``TAGHead.from_pretrained``) a full-model checkpoint yields its head.
        """
        from .heads.base import VideoHead

        kwargs.setdefault("kind", "head" if issubclass(cls, VideoHead) else "model")
        module = from_pretrained(repo_id_or_path, **kwargs)
        if not isinstance(module, cls):
            raise TypeError(
                f"{os.fspath(repo_id_or_path)!r} holds a {type(module).__name__}, not a {cls.__name__}; "
                "load it with taghead.from_pretrained instead"
            )
        return module

