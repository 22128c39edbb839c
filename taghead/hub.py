"""Hugging Face Hub folders and repositories: where a saved model lives and the three files it holds.

A saved folder (and a Hub repository) holds:

- ``model.safetensors``: the weights;
- ``config.json``: what rebuilds the module without its weights: ``kind`` (``"model"`` or ``"head"``),
  ``spec`` (backbone name and arguments, adapter and its arguments, head name and ``head_config``),
  ``data_config``, ``label_names``, ``num_classes``, ``taghead_version`` and, when known,
  ``architecture`` (the registered model name) and ``pretrained_cfg`` (licence, citation, dataset,
  reported metrics, source of the weights); the spec's ``backbone_weights`` names the published weights
  the backbone started from (provenance only: loading a folder never downloads them);
- ``README.md``: a model card with YAML metadata (``library_name: taghead``, tags, licence,
  datasets, metrics) and a usage snippet.

This module finds the folder of a repo id or a path (:func:`resolve_pretrained_folder`: a download, or
the local cache when offline), reads and writes the three files (:func:`read_config`,
:func:`read_weights`, :func:`save_folder`, :func:`model_card`), uploads a folder (:func:`push_folder`)
and loads a folder's weights into a module built by other means (:func:`load_weights`). It knows no
model or head class: what a module writes to ``config.json`` and how it is rebuilt from it belong to
:mod:`taghead.heads.io` (heads) and :mod:`taghead.models` (models). :class:`HubMixin` gives any module
that describes itself with ``hub_config()`` its ``save_pretrained`` and ``push_to_hub`` methods.

Only :mod:`huggingface_hub`'s APIs touch the network (``snapshot_download``, ``HfApi.create_repo``,
``HfApi.upload_folder``). With ``HF_HUB_OFFLINE=1`` repositories load from the local cache only.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import nn

from .config import DataConfig, PretrainedCfg
from .limits import check_no_local_paths, parse_json
from .utils.escape import code_fence, code_span, markdown_text
from .version import __version__
from .weights import (
    atomic_outputs,
    check_output_folder,
    load_safetensors,
    load_state_dict_checked,
    read_safetensors_header,
    recover_interrupted_write,
    write_safetensors,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "CONFIG_NAME", "WEIGHTS_NAME", "MODEL_CARD_NAME", "KINDS",
    "HubMixin", "HubDownloadKwargs", "resolve_pretrained_folder", "read_config", "parse_config", "read_weights",
    "read_weights_header", "save_folder", "SAVE_ID",
    "push_folder", "load_weights", "model_card", "json_ready", "check_label_names", "looks_like_local_path",
    "missing_path_error", "METRIC_NAMES", "PROJECT_URL",
]

CONFIG_NAME = "config.json"
"""The file name of a saved folder's configuration."""
WEIGHTS_NAME = "model.safetensors"
"""The file name of a saved folder's weights."""
MODEL_CARD_NAME = "README.md"
"""The file name of a saved folder's model card."""
KINDS = ("model", "head")
"""What a folder can hold: a full model (backbone + head) or a head alone."""
SAVE_ID = "save_id"
"""Key of the id that one ``save_pretrained`` writes into both ``config.json`` and the weights' metadata."""


# ----------------------------------------------------------------------------------------------------- config
def json_ready(obj: Any, what: str, where: str = CONFIG_NAME) -> Any:
    """``obj`` through JSON and back (tuples become lists); a ``TypeError`` naming ``what`` and ``where`` it is
    stored when it is not JSON-serialisable.

    Args:
        obj: the value to store.
        what: what it is, named in the error.
        where: the file it goes to, named in the error.
    """
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be JSON-serialisable to be saved in {where}: {err}") from None


def check_label_names(names: Any, num_classes: int | None) -> list[str] | None:
    """``names`` as a new list, checked to hold one ``str`` per class (``None`` stays ``None``).

    A single string is refused rather than split into characters; ``num_classes=None`` skips the count.

    Args:
        names: the label names to check.
        num_classes: the class count (``None``: not checked).
    """
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(f"label_names needs one name per class ({num_classes}) as a list of str, got {names!r} "
                         f"(a {type(names).__name__})")
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ValueError(f"label_names must be strings, got {bad[:5]!r} ({type(bad[0]).__name__})")
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"label_names needs one name per class ({num_classes}), got {len(names)} names")
    return list(names)


