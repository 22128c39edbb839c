"""Put TAG-Head on torchvision's R(2+1)D-18 and train it for a few steps on random clips.

Run: .venv/bin/python examples/wrap_torchvision.py   (CPU, random weights, a few seconds)

With real weights, build the backbone with ``torchvision.models.video.r2plus1d_18(weights="KINETICS400_V1")``
and pass the module instead of the name; everything else stays the same.
"""

import torch
import torch.nn.functional as F

import taghead


def main() -> None:
    torch.manual_seed(0)
    # By name (random weights); any torchvision video model object works the same way.
    model = taghead.wrap_backbone("torchvision/r2plus1d_18", num_classes=10, num_frames=8, crop_size=32,
                                  embed_dim=128, num_heads=4, mlp_dim=256)
    print("data config:", model.data_config)
    print("feature map the head sees:", model.backbone.feature_shape(8, 32), "(C, T, H, W)")
    print("spec:", model.spec["backbone"], model.spec["adapter"], model.spec["head"])

    optimizer = torch.optim.AdamW(model.param_groups(lr=1e-3, backbone_lr_scale=0.1))
    video = torch.randn(2, 3, 8, 32, 32)  # [B, 3, T, H, W], normalised with data_config.mean/std
    target = torch.randint(0, 10, (2,))
    model.train()
    for step in range(2):
        logits = model(video)
        loss = F.cross_entropy(logits, target) + sum(model.losses(logits, target).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.update_ema()  # once per optimiser step (ART's text bank; a no-op for TAG-Head)
        print(f"step {step}: loss {loss.item():.3f}")

    model.reset_classifier(5)  # a new task with 5 classes: fresh classifier, same backbone and head
    print("after reset_classifier(5):", tuple(model(video).shape))


if __name__ == "__main__":
    main()
