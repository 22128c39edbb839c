"""Train a taghead model with timm's training utilities, as timm's ``train.py`` does, on a tiny synthetic set.

Run: .venv/bin/python examples/train_with_timm.py   (CPU, random weights, a few seconds)

What comes from timm: the data settings (``resolve_model_data_config``; the clip length is the video key
``pretrained_cfg["num_frames"]``), the optimizer with weight-decay groups and layer-wise learning-rate decay
(``create_optimizer_v2``, which reads the model's ``no_weight_decay()`` and ``group_matcher()``), the warm-up +
cosine schedule (``create_scheduler_v2``, which applies each group's ``lr_scale``), the weight EMA
(``ModelEmaV3``) and gradient checkpointing (``set_grad_checkpointing``, timm's ``--grad-checkpointing``).
What timm's ``train.py`` does not do and a taghead head may need: adding the head's auxiliary losses
(``model.losses``, ART's) and calling ``model.update_ema()`` after each optimizer step (see docs/guides/timm.md).
"""

from __future__ import annotations

import torch
from timm.data import resolve_model_data_config
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

import taghead


def main(epochs: int = 4, head: str = "tag", quiet: bool = False) -> dict[str, float]:
    """Train for ``epochs`` epochs (a few steps each); returns the first and last training losses and the
    validation accuracy of the model and of its EMA (a few steps are not meant to reach a good accuracy)."""
    torch.manual_seed(0)
    model = taghead.wrap_backbone("taghead/tiny_video_cnn", num_classes=4, head=head, num_frames=8, crop_size=32,
                                  backbone_kwargs=dict(width=8), **({"dropout": 0.0} if head == "tag" else {}))
    model.set_grad_checkpointing(True)  # timm's --grad-checkpointing: less activation memory, same gradients

    data_config = resolve_model_data_config(model)  # input_size (3, H, W), mean, std, crop_pct, interpolation
    num_frames = model.pretrained_cfg["num_frames"]
    size = data_config["input_size"][-1]
    clips = dict(num_frames=num_frames, size=size, num_classes=4, data_config=model.data_config)
    train = DataLoader(taghead.SyntheticFineGrainedDataset(32, split="train", **clips), batch_size=8, shuffle=True)
    val = DataLoader(taghead.SyntheticFineGrainedDataset(16, split="val", **clips), batch_size=8)

    optimizer = create_optimizer_v2(model, "adamw", lr=3e-3, weight_decay=0.05, layer_decay=0.75)
    scheduler, epochs = create_scheduler_v2(optimizer, "cosine", num_epochs=epochs, warmup_epochs=1,
                                            warmup_lr=3e-4, step_on_epochs=False, updates_per_epoch=len(train))
    ema = ModelEmaV3(model, decay=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    if not quiet:
        print(f"clip {num_frames} x {size} x {size}, {len(optimizer.param_groups)} parameter groups, "
              f"lr_scale {min(g['lr_scale'] for g in optimizer.param_groups):.3f} .. 1.0")

    updates, losses = 0, []
    for epoch in range(epochs):
        model.train()
        for video, target in train:
            logits = model(video)
            # timm's train.py stops at loss_fn(logits, target); a head with auxiliary losses (ART) adds its own:
            loss = loss_fn(logits, target) + sum(model.losses(logits, target).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.update_ema()  # ART's text bank follows its agent once per step (a no-op for other heads)
            updates += 1
            losses.append(loss.item())
            ema.update(model, step=updates)
            scheduler.step_update(num_updates=updates)
        scheduler.step(epoch + 1)
        if not quiet:
            print(f"epoch {epoch}: loss {losses[-1]:.3f}, head lr {optimizer.param_groups[-1]['lr']:.2e}")

    accuracy = {name: _accuracy(net, val) for name, net in (("model", model), ("ema", ema.module))}
    if not quiet:
        print(f"validation accuracy: model {accuracy['model']:.2f}, EMA {accuracy['ema']:.2f} "
              f"({len(val.dataset)} clips, {len(train.dataset.class_names)} classes)")
    return {"first_loss": losses[0], "last_loss": losses[-1], "updates": updates,
            "val_accuracy": accuracy["model"], "ema_val_accuracy": accuracy["ema"]}


def _accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for video, target in loader:
            correct += int((model(video).argmax(1) == target).sum())
            total += len(target)
    return correct / total


if __name__ == "__main__":
    main()
