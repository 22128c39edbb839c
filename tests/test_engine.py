"""The training engine in-process: learning, accumulation, auxiliary losses, label smoothing, clipping, AMP,
schedule, optimiser groups, evaluation and the corrupt-video summary."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import taghead
from taghead import DataConfig, MeanPoolHead, VideoClassifier
from taghead.engine import TrainConfig, Trainer, WarmupCosine, build_optimizer, evaluate, load_model
from taghead.engine.metrics import confusion_matrix, mean_class_accuracy, topk_accuracy

CFG = DataConfig(num_frames=4, crop_size=8, resize_size=None)


def tiny_model(num_classes: int = 3, seed: int = 0) -> VideoClassifier:
    """A 1x1x1 convolution + mean pooling: no BatchNorm, no dropout (runs are exactly comparable)."""
    torch.manual_seed(seed)
    backbone = nn.Conv3d(3, 6, kernel_size=1)
    head = MeanPoolHead(6, 4, 8, 8, num_classes=num_classes)
    return VideoClassifier(backbone, head, CFG, label_names=[f"c{i}" for i in range(num_classes)])


def colour_task(n: int, num_classes: int = 3, seed: int = 0) -> TensorDataset:
    """Class ``c`` = clips whose channel ``c`` is brighter: learnable by the tiny model."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = torch.randn(n, 3, 4, 8, 8, generator=g)
    x[torch.arange(n), y] += 1.5
    return TensorDataset(x, y)


def quiet(**kw) -> TrainConfig:
    base = dict(epochs=1, batch_size=8, optimizer="adamw", lr=1e-2, progress=False, tensorboard=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_learns_and_writes_its_outputs(tmp_path: Path) -> None:
    model = tiny_model()
    lines: list[str] = []
    trainer = Trainer(model, colour_task(48), colour_task(24, seed=1), quiet(epochs=5, warmup_epochs=1, lr=5e-2),
                      output_dir=tmp_path, log=lines.append)
    history = trainer.fit()
    assert [int(r["epoch"]) for r in history] == list(range(1, 6))
    assert history[-1]["val_top1"] > 0.9 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert len(lines) == 6 and "val top1" in lines[-1]
    for name in ("metrics.csv", "checkpoint_last.pt", "checkpoint_best.pt", "curves.png", "best/config.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 6
    # The best/ folder is a save_pretrained model; load_model finds it in the training folder.
    best = load_model(tmp_path, backbone=nn.Conv3d(3, 6, kernel_size=1))  # a hand-built model needs its backbone
    x = colour_task(4, seed=2).tensors[0]
    assert best.label_names == ["c0", "c1", "c2"]
    assert max(r["val_top1"] for r in history) == pytest.approx(evaluate(best, colour_task(24, seed=1),
                                                                         progress=False)[0]["top1"])
    # A checkpoint file also rebuilds the model (from the spec stored in it).
    last = load_model(tmp_path / "checkpoint_last.pt", backbone=nn.Conv3d(3, 6, kernel_size=1))
    with torch.no_grad():
        assert torch.allclose(last(x), model.eval()(x), atol=1e-6)


def _run(batch_size: int, accum_steps: int) -> VideoClassifier:
    model = tiny_model(seed=4)
    Trainer(model, colour_task(16), None, quiet(batch_size=batch_size, accum_steps=accum_steps, lr=5e-2)).fit()
    return model


def test_gradient_accumulation_equals_the_large_batch() -> None:
    big, accumulated, small = _run(8, 1), _run(4, 2), _run(4, 1)
    for (name, a), b in zip(big.named_parameters(), accumulated.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert not all(torch.allclose(a, c, atol=1e-4) for a, c in zip(big.parameters(), small.parameters()))


class WithAux(VideoClassifier):
    def losses(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"l2": 0.5 * self.head.fc.weight.pow(2).sum()}


def test_auxiliary_losses_and_label_smoothing_enter_the_loss() -> None:
    base = tiny_model()
    model = WithAux(base.backbone, base.head, CFG)
    before = copy.deepcopy(model)
    data = colour_task(8)
    trainer = Trainer(model, data, None, quiet(label_smoothing=0.2, lr=1e-3))
    row = trainer.fit()[-1]
    x, y = data.tensors
    with torch.no_grad():
        logits = before(x)
        aux = float(0.5 * before.head.fc.weight.pow(2).sum())
        expected = float(F.cross_entropy(logits, y, label_smoothing=0.2)) + aux
    assert row["train_l2"] == pytest.approx(aux, rel=1e-5)
    assert row["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_gradients_are_clipped_before_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.nn.utils.clip_grad_norm_
    norms: list[float] = []

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        out = real(params, max_norm, *args, **kwargs)
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))))
        return out

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    Trainer(tiny_model(), colour_task(16), None, quiet(batch_size=4, clip_grad=1e-3)).fit()
    assert len(norms) == 4  # one per optimiser step
    assert all(n <= 1e-3 * (1 + 1e-4) for n in norms)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_runs_on_cpu(amp: str, tmp_path: Path) -> None:
    trainer = Trainer(tiny_model(), colour_task(16), colour_task(8), quiet(amp=amp, epochs=2), output_dir=tmp_path,
                      log=lambda _: None)
    history = trainer.fit()
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in history)
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert ("scale" in state["scaler"]) == (amp == "fp16")  # the gradient scaler is saved when it is used


