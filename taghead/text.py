r"""Text-constrained semantic banks: class names -> prompt templates -> text encoder -> ``[K, M, D]``.

ART (:class:`taghead.ARTHead`) reads the semantics of each class from a bank of text embeddings:
every class name is put into ``M`` prompt templates ("This is a video about {label}.", ...), every
prompt is encoded, and the L2-normalised embeddings are stacked into a float32 tensor
``[num_classes, num_templates, D]``. The bank is computed once, stored, and needs no text encoder
at inference.

Encoders are pluggable (``encoder=`` of :func:`build_text_bank`):

- ``"open_clip:MODEL[:PRETRAINED]"`` (e.g. ``"open_clip:ViT-B-32"``, pretrained tag ``"openai"`` by
  default, or the path of a local checkpoint): CLIP's text tower through ``open_clip``
  (``pip install open_clip_torch``);
- ``"transformers:NAME"`` / ``"hf:NAME"`` (e.g. ``"hf:openai/clip-vit-base-patch32"``): CLIP's text
  tower through Hugging Face ``transformers`` (``pip install transformers``);
- ``"hashing"`` / ``"hashing:DIM"``: :class:`HashingTextEncoder`, a small deterministic encoder
  without dependencies or weights (tests, the demo, ablations);
- any callable ``list[str] -> Tensor[len, D]``.

The CLIP encoders import their package lazily and only read weights that are already in the local
cache (``local_files_only=True``): taghead never downloads a text encoder on its own. A missing
package or uncached weights give an error that says what to install or download.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .weights import load_safetensors, save_safetensors

__all__ = [
    "DEFAULT_TEMPLATES",
    "HashingTextEncoder",
    "OpenCLIPTextEncoder",
    "TransformersCLIPTextEncoder",
    "build_text_bank",
    "create_text_encoder",
    "text_bank_cache_key",
]

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "This is a video about {label}.",
    "The person is doing {label}.",
    "A video of a person doing {label}.",
    "A clip showing {label}.",
    "An athlete performing {label}.",
    "{label}",
)
"""Prompt templates; ``{label}`` is replaced by the class name. The first two are the source paper's
examples."""

_CACHE_FORMAT = 1
TextEncoder = Callable[[list[str]], torch.Tensor]


# ------------------------------------------------------------------------------------------------- encoders
class HashingTextEncoder:
    r"""Deterministic text embeddings from hashed words and character n-grams (no weights, no downloads).

    A text is lower-cased and split into words; its features are the words and the character
    n-grams (``ngram_range``, inclusive) of each word padded as ``"<word>"``. Each feature ``f`` is
    hashed (BLAKE2b keyed by ``seed``) to a coordinate ``i(f)`` and a sign ``s(f)``; the embedding
    is :math:`e = \sum_f s(f)\, \mathbf{1}_{i(f)} / \lVert\cdot\rVert_2` (the hashing trick: a fixed
    sparse random projection of the bag of features). Texts that share words or word pieces get
    positive cosine similarity, so prompts of the same class are close and classes with similar
    names ("salto backward tucked" / "salto backward tucked with 1 twist") are closer than unrelated ones.

    Args:
        dim: embedding width.
        ngram_range: smallest and largest character n-gram.
        seed: hash key; different seeds give unrelated embeddings.
    """

    def __init__(self, dim: int = 512, ngram_range: tuple[int, int] = (3, 5), seed: int = 0) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        lo, hi = ngram_range
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ValueError(f"ngram_range must be two ints 1 <= lo <= hi, got {ngram_range!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.dim, self.ngram_range, self.seed = dim, (lo, hi), seed
        self._key = seed.to_bytes(16, "little")

    @property
    def encoder_id(self) -> str:
        """Identifies the embeddings this encoder produces (the text-bank cache key uses it)."""
        return f"hashing(dim={self.dim},ngrams={self.ngram_range[0]}-{self.ngram_range[1]},seed={self.seed})"

    def _features(self, text: str) -> list[str]:
        feats = []
        for word in re.findall(r"\w+", text.lower()):
            feats.append(f"w:{word}")
            padded = f"<{word}>"
            for n in range(self.ngram_range[0], self.ngram_range[1] + 1):
                feats += [f"c:{padded[i:i + n]}" for i in range(max(len(padded) - n + 1, 0))]
        return feats

    def __call__(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        out = torch.zeros(len(texts), self.dim, dtype=torch.float64)
        for row, text in enumerate(texts):
            feats = self._features(text)
            if not feats:
                raise ValueError(f"HashingTextEncoder: text {text!r} has no word characters to encode")
            for feat in feats:
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8, key=self._key).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return F.normalize(out, dim=-1).float()

    def __repr__(self) -> str:
        return f"HashingTextEncoder(dim={self.dim}, ngram_range={self.ngram_range}, seed={self.seed})"


class OpenCLIPTextEncoder:
    """CLIP's text tower through ``open_clip`` (``pip install open_clip_torch``), from local weights only.

    Args:
        model_name: an ``open_clip`` architecture, e.g. ``"ViT-B-32"``.
        pretrained: an ``open_clip`` pretrained tag (e.g. ``"openai"``) or the path of a local checkpoint.
        device: where to run the encoder.
        cache_dir: ``open_clip``'s / the Hugging Face cache folder (``None``: their defaults).
        local_files_only: read weights only from the local cache (default); ``False`` lets
            ``open_clip`` download them.
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str = "openai", *, device: str = "cpu",
                 cache_dir: str | os.PathLike | None = None, local_files_only: bool = True) -> None:
        self.model_name, self.pretrained, self.device = model_name, pretrained, device
        self.cache_dir, self.local_files_only = cache_dir, local_files_only
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def encoder_id(self) -> str:
        """``"open_clip:<model>:<pretrained>"``: what the text-bank cache key records."""
        return f"open_clip:{self.model_name}:{self.pretrained}"

    def _weights(self, open_clip: Any) -> str:
        """The local checkpoint for ``pretrained`` (a path), or the tag itself when downloads are allowed."""
        if os.path.isfile(self.pretrained):
            return self.pretrained
        cfg = open_clip.get_pretrained_cfg(self.model_name, self.pretrained) or {}
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(self.model_name)
            raise ValueError(f"open_clip has no pretrained weights {self.pretrained!r} for {self.model_name!r} "
                             f"(and no such local file); known tags: {tags}")
        if not self.local_files_only:
            return self.pretrained
        tried = []
        if cfg.get("hf_hub"):
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import LocalEntryNotFoundError

            # open_clip's convention: "org/repo/" (its standard file names) or "org/repo/file".
            repo_id, filename = os.path.split(cfg["hf_hub"])
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in names:
                try:
                    return hf_hub_download(repo_id, name, cache_dir=self.cache_dir, local_files_only=True)
                except LocalEntryNotFoundError:
                    tried.append(f"Hugging Face cache: {repo_id}/{name}")
        if cfg.get("url"):
            folder = Path(self.cache_dir) if self.cache_dir else Path("~/.cache/clip").expanduser()
            path = folder / os.path.basename(cfg["url"])
            if path.is_file():
                return str(path)
            tried.append(str(path))
        raise FileNotFoundError(
            f"the CLIP weights open_clip:{self.model_name}:{self.pretrained} are not in the local cache (looked "
            f"for: {'; '.join(tried) or 'no known location'}). taghead does not download text encoders: fetch "
            f"them once while online (python -c \"import open_clip; open_clip.create_model('{self.model_name}', "
            f"pretrained='{self.pretrained}')\"), pass the path of a local checkpoint as pretrained, or use "
            "OpenCLIPTextEncoder(..., local_files_only=False)."
        )

    def _load(self) -> None:
        try:
            import open_clip
        except ImportError:
            raise ImportError(
                "the 'open_clip:' text encoder needs the open_clip package: pip install open_clip_torch (its CLIP "
                "weights must also be in your local cache). Without it, use another encoder, e.g. "
                "taghead.text.HashingTextEncoder()."
            ) from None
        weights = self._weights(open_clip)
        model = open_clip.create_model(self.model_name, pretrained=weights, device=self.device,
                                       cache_dir=None if self.cache_dir is None else str(self.cache_dir))
        self._model = model.eval()
        self._tokenizer = open_clip.get_tokenizer(self.model_name)

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        if self._model is None:
            self._load()
        tokens = self._tokenizer(texts).to(self.device)
        return F.normalize(self._model.encode_text(tokens).float(), dim=-1).cpu()

    def __repr__(self) -> str:
        return f"OpenCLIPTextEncoder({self.model_name!r}, pretrained={self.pretrained!r})"


