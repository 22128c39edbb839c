"""``taghead info``: versions, the compute device, and the registered adapters, heads, backbones (with their
published weights) and models."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform

__all__ = ["register", "run", "collect_info"]

_PACKAGES = ("torch", "torchvision", "timm", "pytorchvideo", "av", "torch_geometric", "safetensors", "huggingface_hub",
             "einops", "numpy", "matplotlib", "tensorboard")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="versions and registered adapters, heads, backbones and models",
                                   description="Print the versions of taghead and its dependencies, the available "
                                               "devices, and what is registered.")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def _version(name: str) -> str | None:
    """The installed distribution's version (read from its metadata, without importing it)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _registered(module: str, function: str, **kwargs: object) -> list[str] | None:
    """``taghead.<module>.<function>(**kwargs)`` if that part of taghead is present."""
    try:
        fn = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError):
        return None
    return list(fn(**kwargs))


def collect_info() -> dict:
    """Everything ``taghead info`` prints, as a dict (parts of taghead that are absent are left out)."""
    import torch

    from ..version import __version__

    info: dict = {"taghead": __version__, "python": platform.python_version(), "platform": platform.platform()}
    info["packages"] = {name: _version(name) for name in _PACKAGES}
    info["devices"] = {
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
    }
    for key, module, function, kwargs in (("adapters", "taghead.adapters", "list_adapters", {}),
                                          ("heads", "taghead.heads", "list_heads", {}),
                                          ("backbones", "taghead.backbones", "list_backbones", {}),
                                          ("backbone_weights", "taghead.backbones", "list_backbones",
                                           {"pretrained": True}),
                                          ("models", "taghead.models.registry", "list_models", {})):
        names = _registered(module, function, **kwargs)
        if names is not None:
            info[key] = names
    return info


def run(args: argparse.Namespace) -> int:
    import json

    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"taghead {info['taghead']}  (Python {info['python']}, {info['platform']})")
    print("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v is not None))
    missing = [k for k, v in info["packages"].items() if v is None]
    if missing:
        print("not installed: " + ", ".join(missing))
    dev = info["devices"]
    gpus = ", ".join(dev["cuda_devices"]) if dev["cuda"] else "none"
    print(f"devices: CUDA {gpus}; {dev['cpu_threads']} CPU threads")
    for key in ("adapters", "heads", "backbones", "backbone_weights", "models"):
        if key in info:
            print(f"{key.replace('_', ' ')} ({len(info[key])}): " + ", ".join(info[key]))
    print("backbone weights by tag: `taghead weights list`; timm's: `taghead weights list 'timm/<pattern>'`")
    return 0
