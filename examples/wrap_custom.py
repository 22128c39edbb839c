"""Put TAG-Head on your own 3D CNN with ``feature_layer``, then save and rebuild it from its spec.

Run: .venv/bin/python examples/wrap_custom.py   (CPU, random weights, a second)

``feature_layer`` names the submodule whose output is the last spatio-temporal map [B, C, T, H, W];
the forward pass stops there, and the never-used pooling/classifier weights are dropped. A callable
``feature_layer=lambda model, video: ...`` works too.
"""

import json

import torch
from torch import nn

import taghead
from taghead.models.wrap import build_from_spec


class My3DNet(nn.Module):
    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 32, (3, 7, 7), (1, 2, 2), (1, 3, 3)), nn.BatchNorm3d(32), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv3d(32, 64, 3, 2, 1), nn.BatchNorm3d(64), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv3d(64, 128, 3, 2, 1), nn.BatchNorm3d(128), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.stage2(self.stage1(self.stem(x)))).flatten(1))


def main() -> None:
    torch.manual_seed(0)
    model = taghead.wrap_backbone(My3DNet(), num_classes=12, feature_layer="stage2", num_frames=16, crop_size=64,
                                  embed_dim=128, num_heads=4, mlp_dim=256)
    print("feature map (C, T, H, W):", model.backbone.feature_shape(16, 64))
    print("dropped from the backbone:", model.backbone.pruned_modules)
    print("spec:", json.dumps(model.spec["adapter_kwargs"]))

    # The spec is plain JSON: rebuild the architecture (your backbone module passed again), load weights.
    spec = json.loads(json.dumps(model.spec))
    rebuilt = build_from_spec(spec, model.data_config.to_dict(), backbone=My3DNet())
    rebuilt.load_state_dict(model.state_dict())
    video = torch.randn(2, 3, 16, 64, 64)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        print("rebuilt model gives the same logits:", torch.allclose(model(video), rebuilt(video)))


if __name__ == "__main__":
    main()