class TransformersCLIPTextEncoder:
    """CLIP's text tower through Hugging Face ``transformers`` (``pip install transformers``), local weights only.

    Args:
        name: a model id in the Hugging Face cache (e.g. ``"openai/clip-vit-base-patch32"``) or a local folder.
        device: where to run the encoder.
        cache_dir: the Hugging Face cache folder (``None``: the default).
        local_files_only: read weights only from the local cache (default); ``False`` allows downloads.
    """

    def __init__(self, name: str = "openai/clip-vit-base-patch32", *, device: str = "cpu",
                 cache_dir: str | os.PathLike | None = None, local_files_only: bool = True) -> None:
        self.name, self.device, self.cache_dir, self.local_files_only = name, device, cache_dir, local_files_only
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def encoder_id(self) -> str:
        """``"transformers:<name>"``: what the text-bank cache key records."""
        return f"transformers:{self.name}"

    def _load(self) -> None:
        try:
            from transformers import AutoTokenizer, CLIPTextModelWithProjection
        except ImportError:
            raise ImportError(
                "the 'transformers:' text encoder needs the transformers package: pip install transformers (its "
                "CLIP weights must also be in your local Hugging Face cache). Without it, use another encoder, "
                "e.g. taghead.text.HashingTextEncoder()."
            ) from None
        kwargs = dict(cache_dir=None if self.cache_dir is None else str(self.cache_dir),
                      local_files_only=self.local_files_only)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.name, **kwargs)
            model = CLIPTextModelWithProjection.from_pretrained(self.name, **kwargs)
        except OSError as err:
            raise FileNotFoundError(
                f"could not load the CLIP text model {self.name!r} from the local Hugging Face cache ({err}). taghead "
                f"does not download text encoders: fetch it once while online (`hf download {self.name}`), pass a "
                "local folder, or use TransformersCLIPTextEncoder(..., local_files_only=False)."
            ) from None
        self._model = model.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        if self._model is None:
            self._load()
        inputs = self._tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return F.normalize(self._model(**inputs).text_embeds.float(), dim=-1).cpu()

    def __repr__(self) -> str:
        return f"TransformersCLIPTextEncoder({self.name!r})"


