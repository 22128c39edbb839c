"""Recognising backbone modules as registered architectures: a wrapped module reloads from its folder or
repo id alone, a changed module is not recognised, and a missing extra is named."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable

import pytest
import torch
from _hub_cache import populate_hub_cache
from torch import nn

import taghead
from taghead.backbones import create_backbone, recognize_backbone
from taghead.backbones import recognize as recognize_module
from taghead.backbones.registry import import_extra
from taghead.hub import read_config

#: A small TAG-Head: the backbone is what these tests are about.
SMALL_HEAD = dict(head="tag", embed_dim=16, depth=1, num_heads=2, mlp_dim=16, dropout=0.0)


def _tv(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models.video, name)(**kwargs)

    return build


def _ptv(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from pytorchvideo.models import hub

        return getattr(hub, name)(**kwargs)

    return build


def _timm(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, **kwargs)

    return build


# id: module builder (as a user calls it), clip (frames, crop), the registered name(s) and arguments expected,
# and whether to reload by Hub repo id (offline, from the local cache) instead of the folder's path.
CASES = {
    "tv-r3d_18": (_tv("r3d_18", num_classes=10), (8, 32), ("torchvision/r3d_18",), {"num_classes": 10}, True),
    "tv-mc3_18": (_tv("mc3_18"), (4, 32), ("torchvision/mc3_18",), {}, False),
    "tv-r2plus1d_18": (_tv("r2plus1d_18"), (8, 32), ("torchvision/r2plus1d_18",), {}, False),
    "tv-s3d": (_tv("s3d", num_classes=7), (16, 64), ("torchvision/s3d",), {"num_classes": 7}, False),
    "tv-swin3d_t": (_tv("swin3d_t"), (2, 32), ("torchvision/swin3d_t",), {}, False),
    "tv-mvit_v2_s": (_tv("mvit_v2_s"), (4, 32), ("torchvision/mvit_v2_s",), {}, False),
    # X3D-XS, -S and -M are one architecture (they differ in the clip they are evaluated on).
    "ptv-x3d_s": (_ptv("x3d_s"), (4, 64), ("pytorchvideo/x3d_m", "pytorchvideo/x3d_s", "pytorchvideo/x3d_xs"), {},
                  True),
    "ptv-slow_r50": (_ptv("slow_r50", model_num_class=5), (4, 64), ("pytorchvideo/slow_r50",),
                     {"model_num_class": 5}, False),
    "ptv-slowfast_r50": (_ptv("slowfast_r50"), (8, 64), ("pytorchvideo/slowfast_r50",), {}, False),
    "ptv-csn_r101": (_ptv("csn_r101"), (8, 64), ("pytorchvideo/csn_r101",), {}, False),
    "timm-resnet18": (_timm("resnet18", num_classes=4), (2, 32), ("timm/resnet18",), {"num_classes": 4}, False),
    "timm-vit-img_size": (_timm("vit_tiny_patch16_224", img_size=32, num_classes=3), (2, 32),
                          ("timm/vit_tiny_patch16_224",), {"img_size": 32, "num_classes": 3}, True),
}


def _randomise_buffers(module: nn.Module, seed: int) -> None:
    """Non-trivial normalisation statistics, so that a buffer the reload missed changes the logits."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrapped_module_reloads_from_its_folder_or_repo_id_alone(case, tmp_path, offline_cache):
    build, (frames, crop), names, kwargs, by_repo_id = CASES[case]
    torch.manual_seed(0)
    module = build()
    _randomise_buffers(module, seed=1)
    model = taghead.wrap_backbone(module, 3, num_frames=frames, crop_size=crop, **SMALL_HEAD).eval()
    assert model.spec["backbone"] in names and model.spec["backbone_kwargs"] == kwargs
    folder = model.save_pretrained(tmp_path / "saved")
    assert read_config(folder)["spec"]["backbone"] == model.spec["backbone"]
    assert "backbone=my_backbone" not in (folder / "README.md").read_text()  # the card's snippet needs no module

    source = str(folder)
    if by_repo_id:
        source = f"taghead-test/{case}"
        populate_hub_cache(offline_cache, source, folder, "c" * 40)
        shutil.rmtree(folder)
    torch.manual_seed(123)  # the rebuilt backbone starts from other random weights: all must come from the folder
    loaded = taghead.from_pretrained(source)
    assert loaded.spec == model.spec and not loaded.training
    video = torch.randn(1, 3, frames, crop, crop, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(video)
        assert torch.equal(loaded(video), expected)
    assert expected.abs().max() > 0 and torch.isfinite(expected).all()


def test_a_changed_module_is_not_recognised_and_still_needs_backbone(tmp_path):
    import torchvision

    def changed() -> nn.Module:
        model = torchvision.models.video.r3d_18()
        model.layer2[0].relu = nn.GELU()  # same parameters, another activation
        return model

    found = recognize_backbone(changed())
    assert not found and found.name is None and found.kwargs == {}
    assert "'torchvision/r3d_18'" in found.reason and "layer2.0.relu" in found.reason and "GELU" in found.reason

    torch.manual_seed(0)
    model = taghead.wrap_backbone(changed(), 3, num_frames=8, crop_size=32, **SMALL_HEAD).eval()
    assert model.spec["backbone"] is None and model.spec["backbone_kwargs"] == {}
    folder = model.save_pretrained(tmp_path / "changed")
    assert "backbone=my_backbone" in (folder / "README.md").read_text()
    with pytest.raises(ValueError, match=r"user-supplied backbone.*recognize_backbone.*backbone=my_backbone"):
        taghead.from_pretrained(folder)
    loaded = taghead.from_pretrained(folder, backbone=changed())
    video = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(video), model(video))


