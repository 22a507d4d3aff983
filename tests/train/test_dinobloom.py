"""DinoBloom: a checkpoint in the DINOv2 repository's layout becomes timm weights that the
pipeline trains from, and the converted model computes the features the original does."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own spelling)
import yaml

from leukopipe.plumbing.hashing import sha256_file
from leukopipe.train import dinobloom
from leukopipe.train.dinobloom_names import VARIANTS
from leukopipe.train.models import build_model, input_size, normalisation
from leukopipe.train.weight_files import meta_path, weights_path
from leukopipe.train.weights import (
    WeightsError,
    fetch,
    load_pretrained,
    save_weights,
    weights_record,
)
from leukopipe.workflow.config import ConfigError, expand_experiments, validate

ROOT = Path(__file__).resolve().parents[2]
# A reduced DinoBloom-S: ViT-S/14's config (patch 14, 224 px, layer scale, DINOv2 key names)
# with 2 blocks of 64 dims in 2 heads, so that nothing here builds a full ViT (seconds, not
# minutes); the conversion and the reference forward below read depth and width from the keys.
SMALL = {"depth": 2, "embed_dim": 64, "num_heads": 2}
HEADS = SMALL["num_heads"]


@pytest.fixture(scope="module")
def dinov2_checkpoint() -> dict:
    """What DinoBloom-S.pth holds, reduced and with random values: the teacher's ViT-S/14 at
    224 px under ``backbone.`` with DINOv2's key names (mask token included), and both
    pretraining heads."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                            img_size=224, **SMALL)
    dim = SMALL["embed_dim"]
    teacher = {}
    for key, value in vit.state_dict().items():
        # layer scales away from their 1e-5 init, so that every block matters in the check
        teacher[f"backbone.{key}"] = torch.randn_like(value) * (0.5 if "ls" in key else 0.05)
    teacher["backbone.mask_token"] = torch.randn(1, dim)
    teacher["dino_head.mlp.0.weight"] = torch.randn(16, dim)
    teacher["dino_head.last_layer.weight_g"] = torch.randn(64, 1)
    teacher["ibot_head.mlp.0.weight"] = torch.randn(16, dim)
    return {"teacher": teacher}