def test_warmup_cosine_schedule_by_hand() -> None:
    f = WarmupCosine(total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    assert [f(0), f(1), f(2)] == pytest.approx([0.5, 1.0, 1.0])
    assert f(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert f(10) == pytest.approx(0.1) and f(50) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(10, 11)


def test_trainer_follows_the_schedule() -> None:
    trainer = Trainer(tiny_model(), colour_task(16), None, quiet(batch_size=4, epochs=2, lr=0.1, warmup_epochs=1))
    history = trainer.fit()  # 4 steps per epoch, 8 in all, 4 of warm-up
    f = WarmupCosine(8, 4)
    assert [r["lr"] for r in history] == pytest.approx([0.1 * f(3), 0.1 * f(7)])  # what each epoch's last step used


def test_backbone_learning_rate_scale() -> None:
    opt = build_optimizer(tiny_model(), "adam", lr=1e-3, backbone_lr_scale=0.1)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"backbone": 1e-4, "head": 1e-3})
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_optimizer(tiny_model(), "sgd")


def test_evaluate_matches_the_metric_functions() -> None:
    model = tiny_model(num_classes=4).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(13, 3, 4, 8, 8, generator=g), torch.tensor([0, 1, 2] * 4 + [0])  # class 3 absent
    metrics, meter = evaluate(model, TensorDataset(x, y), batch_size=5, progress=False)
    with torch.no_grad():
        logits = model(x)
    assert metrics["count"] == 13
    assert metrics["top1"] == pytest.approx(topk_accuracy(logits, y, 1))
    assert metrics["top5"] == 1.0  # 4 classes: every class is in the top 5
    cm = confusion_matrix(logits.argmax(1), y, 4)
    assert torch.equal(meter.confusion, cm)
    assert metrics["mca"] == pytest.approx(mean_class_accuracy(cm))
    assert metrics["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs"), (dict(amp="fp8"), "amp"), (dict(optimizer="sgd"), "optimizer"),
    (dict(label_smoothing=1.0), "label_smoothing"), (dict(clip_grad=0.0), "clip_grad"),
    (dict(warmup_epochs=5, epochs=2), "warmup_epochs"), (dict(monitor="top5"), "monitor"),
])
def test_bad_training_options_are_clear_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_unreadable_video_is_skipped_counted_and_summarised(tmp_path: Path) -> None:
    from taghead.data import CorruptVideoWarning, VideoClipDataset, write_video

    g = torch.Generator().manual_seed(0)
    for cls in ("a", "b"):
        for i in range(2):
            frames = torch.randint(0, 256, (6, 8, 8, 3), dtype=torch.uint8, generator=g)
            write_video(tmp_path / cls / f"{i}.mp4", frames)
    (tmp_path / "b" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    data = VideoClipDataset.from_folder(tmp_path, CFG, train=True, hflip_p=0.0)
    lines: list[str] = []
    trainer = Trainer(tiny_model(num_classes=2), data, None, quiet(batch_size=5), log=lines.append)
    with pytest.warns(CorruptVideoWarning, match="broken.mp4"):
        trainer.fit()
    summary = [line for line in lines if line.startswith("train data:")]
    assert len(summary) == 1 and "broken.mp4" in summary[0] and "1 item(s) replaced" in summary[0]


def test_wrap_backbone_model_trains_with_the_tag_head(tmp_path: Path) -> None:
    model = taghead.wrap_backbone("taghead/tiny_video_cnn", 3, num_frames=8, crop_size=32, backbone_kwargs={"width": 4},
                                  embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 3, 8, 32, 32, generator=g), torch.arange(8) % 3)
    history = Trainer(model, data, data, quiet(batch_size=4), output_dir=tmp_path, log=lambda _: None).fit()
    assert math.isfinite(history[-1]["val_loss"])
    assert taghead.from_pretrained(tmp_path / "best").head.head_name == "tag"