def _with_stride(model: nn.Module) -> nn.Module:
    model.stem[0].stride = (1, 1, 1)
    return model


def _wider_classifier_input(model: nn.Module) -> nn.Module:
    model.fc = nn.Linear(256, 400)
    return model


@pytest.mark.parametrize("change, what", [
    (_with_stride, "stem.0: stride (1, 1, 1) instead of (1, 2, 2)"),
    (_wider_classifier_input, "parameter fc.weight: shape [400, 256] torch.float32 instead of [400, 512]"),
    (lambda m: m.to(torch.float64), "torch.float64 instead of"),
    (lambda m: nn.Sequential(m), "no registered backbone builds a torch.nn.modules.container.Sequential"),
])
def test_changes_that_keep_a_module_from_being_recognised(change, what):
    import torchvision

    with torch.device("meta"):
        module = change(torchvision.models.video.r3d_18())
    found = recognize_backbone(module)
    assert not found and what in found.reason


def test_recognition_reads_builder_arguments_and_leaves_the_random_state_alone(monkeypatch):
    import torchvision

    # Empty the cache of candidate builds, so that the candidates are really built here (other tests in this
    # file have built them already), and the random state is checked around those builds.
    monkeypatch.setattr(recognize_module, "_BUILT", {})

    with torch.device("meta"):
        module = torchvision.models.video.r3d_18(num_classes=10)
        tiny = taghead.backbones.tiny_video_cnn(width=8, num_classes=3)
    state = torch.get_rng_state()
    found = recognize_backbone(module)
    assert torch.equal(torch.get_rng_state(), state)
    assert recognize_module._BUILT  # the builds happened in this test
    assert found and (found.name, found.kwargs) == ("torchvision/r3d_18", {"num_classes": 10})
    assert "create_backbone('torchvision/r3d_18', num_classes=10)" in found.reason
    assert taghead.recognize_backbone(tiny).kwargs == {"width": 8, "num_classes": 3}
    with pytest.raises(TypeError, match="expects an nn.Module"):
        recognize_backbone("torchvision/r3d_18")


def test_a_callable_feature_layer_is_not_recorded_by_name():
    model = taghead.wrap_backbone(taghead.backbones.tiny_video_cnn(), 3, num_frames=8, crop_size=32,
                                  feature_layer=lambda m, v: m.forward_features(v), **SMALL_HEAD)
    assert model.spec["backbone"] is None  # rebuilding needs the callable, so the module is passed again anyway
    named = taghead.wrap_backbone(taghead.backbones.tiny_video_cnn(), 3, num_frames=8, crop_size=32,
                                  feature_layer="layer3", **SMALL_HEAD)
    assert named.spec["backbone"] == "taghead/tiny_video_cnn" and named.spec["adapter"] == "generic"


@pytest.mark.parametrize("name, package", [("pytorchvideo/x3d_s", "pytorchvideo"), ("torchvision/r3d_18", "torchvision"),
                                           ("taghead/r2plus1d_34", "torchvision")])
def test_a_missing_extra_is_named(name, package, monkeypatch):
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now fails as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=rf"backbone '{name}' needs {package}, which is not installed: "
                                                  r"pip install 'taghead\[video\]'"):
        create_backbone(name)


def test_a_dependency_missing_inside_an_extra_is_not_blamed_on_the_extra(tmp_path, monkeypatch):
    (tmp_path / "fake_extra_pkg").mkdir()
    (tmp_path / "fake_extra_pkg" / "__init__.py").write_text("import not_a_real_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="not_a_real_dependency_of_it") as info:
        import_extra("fake_extra_pkg.models", "backbone 'x'")
    assert "taghead[video]" not in str(info.value)
