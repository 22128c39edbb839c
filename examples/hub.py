"""Save a model, reload it (full model and head-only), and push it to the Hugging Face Hub.

    python examples/hub.py                          # save + reload in a temporary folder
    python examples/hub.py --push-to-hub you/name   # also upload (needs `hf auth login` and network)

Runs in a few seconds on a CPU: the backbones are taghead's tiny 3D CNN and torchvision's r3d_18, with random
weights.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import taghead
from taghead import TAGHead, VideoClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the model to this Hub repository")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args()

    torch.manual_seed(0)
    labels = ["salto", "twist", "split"]
    model = taghead.wrap_backbone("taghead/tiny_video_cnn", num_classes=3, num_frames=16, crop_size=64,
                                  mlp_dim=128, num_heads=4, label_names=labels).eval()
    video = torch.randn(2, 3, 16, 64, 64)

    with tempfile.TemporaryDirectory() as tmp:
        # 1. Full model: model.safetensors + config.json + README.md (model card).
        folder = model.save_pretrained(Path(tmp) / "tiny-tag")
        print("saved:", sorted(p.name for p in folder.iterdir()))
        print((folder / "README.md").read_text().split("---")[1].strip())  # the card's YAML metadata

        reloaded = taghead.from_pretrained(folder)  # or a Hub repo id: taghead.from_pretrained("org/name")
        with torch.no_grad():
            same = torch.equal(model(video), reloaded(video))
        print(f"reloaded {type(reloaded).__name__} with labels {reloaded.label_names}; identical logits: {same}")

        # 2. Head-only checkpoint, attached to another backbone with the same feature-map shape.
        model.head.save_pretrained(Path(tmp) / "tiny-tag-head", label_names=labels)
        head = TAGHead.from_pretrained(Path(tmp) / "tiny-tag-head")
        other = taghead.wrap_backbone("taghead/tiny_video_cnn", num_classes=3, num_frames=16, crop_size=64,
                                      head="meanpool")  # a fresh backbone (other weights)
        combined = VideoClassifier(other.backbone, head, other.data_config, label_names=labels).eval()
        with torch.no_grad():
            print("head on another backbone -> logits", tuple(combined(video).shape))

        # 3. A backbone *module* (say torchvision's r3d_18 with your own weights) is recognised as the
        #    registered architecture it is, so the folder (or repo id) alone rebuilds the model.
        import torchvision

        module = torchvision.models.video.r3d_18()  # weights="KINETICS400_V1" in real use
        print("recognised:", taghead.recognize_backbone(module).name)
        wrapped = taghead.wrap_backbone(module, num_classes=3, num_frames=8, crop_size=32, embed_dim=64,
                                        num_heads=4, mlp_dim=128).eval()
        reloaded = taghead.from_pretrained(wrapped.save_pretrained(Path(tmp) / "r3d-tag"))  # no backbone= needed
        clip = torch.randn(1, 3, 8, 32, 32)
        with torch.no_grad():
            print("r3d_18 module reloaded from its folder alone; identical logits:",
                  torch.equal(wrapped(clip), reloaded(clip)))

    # 4. Upload: create_repo(exist_ok=True) + upload_folder through huggingface_hub.
    if args.push_to_hub:
        info = model.push_to_hub(args.push_to_hub, private=args.private, commit_message="Upload tiny TAG-Head demo")
        print("pushed:", getattr(info, "commit_url", info))
    else:
        print("to upload: model.push_to_hub('your-name/tiny-tag', private=True)  (after `hf auth login`)")


if __name__ == "__main__":
    main()