def test_channels_last_gives_the_same_training() -> None:
    runs = []
    for channels_last in (False, True):
        model = tiny_model(seed=2)
        Trainer(model, colour_task(16), None, quiet(batch_size=4, channels_last=channels_last)).fit()
        runs.append(model)
    assert runs[1].backbone.weight.is_contiguous(memory_format=torch.channels_last_3d)
    for a, b in zip(runs[0].parameters(), runs[1].parameters()):
        assert torch.allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------ weight decay groups and per-step averages

#: Small options per registered head (any other head is built with its defaults).
HEAD_OPTIONS = {
    "tag": dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32),
    "art": dict(embed_dim=16, num_heads=2, se_depth=1, rssa_depth=1, mlp_dim=32),
    "attentive": dict(embed_dim=16, num_heads=2, depth=1),
}
NAMES = ["split jump", "switch leap", "ring leap"]
#: What each built-in head must exempt beyond its 1-D parameters.
EXEMPT = {"meanpool": set(), "tag": {"pos_embed.weight"}, "art": {"pos_embed.weight", "query_prompts", "text_agent"},
          "attentive": {"pos_embed.weight", "query"}}


@pytest.mark.parametrize("head_name", taghead.list_heads())
def test_no_weight_decay_on_norms_biases_embeddings_prompts_and_the_agent(head_name: str) -> None:
    options = dict(HEAD_OPTIONS.get(head_name, {}))
    if head_name == "art":
        options["text_bank"] = taghead.build_text_bank(NAMES, encoder="hashing:8", progress=False)
    head = taghead.create_head(head_name, 6, 2, 2, 2, num_classes=3, **options)
    model = VideoClassifier(nn.Conv3d(3, 6, kernel_size=1), head, CFG)
    assert callable(getattr(head, "no_weight_decay", None)), f"{head_name} lacks no_weight_decay()"
    exempt = set(head.no_weight_decay())
    if head_name in EXEMPT:
        assert exempt == EXEMPT[head_name]
    groups = {g["name"]: g for g in model.param_groups(lr=1e-3, backbone_lr_scale=0.1, weight_decay=0.05)}
    by_id = {id(p): name for name, p in model.named_parameters()}
    no_decay = {by_id[id(p)] for name in ("backbone_no_decay", "head_no_decay") for p in groups[name]["params"]}
    decay = {by_id[id(p)] for name in ("backbone", "head") for p in groups.get(name, {"params": []})["params"]}
    expected = {f"head.{n}" for n in exempt} | {n for n, p in model.named_parameters() if p.ndim <= 1}
    assert no_decay == expected and decay == set(by_id.values()) - expected
    assert "backbone.bias" in no_decay and "backbone.weight" in decay and "head.fc.weight" in decay
    norms = {f"head.{n}.{w}" for n, m in head.named_modules() if isinstance(m, nn.LayerNorm) for w in ("weight", "bias")}
    assert norms <= no_decay
    assert all(g["weight_decay"] == (0.0 if g["name"].endswith("_no_decay") else 0.05) for g in groups.values())
    assert groups["head_no_decay"]["lr"] == groups["head"]["lr"] == 1e-3
    # with weight decay 0 nothing is exempted: one group per part
    assert [g["name"] for g in model.param_groups(lr=1e-3, weight_decay=0.0)] == ["backbone", "head"]