def dinov2_features(teacher: dict, images: torch.Tensor) -> torch.Tensor:
    """The CLS feature DINOv2's own ViT computes (``x_norm_clstoken``), written from DINOv2's
    forward with the checkpoint's key names, independent of timm."""
    w = {k.removeprefix("backbone."): v for k, v in teacher.items() if k.startswith("backbone.")}
    x = F.conv2d(images, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=14)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([w["cls_token"].expand(len(x), -1, -1), x], dim=1) + w["pos_embed"]
    dim = x.shape[-1]
    blocks = sorted({int(k.split(".")[1]) for k in w if k.startswith("blocks.")})
    for i in blocks:
        p = f"blocks.{i}."
        h = F.layer_norm(x, (dim,), w[p + "norm1.weight"], w[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(len(x), -1, 3, HEADS, dim // HEADS).permute(2, 0, 3, 1, 4)
        attn = ((q / math.sqrt(dim // HEADS)) @ k.transpose(-2, -1)).softmax(-1)
        h = (attn @ v).transpose(1, 2).reshape(len(x), -1, dim)
        h = F.linear(h, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        x = x + w[p + "ls1.gamma"] * h
        h = F.layer_norm(x, (dim,), w[p + "norm2.weight"], w[p + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                     w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
        x = x + w[p + "ls2.gamma"] * h
    x = F.layer_norm(x, (dim,), w["norm.weight"], w["norm.bias"], eps=1e-6)
    return x[:, 0]


def test_converted_model_computes_dinov2s_features(dinov2_checkpoint):
    model, report = dinobloom.convert(copy.deepcopy(dinov2_checkpoint), "dinobloom_s",
                                      architecture_kwargs=SMALL)
    assert report["dropped_head_prefixes"] == ["dino_head", "ibot_head"]
    assert report["dropped_head_keys"] == 3
    assert report["dropped_or_renamed_backbone_keys"] == ["mask_token"]
    assert report["pos_embed_tokens"] == 257  # 16 x 16 patches + CLS: DinoBloom's 224 px
    torch.manual_seed(1)
    images = torch.randn(2, 3, 224, 224)
    expected = dinov2_features(dinov2_checkpoint["teacher"], images)
    with torch.no_grad():
        ours = model.eval()(images)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_fetch_converts_once_and_the_pipeline_trains_from_it(tmp_path, dinov2_checkpoint):
    raw = tmp_path / VARIANTS["dinobloom_s"].file
    torch.save(dinov2_checkpoint, raw)
    # the file on disk is not the published DinoBloom-S: the recorded sha256 refuses it
    with pytest.raises(dinobloom.DinoBloomError, match="sha256"):
        fetch("dinobloom_s", weights_path(tmp_path, "dinobloom_s"))
    assert raw.is_file()  # nothing is deleted
    model, origin = dinobloom.fetch("dinobloom_s", tmp_path, sha256=sha256_file(raw),
                                    architecture_kwargs=SMALL)
    dest = save_weights(model, weights_path(tmp_path, "dinobloom_s"), "dinobloom_s", origin)
    record = weights_record(dest, "dinobloom_s")
    converted = record["converted_from"]
    assert converted["file"] == "DinoBloom-S.pth" and converted["sha256"] == sha256_file(raw)
    assert converted["architecture"] == "vit_small_patch14_dinov2"
    assert converted["architecture_kwargs"] == SMALL  # the record says it is reduced
    assert converted["url"].startswith("https://zenodo.org/records/10908163/files/")
    assert meta_path(dest).is_file()

    # the pipeline's model: DinoBloom-S's architecture at 224 px (built without memory)
    assert input_size("dinobloom_s") == 224
    assert normalisation("dinobloom_s") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.device("meta"):
        full = build_model("dinobloom_s", image_size=224)
    assert full.pos_embed.shape == (1, 257, 384) and len(full.blocks) == 12
    assert full.patch_embed.proj.kernel_size == (14, 14)

    # the pipeline's loader, into that architecture reduced, at 224 px and another patch grid
    def classifier_of(size: int) -> torch.nn.Module:
        return timm.create_model(VARIANTS["dinobloom_s"].architecture, pretrained=False,
                                 num_classes=2, img_size=size, **SMALL)

    classifier = classifier_of(224)
    loaded = load_pretrained(classifier, dest, "dinobloom_s")
    assert loaded["resampled_keys"] == [] and loaded["dropped_head_keys"] == []
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = classifier.eval().forward_head(classifier.forward_features(images),
                                                  pre_logits=True)
    torch.testing.assert_close(
        features, dinov2_features(dinov2_checkpoint["teacher"], images), rtol=1e-4, atol=1e-4
    )
    smaller = classifier_of(112)
    assert load_pretrained(smaller, dest, "dinobloom_s")["resampled_keys"] == ["pos_embed"]
    with pytest.raises(WeightsError, match="does not fit"):
        load_pretrained(build_model("resnet18"), dest, "resnet18")


def test_a_checkpoint_in_another_layout_is_named(tmp_path, dinov2_checkpoint):
    with pytest.raises(dinobloom.DinoBloomError, match="not a DINOv2 repository checkpoint"):
        dinobloom.convert(dinov2_checkpoint["teacher"], "dinobloom_s", source="x.pth")
    # a checkpoint of another size (here: one block more than this one) is named
    with pytest.raises(dinobloom.DinoBloomError, match="does not fit vit_base_patch14_dinov2"):
        dinobloom.convert(copy.deepcopy(dinov2_checkpoint), "dinobloom_b", source="x.pth",
                          architecture_kwargs={**SMALL, "depth": 3})
    bad = tmp_path / VARIANTS["dinobloom_b"].file
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(dinobloom.DinoBloomError, match=f"cannot read {bad}"):
        dinobloom.fetch("dinobloom_b", tmp_path, sha256=None)


def test_config_accepts_dinobloom_and_checks_its_patch_grid():
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    names = {e.backbone for e in expand_experiments(validate(copy.deepcopy(cfg))).values()}
    assert {"dinobloom_s", "dinobloom_b"} <= names
    group = next(g for g in cfg["experiments"] if "dinobloom_s" in g["backbones"])
    group["image_size"] = 220
    with pytest.raises(ConfigError, match=r"dinobloom_s.*14 px patches"):
        validate(cfg)