def create_text_encoder(spec: str) -> TextEncoder:
    """An encoder from a string: ``"open_clip:MODEL[:PRETRAINED]"``, ``"transformers:NAME"`` (or
    ``"hf:NAME"``), ``"hashing"`` or ``"hashing:DIM"``.

    Args:
        spec: the encoder, as a string.
    """
    if not isinstance(spec, str):
        raise TypeError(f"an encoder spec must be a string, got {type(spec).__name__}")
    kind, _, rest = spec.partition(":")
    if kind == "open_clip" and rest:
        model, _, pretrained = rest.partition(":")
        return OpenCLIPTextEncoder(model, pretrained or "openai")
    if kind in ("transformers", "hf") and rest:
        return TransformersCLIPTextEncoder(rest)
    if kind == "hashing":
        if not rest:
            return HashingTextEncoder()
        if not rest.isdigit() or int(rest) < 1:
            raise ValueError(f"'hashing:DIM' needs a positive integer DIM, got {spec!r}")
        return HashingTextEncoder(int(rest))
    raise ValueError(
        f"unknown text encoder {spec!r}; use 'open_clip:MODEL[:PRETRAINED]' (e.g. 'open_clip:ViT-B-32'), "
        "'transformers:NAME' / 'hf:NAME' (e.g. 'hf:openai/clip-vit-base-patch32'), 'hashing[:DIM]', or pass a "
        "callable list[str] -> Tensor[len, D]"
    )


# ------------------------------------------------------------------------------------------------ the bank
def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"a text encoder takes a list of strings, got {type(texts).__name__}")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"a text encoder takes a list of strings, got an item of type {type(bad[0]).__name__}")
    return list(texts)


def _check_names(class_names: Any) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names:
        raise ValueError(f"class_names must be a non-empty list of strings, got {class_names!r}")
    names = list(class_names)
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"class_names must be non-empty strings, got {bad[0]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"class_names must be unique; repeated: {dupes}")
    return names


def _check_templates(templates: Any) -> list[str]:
    if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
        raise ValueError(f"templates must be a non-empty list of strings with a '{{label}}' field, got {templates!r}")
    out = list(templates)
    bad = [t for t in out if not isinstance(t, str) or "{label}" not in t]
    if bad:
        raise ValueError(f"every template needs a '{{label}}' field for the class name, got {bad[0]!r}")
    if len(set(out)) != len(out):
        raise ValueError("templates must be unique")
    return out


