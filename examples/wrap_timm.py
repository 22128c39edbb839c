"""Turn a timm image model into a video backbone: features per frame, TAG-Head across frames.

Run: .venv/bin/python examples/wrap_timm.py   (CPU, random weights, a few seconds)

Frames are folded into the batch, ``forward_features`` runs on each, and the maps are stacked to
``[B, C, T, h, w]``; ViT tokens lose their class token and become a patch grid. The head then models
time. For real weights: ``timm.create_model(name, pretrained=True)`` and pass the module.
"""

import timm
import torch

import taghead


def main() -> None:
    torch.manual_seed(0)
    for name, kwargs in (("resnet18", {}), ("vit_tiny_patch16_224", {"img_size": 64})):
        backbone = timm.create_model(name, pretrained=False, **kwargs)
        model = taghead.wrap_backbone(backbone, num_classes=20, num_frames=4, crop_size=64,
                                      embed_dim=128, num_heads=4, mlp_dim=256).eval()
        with torch.no_grad():
            features = model.forward_features(torch.randn(2, 3, 4, 64, 64))
            logits = model.forward_head(features)
        print(f"{name}: features {tuple(features.shape)} -> logits {tuple(logits.shape)}; "
              f"data config mean {model.data_config.mean}")


if __name__ == "__main__":
    main()
