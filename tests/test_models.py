"""Backbones build with a 2-class head; strategies freeze exactly what they promise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leukopipe.train.models import (
    apply_strategy,
    build_model,
    classifier_names,
    normalisation,
    set_train_mode,
    stages,
    trainable_parameters,
)

STUDY_BACKBONES = [
    "resnet18", "resnet50", "resnet101", "efficientnet_b0", "efficientnet_b1", "efficientnet_b3",
]


@pytest.mark.parametrize("backbone", [*STUDY_BACKBONES, "mobilenetv3_small_050"])
def test_every_backbone_builds_with_two_class_head_and_runs(backbone):
    torch.manual_seed(0)
    model = build_model(backbone).eval()
    (head,) = classifier_names(model)
    assert model.get_submodule(head).out_features == 2
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="not a timm model"):
        build_model("resnet_does_not_exist")


def test_normalisation_comes_from_timm_pretrained_config():
    assert normalisation("resnet50") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # EfficientNet-B1's default timm weights use 0.5/0.5: it must not be hard-coded ImageNet.
    assert normalisation("efficientnet_b1") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_stages_come_from_timm_grouping():
    assert [s for s, _ in stages(build_model("resnet18"))] == [
        "layer1", "layer2", "layer3", "layer4"
    ]
    assert [s for s, _ in stages(build_model("efficientnet_b0"))] == [
        f"blocks.{i}" for i in range(7)
    ]


def _trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_frozen_trains_only_the_head():
    model = build_model("resnet18")
    summary = apply_strategy(model, "frozen")
    assert _trainable_names(model) == {"fc.weight", "fc.bias"}
    assert summary.trainable_params == 512 * 2 + 2
    assert summary.trainable_modules == ("fc",)
    assert summary.total_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("backbone", "n", "expected_modules", "first_trainable", "last_frozen"),
    [
        ("resnet18", 1, ("layer4", "fc"), "layer4.0.conv1.weight", "layer3.1.bn2.bias"),
        ("resnet18", 2, ("layer3", "layer4", "fc"), "layer3.0.conv1.weight", "layer2.1.bn2.bias"),
        (
            "efficientnet_b0", 2, ("blocks.5", "blocks.6", "conv_head", "bn2", "classifier"),
            "blocks.5.0.conv_pw.weight", "blocks.4.2.bn3.bias",
        ),
    ],
)
def test_partial_trains_deepest_stages_and_everything_after(
    backbone, n, expected_modules, first_trainable, last_frozen
):
    model = build_model(backbone)
    summary = apply_strategy(model, "partial", n)
    names = _trainable_names(model)
    assert summary.trainable_modules == expected_modules
    assert first_trainable in names
    assert last_frozen not in names
    assert summary.trainable_params == sum(p.numel() for p in trainable_parameters(model))
    # every parameter is either in the deep part or frozen, nothing in between
    deep = tuple(m + "." for m in expected_modules)
    assert names == {n for n, _ in model.named_parameters() if n.startswith(deep)}


def test_partial_works_for_other_timm_families():
    model = build_model("convnext_atto")
    summary = apply_strategy(model, "partial", 1)
    assert summary.stages == ("stages.0", "stages.1", "stages.2", "stages.3")
    assert summary.trainable_modules[0] == "stages.3"
    assert "stem.0.weight" not in _trainable_names(model)


def test_partial_with_more_stages_than_the_model_has_is_a_clear_error():
    with pytest.raises(ValueError, match=r"partial_stages=5 .* 4 stages .*choose 1\.\.4"):
        apply_strategy(build_model("resnet18"), "partial", 5)
    with pytest.raises(ValueError, match=r"choose 1\.\.4"):
        apply_strategy(build_model("resnet18"), "partial", 0)


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown strategy"):
        apply_strategy(build_model("resnet18"), "half")


def test_full_trains_everything():
    model = build_model("efficientnet_b0")
    summary = apply_strategy(model, "full")
    assert all(p.requires_grad for p in model.parameters())
    assert summary.trainable_params == summary.total_params


def test_strategies_can_be_reapplied():
    model = build_model("resnet18")
    apply_strategy(model, "frozen")
    apply_strategy(model, "full")
    assert all(p.requires_grad for p in model.parameters())
    set_train_mode(model)
    assert all(m.training for m in model.modules())


def test_set_train_mode_keeps_frozen_batchnorm_in_eval():
    model = build_model("resnet18")
    apply_strategy(model, "partial", 1)
    set_train_mode(model)
    assert not model.bn1.training and not model.layer3[1].bn2.training
    assert model.layer4[0].bn1.training and model.training
    before = model.layer3[0].bn1.running_mean.clone()
    model(torch.rand(4, 3, 32, 32) * 5)
    assert torch.equal(model.layer3[0].bn1.running_mean, before)
    set_train_mode(model, False)
    assert not any(m.training for m in model.modules())