def test_a_timm_backbones_own_no_weight_decay_list_is_honoured() -> None:
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32)
    assert {"pos_embed", "cls_token"} <= set(vit.no_weight_decay())
    model = taghead.wrap_backbone(vit, 3, head="meanpool", num_frames=2, crop_size=32)
    opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.05)
    by_id = {id(p): name for name, p in model.named_parameters()}
    no_decay = {by_id[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert {"backbone.model.pos_embed", "backbone.model.cls_token"} <= no_decay
    assert "backbone.model.blocks.0.attn.qkv.weight" not in no_decay


def _art_model(seed: int = 0) -> VideoClassifier:
    """ART without its text losses (the agent is frozen), so the bank's only motion is the moving average."""
    torch.manual_seed(seed)
    head = taghead.ARTHead(6, 4, 8, 8, num_classes=3, embed_dim=8, num_heads=2, se_depth=1, rssa_depth=1, mlp_dim=16,
                           text_bank=taghead.build_text_bank(NAMES, encoder="hashing:8", progress=False),
                           text_video_loss_weight=0.0, text_prototype_loss_weight=0.0, bank_momentum=0.5)
    with torch.no_grad():
        head.text_agent.add_(1.0)
    return VideoClassifier(nn.Conv3d(3, 6, kernel_size=1), head, CFG)


@pytest.mark.parametrize("accum_steps", [1, 2, 4])
def test_the_text_bank_moves_once_per_optimiser_step_with_gradient_accumulation(accum_steps: int) -> None:
    """4 micro-batches: 4 // accum_steps optimiser steps, so the bank's distance to its agent shrinks by m^steps."""
    model = _art_model()
    bank0, agent = model.head.text_bank.clone(), model.head.text_agent.detach().clone()
    trainer = Trainer(model, colour_task(8), None, quiet(batch_size=2, accum_steps=accum_steps, lr=1e-3))
    trainer.fit()
    steps = 4 // accum_steps
    assert trainer.global_step == steps
    expected = agent + 0.5 ** steps * (bank0 - agent)
    assert torch.allclose(model.head.text_bank, expected, atol=1e-6)
    assert torch.equal(model.head.text_agent, agent)  # frozen: the moving average is the bank's only change


def test_predictions_name_classes_by_label_names_or_indices() -> None:
    from taghead.engine.predict import topk_predictions

    class Scores(nn.Module):
        def __init__(self, label_names: list[str] | None) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 3)
            self.label_names = label_names

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1)[:, :1])

    clips = torch.randn(2, 3, 1, 1, 1)
    assert set(topk_predictions(Scores(None), clips, k=3)[0].labels) == {"0", "1", "2"}
    assert set(topk_predictions(Scores(["a", "b", "c"]), clips, k=3)[0].labels) == {"a", "b", "c"}
    with pytest.raises(ValueError, match=r"one name per class \(3\), got 2 names"):
        topk_predictions(Scores(["a", "b"]), clips)


