"""Put TAG-Head on pytorchvideo's SlowFast-R50 (two pathways, one feature map for the head).

Run: .venv/bin/python examples/wrap_slowfast.py   (CPU, random weights, a few seconds)

The adapter runs both pathways, average-pools the fast pathway's map over time down to the slow
pathway's length and concatenates the two on channels (2048 + 256 = 2304). Feed either one clip
``[B, 3, T, H, W]`` (the slow pathway takes T / alpha evenly spaced frames) or a list ``[slow, fast]``.
For real weights: ``torch.hub.load("facebookresearch/pytorchvideo", "slowfast_r50", pretrained=True)``
and pass the module.
"""

import torch

import taghead


def main() -> None:
    torch.manual_seed(0)
    model = taghead.wrap_backbone("pytorchvideo/slowfast_r50", num_classes=99, num_frames=16, crop_size=64,
                                  embed_dim=256, num_heads=4, mlp_dim=512).eval()
    alpha = model.backbone.alpha
    print(f"alpha = {alpha}; feature map (C, T, H, W) = {model.backbone.feature_shape(16, 64)}")

    clip = torch.randn(1, 3, 16, 64, 64)
    slow = clip[:, :, torch.linspace(0, 15, 16 // alpha).long()]
    with torch.no_grad():
        from_clip = model(clip)
        from_pathways = model([slow, clip])
    print("logits from one clip:", tuple(from_clip.shape), "| from [slow, fast]:", tuple(from_pathways.shape))
    print("same result:", torch.allclose(from_clip, from_pathways))


if __name__ == "__main__":
    main()