def _check_config(config: dict[str, Any], where: str) -> None:
    """What every ``config.json`` must satisfy, checked when it is written and when it is read."""
    missing = [k for k in ("kind", "spec", "num_classes") if k not in config]
    if missing:
        raise ValueError(f"{where} is not a taghead config: missing {missing}")
    if config["kind"] not in KINDS:
        raise ValueError(f"{where}: kind must be one of {list(KINDS)}, got {config['kind']!r}")
    if config["kind"] == "model" and not config.get("data_config"):
        raise ValueError(f"{where}: a model config needs data_config")
    _check_spec(config, where)
    try:
        check_label_names(config.get("label_names"), config["num_classes"])
        if config.get("data_config") is not None:
            DataConfig.from_dict(config["data_config"])
        if config.get("pretrained_cfg") is not None:
            PretrainedCfg.from_dict(config["pretrained_cfg"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def _check_spec(config: dict[str, Any], where: str) -> None:
    """The types of ``spec`` and its parts, one class count, and no local file named anywhere."""
    spec, num_classes = config["spec"], config["num_classes"]
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: spec must be a JSON object (backbone, adapter, head and their arguments), got "
                         f"a {type(spec).__name__}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0):
        raise ValueError(f"{where}: num_classes must be a non-negative int or null, got {num_classes!r}")
    for key in ("backbone", "adapter", "head"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ValueError(f"{where}: spec.{key} must be a name (a string) or null, got {spec[key]!r}")
    for key in ("backbone_kwargs", "adapter_kwargs", "head_config"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            raise ValueError(f"{where}: spec.{key} must be a JSON object or null, got a {type(spec[key]).__name__}")
    head_classes = (spec.get("head_config") or {}).get("num_classes", num_classes)
    if num_classes is not None and head_classes != num_classes:
        raise ValueError(f"{where}: num_classes is {num_classes} but the head's config (spec.head_config.num_classes) "
                         f"says {head_classes!r}; the two must agree")
    check_no_local_paths(spec, where, pretrained_cfg=config.get("pretrained_cfg"))


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a saved folder's ``config.json``.

    A save that a killed process left committed but unfinished is finished first
    (:func:`taghead.weights.recover_interrupted_write`). The file is parsed as untrusted JSON
    (:func:`taghead.limits.parse_json`: bounded size and depth, finite numbers) and checked
    (kind, spec, class count, label names, data and pretrained configs, no local file named).

    Args:
        folder: the saved folder.
    """
    recover_interrupted_write(folder)
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no {CONFIG_NAME}; expected a folder written by save_pretrained "
            f"({CONFIG_NAME}, {WEIGHTS_NAME}, {MODEL_CARD_NAME})"
        )
    return parse_config(path.read_bytes(), repr(str(path)))


def parse_config(text: str | bytes, where: str) -> dict[str, Any]:
    """A ``config.json`` content from its (untrusted) text, validated as :func:`read_config` does; ``where``
    names it in errors.

    Args:
        text: the file's content.
        where: the file, named in errors.
    """
    config = parse_json(text, where)
    if not isinstance(config, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(config).__name__}")
    _check_config(config, where)
    return config


def _check_same_save(config: dict[str, Any] | None, metadata: dict[str, str], folder: str | os.PathLike) -> None:
    """Raise a ``ValueError`` when ``config.json`` and the weights carry different save ids (files of two saves)."""
    if config is None:
        return
    ours, theirs = config.get(SAVE_ID), metadata.get(SAVE_ID)
    if ours is not None and theirs is not None and ours != theirs:
        raise ValueError(
            f"{str(folder)!r}: {CONFIG_NAME} and {WEIGHTS_NAME} come from two different saves ({SAVE_ID} {ours!r} vs "
            f"{theirs!r}): a save into this folder was under way while it was read, or its files were copied from "
            f"two folders. Load it again, or save the model again; (remove \"{SAVE_ID}\" from {CONFIG_NAME} to "
            "pair them anyway)")


def read_weights_header(folder: str | os.PathLike,
                        config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The names, shapes and dtypes of a saved folder's weights, as empty ``meta`` tensors, read from the
    safetensors header alone (nothing is loaded). With the folder's ``config``, checks that both files come
    from the same save.

    Args:
        folder: the saved folder.
        config: its ``config.json`` content (``None``: no save-id check).
    """
    recover_interrupted_write(folder)
    shapes, metadata = read_safetensors_header(Path(folder) / WEIGHTS_NAME)
    _check_same_save(config, metadata, folder)
    return shapes


def read_weights(folder: str | os.PathLike, config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The state dict in a saved folder's ``model.safetensors`` (CPU tensors).

    With the folder's ``config`` (as :func:`read_config` returned it), the weights must come from the
    same save as the config (``save_id``), else a ``ValueError``: a folder never loads half old, half new.
    A committed but unfinished save is finished first, as in :func:`read_config`.

    Args:
        folder: the saved folder.
        config: its ``config.json`` content (``None``: no save-id check).
    """
    recover_interrupted_write(folder)
    tensors, metadata = load_safetensors(Path(folder) / WEIGHTS_NAME, with_metadata=True)
    _check_same_save(config, metadata, folder)
    return tensors


# ---------------------------------------------------------------------------------------------- model card
_TASK_TAGS = ["video-classification", "action-recognition", "taghead"]
#: Where taghead lives (the model card links here; taghead is not on the Python package index yet).
PROJECT_URL = "https://github.com/taghead/taghead"
"""The project's address, linked from every model card."""
METRIC_NAMES = {"top1_accuracy": "Top-1 accuracy", "mean_class_accuracy": "Mean class accuracy",
                 "top5_accuracy": "Top-5 accuracy"}
"""How the card names the metrics of ``pretrained_cfg.metrics`` (others are shown by their key)."""


def _card_title(config: dict[str, Any]) -> str:
    spec = config.get("spec") or {}
    head_name, backbone = spec.get("head") or "custom", spec.get("backbone")
    if config.get("architecture"):
        return str(config["architecture"])
    return f"{head_name} head" if config["kind"] == "head" else f"{head_name} head on {backbone or 'a custom backbone'}"


def _eval_results(config: dict[str, Any]) -> list[Any] | None:
    """The ``model-index`` results of the card: one per metric of ``pretrained_cfg`` (needs its dataset)."""
    from huggingface_hub import EvalResult

    pcfg = config.get("pretrained_cfg") or {}
    if not pcfg.get("metrics") or not pcfg.get("dataset"):
        return None
    dataset = str(pcfg["dataset"])
    return [EvalResult(task_type="video-classification", dataset_type=dataset, dataset_name=dataset,
                       dataset_split=pcfg.get("split"), metric_type=key, metric_value=value,
                       metric_name=METRIC_NAMES.get(key, key))
            for key, value in pcfg["metrics"].items()]


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
    start = spec.get("backbone_weights") or {}
    hub_source = str(start.get("source") or "")
    data = ModelCardData(
        base_model=hub_source[len("hf-hub:"):] if hub_source.startswith("hf-hub:") else None,
        library_name="taghead",
        pipeline_tag="video-classification",
        tags=tags,
        license=pcfg.get("license"),
        datasets=[pcfg["dataset"]] if pcfg.get("dataset") else None,
        metrics=list(metrics) or None,  # the names under which the results are reported
        model_name=_card_title(config),
        eval_results=_eval_results(config),  # model-index: the results with their dataset and split
    )
    return data.to_yaml()


def _input_paragraph(dc: dict[str, Any]) -> list[str]:
    """The card's description of the clip a model (or a head, when given a data config) expects."""
    resize = (f"shorter side resized to {dc.get('resize_size')}, " if dc.get("resize_size") is not None
              else "not resized, ")
    return [
        f"Input: clips of {dc.get('num_frames')} frames sampled uniformly over the video, {resize}centre crop "
        f"{dc.get('crop_size')}x{dc.get('crop_size')}, pixels scaled to [0, 1] then normalised with mean "
        f"{dc.get('mean')} and std {dc.get('std')}; tensor layout `[B, 3, T, H, W]`.",
        "",
    ]


def _is_reference(pcfg: dict[str, Any]) -> bool:
    """Whether the weights are the TAG-Head authors' (a reference preset, or converted from their files)."""
    return bool(pcfg.get("preset") or pcfg.get("source_file"))


def _backbone_paragraph(spec: dict[str, Any]) -> list[str]:
    """Where the backbone's training started (``spec["backbone_weights"]``) and its BatchNorm settings."""
    start, bn = spec.get("backbone_weights"), spec.get("batchnorm")
    lines: list[str] = []
    if start:
        facts = [f for f in (start.get("dataset"), f"licence {start['license']}" if start.get("license") else None) if f]
        at = f" at commit `{start['revision']}`" if start.get("revision") else ""
        if start.get("tag"):
            lines.append(f"The backbone was initialised from the published weights "
                         f"`{spec.get('backbone')}.{start['tag']}`" + (f" ({'; '.join(facts)})" if facts else "")
                         + f": `{start.get('filename')}` from {start.get('source')}{at}.")
        elif str(start.get("source") or "").startswith("hf-hub:"):
            lines.append(f"The backbone was initialised from the Hugging Face Hub repository "
                         f"`{str(start['source'])[len('hf-hub:'):]}`{at}" + (f" ({'; '.join(facts)})" if facts else "")
                         + f": `{start.get('filename')}`.")
        else:
            lines.append(f"The backbone was initialised from the weights file `{start.get('filename')}` (a local "
                         "file of no published tag).")
    if bn:
        parts = [f"momentum {bn['momentum']}" if bn.get("momentum") is not None else None,
                 f"eps {bn['eps']}" if bn.get("eps") is not None else None,
                 "running statistics kept fixed during training" if bn.get("freeze_stats") else None]
        lines.append("Backbone BatchNorm: " + ", ".join(p for p in parts if p) + ".")
    return [" ".join(lines), ""] if lines else []


def model_card(config: dict[str, Any], *, repo_id: str | None = None) -> str:
    """The ``README.md`` of a saved folder: YAML metadata, description, usage, provenance, citation.

    Every string taken from ``config`` (names, provenance, citation) is written as literal text
    (:mod:`taghead.utils.escape`): no HTML or script from a config reaches the rendered card.

    Args:
        config: the ``config.json`` content.
        repo_id: the repository named in the usage snippet.
    """
    spec, pcfg = config.get("spec") or {}, config.get("pretrained_cfg") or {}
    kind = config["kind"]
    head_name = spec.get("head") or "custom"
    backbone = spec.get("backbone")
    target = json.dumps(repo_id or "path/to/this/folder")  # a Python string literal in the usage snippet
    classes = f", {config['num_classes']} classes" if config.get("num_classes") is not None else ""
    title = _card_title(config)
    lines = ["---", _card_yaml(config).strip(), "---", "", f"# {markdown_text(title)}", ""]

    if kind == "model":
        dc = config.get("data_config") or {}
        lines += [
            f"A video classifier built with [taghead]({PROJECT_URL}): the "
            f"{code_span(head_name)} head on the {code_span(backbone or 'user-supplied')} backbone{classes}.",
            "",
            *_input_paragraph(dc),
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
                f'model = taghead.from_pretrained({target}, backbone=my_backbone).eval()',
            ]
        else:
            lines.append(f'model = taghead.from_pretrained({target}).eval()')
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
            f"A head-only [taghead]({PROJECT_URL}) checkpoint: the {code_span(head_name)} head for "
            f"backbone feature maps `[B, {c}, {t}, {h}, {w}]`{classes}. Attach it to any "
            "backbone whose last feature map has this shape.",
            "",
            *(_input_paragraph(config["data_config"]) if config.get("data_config") else []),
            "## Usage",
            "",
            "```python",
            "import taghead",
            "",
            f'head = taghead.from_pretrained({target})',
            "model = taghead.VideoClassifier(my_backbone, head, taghead.DataConfig(...))"
            "  # my_backbone: video -> [B, C, T, H, W]",
            "```",
            "",
        ]

    lines += ["## Weights", ""]
    if pcfg.get("source_file"):
        lines += [
            f"Converted with `taghead convert` from {code_span(pcfg['source_file'])}, a checkpoint in the layout of the "
            "TAG-Head authors' reference implementation (MIT licence). `haa500_best.pth`, `gym99_best.pth` and "
            "`gym288_last.pth` are the checkpoints the authors train and name; no public copy of them exists "
            "yet (their weights page's download link is still \"to be added\"). taghead's converter is tested to "
            "reproduce the reference model's logits (max abs difference <= 1e-4 in float32, eval mode).",
            "",
        ]
    elif pcfg.get("source"):
        lines += [markdown_text(pcfg["source"]), ""]
    else:
        lines += ["Trained or fine-tuned with taghead; see the repository history for details.", ""]
    if pcfg.get("license"):
        licence = "MIT" if pcfg["license"] == "mit" else markdown_text(pcfg["license"])
        lines += [f"Licence: {licence}.", ""]
    lines += _backbone_paragraph(spec)
    if pcfg.get("metrics"):
        split = f"the {markdown_text(pcfg['split'])} split of " if pcfg.get("split") else ""
        if _is_reference(pcfg):
            heading, said, unit = ("Reported results", "Numbers reported in the TAG-Head paper for these weights (RGB "
                                   "only); not re-measured here.", " (%)")
        elif pcfg.get("epoch") is not None:
            heading, unit = "Results", " (%)"
            said = (f"Measured by taghead on {split}{markdown_text(pcfg.get('dataset') or 'the training data')} after "
                    f"training epoch {markdown_text(pcfg['epoch'])}, with these weights.")
        else:
            heading, said, unit = "Reported results", "Results reported for these weights by whoever saved them; " \
                                                     "not re-measured here.", ""
        lines += [f"## {heading}", "", said, "", f"| dataset | split | metric | value{unit} |", "| --- | --- | --- | --- |"]
        dataset, split_name = markdown_text(pcfg.get("dataset") or "-"), markdown_text(pcfg.get("split") or "-")
        lines += [f"| {dataset} | {split_name} | {markdown_text(METRIC_NAMES.get(key, key))} | {markdown_text(value)} |"
                  for key, value in pcfg["metrics"].items()]
        lines.append("")
    if config.get("label_names"):
        lines += [f"Class names ({len(config['label_names'])}) are in `config.json` under `label_names`.", ""]
    elif pcfg.get("preset"):
        lines += ["Class names are not included: class indices follow the `ClassEncoded` column of the "
                  "reference implementation's split files for this dataset.", ""]
    lines += [f"Saved with taghead {markdown_text(config.get('taghead_version'))}.", ""]
    if pcfg.get("citation"):
        citation = str(pcfg["citation"]).strip()
        block = code_fence(citation, "bibtex") if citation.startswith("@") else [markdown_text(citation)]
        lines += ["## Citation", "", *block, ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- saving
def save_folder(
    save_directory: str | os.PathLike,
    config: dict[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    repo_id: str | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` (the model card) to ``save_directory``.

    Everything is checked and rendered first (``config`` JSON-serialisable, ``kind``, ``spec``,
    ``num_classes``, one label name per class, a valid data config and pretrained config, no local file
    named; the model card), then the three files are written together with
    :func:`taghead.weights.atomic_outputs`: all or nothing, also when the process is killed (a committed
    save is finished by the next read or write of the folder; an uncommitted one leaves the old files,
    and its temporary files are removed by the next save). Both ``config.json`` and the weights'
    metadata carry the same random ``save_id``, and loading refuses a pair that differs. ``repo_id``
    only changes the usage snippet of the model card.

    Args:
        save_directory: the folder to write (created if needed).
        config: the ``config.json`` content.
        state_dict: the weights.
        repo_id: the repository named in the model card's usage snippet.
    """
    config = json_ready(config, "the config (spec, labels, pretrained_cfg)")
    config.pop(SAVE_ID, None)
    _check_config(config, "the config to save")
    card = model_card(config, repo_id=repo_id)
    save_id = uuid.uuid4().hex
    text = json.dumps(dict(config, **{SAVE_ID: save_id}), indent=2) + "\n"
    folder = check_output_folder(save_directory, "save_pretrained's folder")
    with atomic_outputs(folder / WEIGHTS_NAME, folder / CONFIG_NAME, folder / MODEL_CARD_NAME) as (weights, cfg, readme):
        write_safetensors(state_dict, weights, metadata={"taghead_version": __version__, SAVE_ID: save_id})
        cfg.write_text(text, encoding="utf-8")
        readme.write_text(card, encoding="utf-8")
    return folder


def push_folder(
    repo_id: str,
    write: Callable[[Path], Any],
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload taghead model",
    revision: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Create (or reuse) the Hub repository ``repo_id`` and upload the folder that ``write(folder)`` fills.

    Uses ``HfApi.create_repo(exist_ok=True)`` and ``HfApi.upload_folder``; returns the latter's
    ``CommitInfo``.

    Args:
        repo_id: the repository ``"org/name"``.
        write: fills the temporary folder to upload (``save_folder``, say).
        private: create the repository private (``None``: the Hub's default).
        token: the Hub token (``None``: the locally saved one, ``hf auth login``).
        commit_message: the commit's message.
        revision: the branch to push to (``None``: the default branch).
        create_pr: open a pull request instead of committing.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="taghead-push-") as tmp:
        write(Path(tmp))
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, token=token,
                                 repo_type="model", revision=revision, create_pr=create_pr)


# --------------------------------------------------------------------------------------------------- loading
def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def looks_like_local_path(text: str) -> bool:
    """Whether ``text`` is meant as a local path rather than a Hub repo id ``"org/name"``: it is absolute, starts
    with ``.`` or ``~``, holds a backslash (or the system's other separator) or more than one ``/``, or its
    first part exists here (``runs/tinyy`` when ``runs/`` is a folder: a mistyped run, not a repository).

    Args:
        text: what the user passed.
    """
    if text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1:
        return True
    if os.sep != "/" and os.sep in text or (os.altsep and os.altsep != "/" and os.altsep in text):
        return True
    return "/" in text and Path(text.split("/", 1)[0]).exists()


def missing_path_error(text: str, what: str = "folder") -> FileNotFoundError:
    """A ``FileNotFoundError`` for a local ``what`` that does not exist, with the closest existing path when one
    part of it looks mistyped (``no folder 'runs/firts/best'; did you mean 'runs/first/best'?``).

    Args:
        text: the path that does not exist.
        what: what it should have been, in words.
    """
    import difflib

    path = Path(text).expanduser()
    missing = [path.name]
    ancestor = path.parent
    while not ancestor.is_dir() and ancestor != ancestor.parent:  # the deepest folder that exists
        missing.insert(0, ancestor.name)
        ancestor = ancestor.parent
    try:
        names = sorted(p.name for p in ancestor.iterdir() if not p.name.startswith(".")) if ancestor.is_dir() else []
    except OSError:
        names = []
    close = difflib.get_close_matches(missing[0], names, n=3, cutoff=0.6)
    if close:
        hint = "; did you mean " + " or ".join(repr(str(Path(ancestor, name, *missing[1:]))) for name in close) + "?"
    elif len(missing) > 1:
        hint = f" (its folder {str(path.parent)!r} does not exist either)"
    else:
        hint = ""
    return FileNotFoundError(f"no {what} {text!r}{hint}")


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
    config_only: bool = False,
) -> Path:
    """A local folder for ``repo_id_or_path``: the directory itself, or the Hub snapshot (downloaded if needed).

    Args:
        repo_id_or_path: a local folder, or a Hub repository id ``"org/name"``.
        revision: the Hub branch, tag or commit (``None``: the default branch).
        cache_dir: the Hugging Face cache to use (``None``: the default one).
        force_download: download again even when the files are cached.
        token: the Hub token (``None``: the locally saved one).
        local_files_only: use the cache only, never the network.
        config_only: download ``config.json`` alone (to build the architecture with random weights).
    """
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
    if looks_like_local_path(text):
        raise missing_path_error(text)
    try:
        validate_repo_id(text)
    except HFValidationError:
        raise FileNotFoundError(f"{text!r} is neither an existing folder nor a valid Hub repo id ('org/name')") from None
    offline = _offline() or local_files_only
    try:
        folder = snapshot_download(
            text, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
            local_files_only=offline,
            allow_patterns=[CONFIG_NAME] if config_only else [CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME],
            library_name="taghead", library_version=__version__,
        )
    except LocalEntryNotFoundError as err:
        if offline:
            why, undo = (("HF_HUB_OFFLINE=1 is set", "unset HF_HUB_OFFLINE (or set it to 0)") if _offline() else
                         ("local_files_only=True was passed", "pass local_files_only=False"))
            raise FileNotFoundError(
                f"{text!r} (revision {revision or 'main'}) is not in the local Hugging Face cache "
                f"({cache_dir or 'HF_HUB_CACHE'}), and no local folder of that name exists; {why}, so nothing is "
                f"downloaded. To fix it: {undo} and call from_pretrained again, "
                f"or download it first while online (`hf download {text}`), or pass the path of a saved folder."
            ) from None
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConnectionError(
            f"{text!r} is not a local folder, and the Hugging Face Hub could not be reached to download it as a repo "
            f"id ({reason}); it is not in the local cache either. Check the path, or the connection."
        ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"no Hub repository {text!r} (or it is private/gated: pass token=), and no local folder of that name"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(f"the Hub repository {text!r} has no revision {revision!r}") from None
    return Path(folder)


def load_weights(module: nn.Module, repo_id_or_path: str | os.PathLike,
                 **hub_kwargs: Unpack[HubDownloadKwargs]) -> nn.Module:
    """Load a saved folder's (or Hub repo's) ``model.safetensors`` into an already built ``module``.

    For models whose head or backbone cannot be rebuilt from ``config.json``. Keys and shapes are
    checked; a mismatch lists missing keys, unexpected keys and shape differences.

    Args:
        module: the built module to load into.
        repo_id_or_path: a saved folder or a Hub repository id.
        **hub_kwargs: passed to :func:`resolve_pretrained_folder`.
    """
    folder = resolve_pretrained_folder(repo_id_or_path, **hub_kwargs)
    config = read_config(folder) if (folder / CONFIG_NAME).is_file() else None
    load_state_dict_checked(module, read_weights(folder, config),
                            source=f"{os.fspath(repo_id_or_path)!r} ({WEIGHTS_NAME})")
    return module


# ---------------------------------------------------------------------------------------------------- mixin
class HubMixin:
    """``save_pretrained`` and ``push_to_hub`` for a module that describes itself with :meth:`hub_config`.

    Subclasses (:class:`~taghead.VideoHead`, :class:`~taghead.VideoClassifier`) implement
    ``hub_config(label_names=None, data_config=None) -> dict`` (the content of ``config.json``) and
    their own ``from_pretrained`` class method.
    """

    def hub_config(self, *, label_names: list[str] | None = None, data_config: Any = None) -> dict[str, Any]:
        """The content of ``config.json`` for this module.

        Args:
            label_names: class names that replace the module's own.
            data_config: the input description that replaces the module's own.
        """
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | os.PathLike, *, label_names: list[str] | None = None,
                        data_config: Any = None, repo_id: str | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json`` and ``README.md`` to ``save_directory``.

        Args:
            save_directory: the folder to write (created if needed).
            label_names: class names that replace the module's own.
            data_config: the input description that replaces the module's own (a head carries none: give
                one to describe the input in the model card).
            repo_id: the repository named in the model card's usage snippet.
        """
        config = self.hub_config(label_names=label_names, data_config=data_config)
        return save_folder(save_directory, config, self.state_dict(), repo_id=repo_id)  # type: ignore[attr-defined]

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload taghead model", revision: str | None = None,
                    create_pr: bool = False, label_names: list[str] | None = None, data_config: Any = None) -> Any:
        """Upload to the Hub repository ``repo_id``, created if needed (see :func:`push_folder`).

        Args:
            repo_id: the repository ``"org/name"``.
            private: create the repository private (``None``: the Hub's default).
            token: the Hub token (``None``: the locally saved one).
            commit_message: the commit's message.
            revision: the branch to push to (``None``: the default branch).
            create_pr: open a pull request instead of committing.
            label_names: class names that replace the module's own.
            data_config: the input description that replaces the module's own.
        """
        return push_folder(
            repo_id, lambda folder: self.save_pretrained(folder, label_names=label_names, data_config=data_config,
                                                         repo_id=repo_id),
            private=private, token=token, commit_message=commit_message, revision=revision, create_pr=create_pr,
        )
