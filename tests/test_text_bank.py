"""taghead.text: the hashing encoder, build_text_bank (layout, validation, cache) and the lazy CLIP encoders."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from taghead.text import (
    DEFAULT_TEMPLATES,
    HashingTextEncoder,
    OpenCLIPTextEncoder,
    TransformersCLIPTextEncoder,
    build_text_bank,
    create_text_encoder,
    text_bank_cache_key,
)

NAMES = ["salto backward tucked", "salto backward tucked with 1 twist", "split jump"]
TEMPLATES = ["This is a video about {label}.", "The person is doing {label}."]


class CountingEncoder:
    """Hashing embeddings that count the texts they encode."""

    encoder_id = "counting-v1"

    def __init__(self) -> None:
        self.calls, self.texts = 0, 0
        self.inner = HashingTextEncoder(32)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        self.texts += len(texts)
        return self.inner(texts)


# --------------------------------------------------------------------------------------- hashing encoder


def test_hashing_encoder_is_deterministic_normalised_and_seeded():
    texts = ["split jump", "switch leap", "a b c"]
    a, b = HashingTextEncoder(64)(texts), HashingTextEncoder(64)(texts)
    assert a.shape == (3, 64) and a.dtype == torch.float32 and torch.equal(a, b)
    assert torch.allclose(a.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert not torch.allclose(HashingTextEncoder(64, seed=1)(texts), a)
    assert torch.equal(HashingTextEncoder(64)(["Split  JUMP!"]), a[:1])  # case and punctuation do not matter


def test_hashing_encoder_similarity_follows_shared_words():
    e = HashingTextEncoder(512)(["salto backward tucked", "salto backward tucked with 1 twist", "split jump"])
    sim = e @ e.T
    assert sim[0, 1] > 0.5 and sim[0, 1] > sim[0, 2] + 0.3


@pytest.mark.parametrize("kwargs,match", [(dict(dim=0), "dim"), (dict(ngram_range=(3, 2)), "ngram_range"),
                                          (dict(seed=-1), "seed")])
def test_hashing_encoder_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HashingTextEncoder(**kwargs)


def test_hashing_encoder_bad_texts():
    enc = HashingTextEncoder(8)
    with pytest.raises(ValueError, match="no word characters"):
        enc(["..."])
    with pytest.raises(TypeError, match="list of strings"):
        enc("split jump")


# ------------------------------------------------------------------------------------------- the bank


def test_bank_layout_equals_encoding_each_prompt():
    enc = HashingTextEncoder(40)
    bank = build_text_bank(NAMES, TEMPLATES, encoder=enc, progress=False)
    assert bank.shape == (3, 2, 40) and bank.dtype == torch.float32
    for k, name in enumerate(NAMES):
        for m, template in enumerate(TEMPLATES):
            prompt = template.format(label=name)
            assert torch.allclose(bank[k, m], F.normalize(enc([prompt])[0], dim=0), atol=1e-6)


def test_bank_from_spec_strings_and_small_batches():
    bank = build_text_bank(NAMES, encoder="hashing:16", batch_size=1, progress=False)
    assert bank.shape == (3, len(DEFAULT_TEMPLATES), 16)
    assert torch.equal(bank, build_text_bank(NAMES, encoder=HashingTextEncoder(16), progress=False))
    assert create_text_encoder("hashing").dim == 512


def test_spec_string_and_encoder_object_share_the_cache(tmp_path):
    build_text_bank(NAMES, TEMPLATES, encoder="hashing:16", cache_path=tmp_path, progress=False)
    build_text_bank(NAMES, TEMPLATES, encoder=HashingTextEncoder(16), cache_path=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_bank_normalises_a_plain_callable():
    bank = build_text_bank(["a", "b"], ["{label}"], encoder=lambda texts: 3 * torch.ones(len(texts), 4), progress=False)
    assert torch.allclose(bank, torch.full((2, 1, 4), 0.5))


def test_cache_skips_the_encoder_on_the_second_call(tmp_path):
    enc = CountingEncoder()
    first = build_text_bank(NAMES, TEMPLATES, encoder=enc, cache_path=tmp_path, progress=False)
    assert enc.calls == 1 and enc.texts == 6
    files = list(tmp_path.glob("text_bank-*.safetensors"))
    assert len(files) == 1
    with safe_open(str(files[0]), framework="pt") as f:
        meta = f.metadata()
    assert meta["encoder"] == "counting-v1" and meta["key"] == text_bank_cache_key(NAMES, TEMPLATES, "counting-v1")
    second = build_text_bank(NAMES, TEMPLATES, encoder=enc, cache_path=tmp_path, progress=False)
    assert enc.calls == 1 and torch.equal(first, second)
    # any change of names, templates or encoder id is a new entry
    build_text_bank(NAMES[:2], TEMPLATES, encoder=enc, cache_path=tmp_path, progress=False)
    build_text_bank(NAMES, TEMPLATES[:1], encoder=enc, cache_path=tmp_path, progress=False)
    build_text_bank(NAMES, TEMPLATES, encoder=enc, cache_path=tmp_path, encoder_id="counting-v2", progress=False)
    assert enc.calls == 4 and len(list(tmp_path.glob("text_bank-*.safetensors"))) == 4


def test_cache_as_a_single_file_is_replaced_when_the_key_changes(tmp_path):
    enc = CountingEncoder()
    path = tmp_path / "bank.safetensors"
    a = build_text_bank(NAMES, TEMPLATES, encoder=enc, cache_path=path, progress=False)
    assert torch.equal(build_text_bank(NAMES, TEMPLATES, encoder=enc, cache_path=path, progress=False), a)
    assert enc.calls == 1
    b = build_text_bank(NAMES[::-1], TEMPLATES, encoder=enc, cache_path=path, progress=False)
    assert enc.calls == 2 and torch.equal(b, a.flip(0))
    build_text_bank(NAMES[::-1], TEMPLATES, encoder=enc, cache_path=path, progress=False)
    assert enc.calls == 2


def test_corrupt_cache_is_re_encoded_with_a_warning(tmp_path):
    enc = CountingEncoder()
    key = text_bank_cache_key(NAMES, TEMPLATES, enc.encoder_id)
    (tmp_path / f"text_bank-{key}.safetensors").write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable"):
        bank = build_text_bank(NAMES, TEMPLATES, encoder=enc, cache_path=tmp_path, progress=False)
    assert enc.calls == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(build_text_bank(NAMES, TEMPLATES, encoder=enc, cache_path=tmp_path, progress=False), bank)
    assert enc.calls == 1


def test_cache_needs_an_encoder_id_for_a_plain_callable(tmp_path):
    with pytest.raises(ValueError, match="encoder_id"):
        build_text_bank(NAMES, TEMPLATES, encoder=lambda t: torch.ones(len(t), 3), cache_path=tmp_path)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(class_names=[]), ValueError, "non-empty list"),
    (dict(class_names="split jump"), ValueError, "non-empty list"),
    (dict(class_names=["a", "a"]), ValueError, "unique"),
    (dict(class_names=["a", " "]), ValueError, "non-empty strings"),
    (dict(templates=["a video of {}"]), ValueError, "{label}"),
    (dict(encoder=42), TypeError, "callable"),
    (dict(encoder="clip"), ValueError, "unknown text encoder"),
    (dict(encoder="hashing:x"), ValueError, "positive integer"),
    (dict(encoder=lambda t: torch.ones(len(t) + 1, 3)), ValueError, r"\[len\(texts\), D\]"),
    (dict(encoder=lambda t: torch.full((len(t), 3), float("nan"))), ValueError, "non-finite"),
    (dict(encoder=lambda t: torch.zeros(len(t), 3)), ValueError, "all-zero"),
    (dict(encoder=lambda t: [[0.0]] * len(t)), TypeError, "torch.Tensor"),
    (dict(batch_size=0), ValueError, "batch_size"),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(class_names=NAMES, templates=TEMPLATES, encoder=HashingTextEncoder(8), progress=False)
    with pytest.raises(error, match=match):
        build_text_bank(**{**args, **kwargs})


# ------------------------------------------------------------------------------------- CLIP encoders


@pytest.mark.parametrize("spec,package,install", [
    ("open_clip:ViT-B-32", "open_clip", "pip install open_clip_torch"),
    ("hf:openai/clip-vit-base-patch32", "transformers", "pip install transformers"),
])
def test_missing_package_is_a_clear_error(monkeypatch, spec, package, install):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    with pytest.raises(ImportError, match=install):
        build_text_bank(NAMES, TEMPLATES, encoder=spec, progress=False)


def _fake_open_clip(created: list) -> types.ModuleType:
    mod = types.ModuleType("open_clip")

    class Model:
        def eval(self):
            return self

        def encode_text(self, tokens):
            return tokens.float() * 2 + 1

    def create_model(name, pretrained=None, device="cpu", cache_dir=None):
        created.append((name, pretrained))
        return Model()

    mod.create_model = create_model
    mod.get_tokenizer = lambda name: (lambda texts: torch.tensor([[len(t), t.count(" "), 1] for t in texts]))
    mod.get_pretrained_cfg = lambda name, tag: {"hf_hub": "taghead-test/not-cached-clip/"} if tag == "openai" else {}
    mod.list_pretrained_tags_by_model = lambda name: ["openai"]
    return mod


def test_open_clip_encoder_reads_a_local_checkpoint(monkeypatch, tmp_path):
    created: list = []
    monkeypatch.setitem(sys.modules, "open_clip", _fake_open_clip(created))
    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"weights")
    enc = create_text_encoder(f"open_clip:ViT-B-32:{weights}")
    assert isinstance(enc, OpenCLIPTextEncoder) and enc.encoder_id == f"open_clip:ViT-B-32:{weights}"
    bank = build_text_bank(NAMES, TEMPLATES, encoder=enc, progress=False)
    assert created == [("ViT-B-32", str(weights))]
    prompt = TEMPLATES[1].format(label=NAMES[2])
    raw = torch.tensor([len(prompt), prompt.count(" "), 1.0]) * 2 + 1
    assert bank.shape == (3, 2, 3) and torch.allclose(bank[2, 1], F.normalize(raw, dim=0))


def test_open_clip_weights_must_be_cached(monkeypatch, tmp_path):
    created: list = []
    monkeypatch.setitem(sys.modules, "open_clip", _fake_open_clip(created))
    enc = OpenCLIPTextEncoder("ViT-B-32", "openai", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="not in the local cache"):
        enc(["split jump"])
    assert created == []  # nothing was built, nothing downloaded
    with pytest.raises(ValueError, match="known tags"):
        OpenCLIPTextEncoder("ViT-B-32", "laion-unknown")(["split jump"])


def _fake_transformers(calls: list, fail: bool = False) -> types.ModuleType:
    mod = types.ModuleType("transformers")

    class Tokenizer:
        @classmethod
        def from_pretrained(cls, name, **kwargs):
            calls.append(("tokenizer", name, kwargs["local_files_only"]))
            if fail:
                raise OSError("not in the cache")
            return cls()

        def __call__(self, texts, padding, truncation, return_tensors):
            return {"input_ids": torch.tensor([[len(t), 1] for t in texts])}

    class TextModel:
        @classmethod
        def from_pretrained(cls, name, **kwargs):
            calls.append(("model", name, kwargs["local_files_only"]))
            return cls()

        def to(self, device):
            return self

        def eval(self):
            return self

        def __call__(self, input_ids):
            return types.SimpleNamespace(text_embeds=input_ids.float())

    mod.AutoTokenizer, mod.CLIPTextModelWithProjection = Tokenizer, TextModel
    return mod


def test_transformers_encoder_loads_local_files_only(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "transformers", _fake_transformers(calls))
    enc = create_text_encoder("transformers:openai/clip-vit-base-patch32")
    assert isinstance(enc, TransformersCLIPTextEncoder)
    out = enc(["ab", "abcd"])
    assert calls == [("tokenizer", "openai/clip-vit-base-patch32", True), ("model", "openai/clip-vit-base-patch32", True)]
    assert torch.allclose(out, F.normalize(torch.tensor([[2.0, 1.0], [4.0, 1.0]]), dim=-1))


def test_transformers_encoder_uncached_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", _fake_transformers([], fail=True))
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        create_text_encoder("hf:openai/clip-vit-base-patch32")(["split jump"])