def text_bank_cache_key(class_names: Sequence[str], templates: Sequence[str], encoder_id: str) -> str:
    """SHA-256 (hex, 24 characters) of the class names, the templates and the encoder id.

    Args:
        class_names: the class names.
        templates: the prompt templates.
        encoder_id: the encoder's :attr:`~TextEncoder.encoder_id`.
    """
    blob = json.dumps({"format": _CACHE_FORMAT, "class_names": list(class_names), "templates": list(templates),
                       "encoder": encoder_id}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def _cache_file(cache_path: str | os.PathLike, key: str) -> Path:
    path = Path(cache_path).expanduser()
    if path.suffix == ".safetensors":
        return path
    return path / f"text_bank-{key}.safetensors"


def _read_cache(file: Path, key: str, shape: tuple[int, int]) -> torch.Tensor | None:
    if not file.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_safetensors(file)
    except Exception as err:  # safetensors raises its own SafetensorError; CheckpointError from load_safetensors
        warnings.warn(f"text-bank cache {str(file)!r} is unreadable ({err}); re-encoding and replacing it",
                      UserWarning, stacklevel=3)
        return None
    bank = tensors.get("text_bank")
    if meta.get("key") != key or bank is None or bank.dim() != 3 or tuple(bank.shape[:2]) != shape:
        return None
    return bank


def _encode(encoder: TextEncoder, texts: list[str], batch_size: int, progress: bool) -> torch.Tensor:
    from tqdm.auto import tqdm

    chunks = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="encoding prompts", disable=not progress or len(starts) < 2, leave=False):
        batch = texts[start:start + batch_size]
        out = encoder(batch)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the text encoder must return a torch.Tensor [len(texts), D], got {type(out).__name__}")
        if out.dim() != 2 or out.shape[0] != len(batch):
            raise ValueError(f"the text encoder must return [len(texts), D] = [{len(batch)}, D], "
                             f"got shape {tuple(out.shape)}")
        if not out.is_floating_point() or not torch.isfinite(out).all():
            raise ValueError("the text encoder returned non-floating-point or non-finite embeddings")
        chunks.append(out.detach().float().cpu())
    return torch.cat(chunks)


def build_text_bank(
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    encoder: str | TextEncoder = "open_clip:ViT-B-32",
    *,
    cache_path: str | os.PathLike | None = None,
    encoder_id: str | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> torch.Tensor:
    r"""Encode every (class, template) prompt: a float32 bank ``[num_classes, num_templates, D]``, rows L2-normalised.

    Args:
        class_names: the class names, in class-index order.
        templates: prompt templates with a ``{label}`` field (default :data:`DEFAULT_TEMPLATES`).
        encoder: a spec string (``"open_clip:ViT-B-32"`` (default, needs ``open_clip`` and cached
            weights), ``"hf:openai/clip-vit-base-patch32"``, ``"hashing:512"``) or a callable
            ``list[str] -> Tensor[len, D]`` such as :class:`HashingTextEncoder`.
        cache_path: ``None`` (no cache), a folder (the bank is stored there as
            ``text_bank-<key>.safetensors``) or a ``.safetensors`` file. The key hashes the class
            names, the templates and the encoder id; a cached bank with the same key is returned
            without running the encoder, any other content is re-encoded and replaced.
        encoder_id: names the encoder in the cache key. Spec strings and taghead's encoders have one
            (``encoder.encoder_id``); a plain callable needs it when ``cache_path`` is given.
        batch_size: prompts per encoder call.
        progress: a progress bar when there are several batches.

    One line for ART: ``ARTHead(..., text_bank=build_text_bank(names, encoder=HashingTextEncoder()))``.
    """
    names, temps = _check_names(class_names), _check_templates(templates)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(encoder, str):
        spec, encoder = encoder, create_text_encoder(encoder)
        encoder_id = encoder_id or getattr(encoder, "encoder_id", None) or spec
    elif not callable(encoder):
        raise TypeError(f"encoder must be a spec string or a callable list[str] -> Tensor, got {type(encoder).__name__}")
    encoder_id = encoder_id or getattr(encoder, "encoder_id", None)

    file = key = None
    if cache_path is not None:
        if not encoder_id:
            raise ValueError("cache_path needs an encoder id to key the cache: pass encoder_id='my-encoder-v1' (a plain "
                             "callable has no encoder_id attribute)")
        key = text_bank_cache_key(names, temps, encoder_id)
        file = _cache_file(cache_path, key)
        cached = _read_cache(file, key, (len(names), len(temps)))
        if cached is not None:
            return cached

    prompts = [t.replace("{label}", name) for name in names for t in temps]
    emb = _encode(encoder, prompts, batch_size, progress)
    if (emb.norm(dim=-1) == 0).any():
        raise ValueError("the text encoder returned an all-zero embedding; it cannot be normalised")
    bank = F.normalize(emb, dim=-1).reshape(len(names), len(temps), -1).contiguous()

    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors({"text_bank": bank}, file, metadata={
            "key": key, "encoder": str(encoder_id), "class_names": json.dumps(names, ensure_ascii=False),
            "templates": json.dumps(temps, ensure_ascii=False),
        })
    return bank