# ------------------------------------------------ nothing of an earlier run lost; logged lr; ties; the card's metrics
def test_a_fresh_run_refuses_an_earlier_run_and_overwrite_replaces_only_its_files(tmp_path: Path) -> None:
    from taghead.engine.trainer import RunExistsError

    Trainer(tiny_model(), colour_task(16), colour_task(8, seed=1), quiet(), output_dir=tmp_path, log=lambda _: None).fit()
    (tmp_path / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    again = Trainer(tiny_model(seed=1), colour_task(16), colour_task(8, seed=1), quiet(), output_dir=tmp_path,
                    log=lambda _: None)
    with pytest.raises(RunExistsError, match="already holds a training run .*nothing was changed"):
        again.fit()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # untouched
    lines: list[str] = []
    Trainer(tiny_model(seed=1), colour_task(16), colour_task(8, seed=1), quiet(epochs=2), output_dir=tmp_path,
            log=lines.append, overwrite=True).fit()
    assert lines[0].startswith(f"replacing the earlier run in {tmp_path} (metrics.csv, checkpoint_last.pt")
    assert (tmp_path / "notes.txt").read_text() == "mine"  # not a run file: kept
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3  # the new run's 2 epochs, not 1 + 2


def test_the_logged_lr_is_the_one_the_step_used() -> None:
    # One epoch of one step: the cosine schedule ends at 0 after it, but that step ran at the peak.
    history = Trainer(tiny_model(), colour_task(8), None, quiet(lr=3e-3), log=lambda _: None).fit()
    assert history[0]["lr"] == pytest.approx(3e-3)  # (test_trainer_follows_the_schedule: several steps)


def test_best_checkpoint_breaks_ties_on_the_metric_with_the_validation_loss(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from taghead.engine.trainer import is_improvement

    assert is_improvement(1.0, 0.08, 1.0, 0.157) and not is_improvement(1.0, 0.2, 1.0, 0.157)
    assert not is_improvement(0.9, 0.01, 1.0, 0.157) and is_improvement(0.5, 9.0, None, None)
    assert not is_improvement(math.nan, 0.1, None, None)
    trainer = Trainer(tiny_model(), colour_task(8), colour_task(8, seed=1), quiet(epochs=4), output_dir=tmp_path,
                      log=lambda _: None)
    scripted = iter([(1.0, 0.157), (1.0, 0.084), (1.0, 0.1), (0.9, 0.01)])  # (top1, loss) per epoch

    def evaluate(desc: str = "eval"):
        top1, loss = next(scripted)
        return {"top1": top1, "top5": 1.0, "mca": top1, "loss": loss, "count": 8}, None

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    trainer.fit()
    assert trainer.best_metric == 1.0 and trainer.best_loss == pytest.approx(0.084)
    assert taghead.engine.checkpoint.load_checkpoint(tmp_path / "checkpoint_best.pt")["epoch"] == 2
    config = __import__("json").loads((tmp_path / "best" / "config.json").read_text())
    assert config["pretrained_cfg"]["epoch"] == 2 and config["pretrained_cfg"]["metrics"]["top1_accuracy"] == 100.0


def test_the_card_of_best_records_the_validation_metrics(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    model = tiny_model()
    trainer = Trainer(model, colour_task(24), colour_task(12, seed=1), quiet(epochs=2, lr=5e-2), output_dir=tmp_path,
                      log=lambda _: None, data_name="colour-task")
    history = trainer.fit()
    assert model.weights_cfg is None  # the live model's provenance (weights_cfg since issue 19) is left as it was
    best = max(history, key=lambda r: (r["val_top1"], -r["val_loss"]))
    card = ModelCard.load(tmp_path / "best" / "README.md")
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["top1_accuracy"].metric_value == pytest.approx(round(100 * best["val_top1"], 2))
    assert results["mean_class_accuracy"].metric_value == pytest.approx(round(100 * best["val_mca"], 2))
    assert results["top1_accuracy"].dataset_name == "colour-task" and results["top1_accuracy"].dataset_split == "validation"
    text = card.text
    assert f"Measured by taghead on the validation split of colour-task after training epoch {int(best['epoch'])}" in text
    assert f"| colour-task | validation | Top-1 accuracy | {round(100 * best['val_top1'], 2)} |" in text
    reloaded = taghead.from_pretrained(tmp_path / "best", backbone=nn.Conv3d(3, 6, kernel_size=1))
    assert reloaded.weights_cfg.epoch == int(best["epoch"]) and reloaded.weights_cfg.split == "validation"
    assert reloaded.pretrained_cfg["epoch"] == int(best["epoch"])  # timm's live view carries the provenance too
