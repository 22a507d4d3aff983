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


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared machine two competing OpenMP threads make these
    small forward passes many times slower (20x measured for the timm freeze comparison)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# --------------------------------------------- timm's own helpers: which we use, which not


def test_timm_freeze_gives_the_same_outputs_but_changes_the_checkpoint_layout():
    """Why apply_strategy + set_train_mode rather than timm.utils.freeze for frozen BatchNorms:
    both keep the running statistics and compute the same outputs in train mode, but timm's
    swaps BatchNorm2d for FrozenBatchNorm2d, so the saved state loses num_batches_tracked and no
    longer lists the architecture's tensors (and only 2-D BatchNorms are covered)."""
    from timm.layers import FrozenBatchNormAct2d
    from timm.utils.model import freeze

    torch.manual_seed(0)
    ours = build_model("efficientnet_b0")
    for m in ours.modules():  # non-trivial running statistics to keep
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    theirs = build_model("efficientnet_b0")
    theirs.load_state_dict(ours.state_dict())
    summary = apply_strategy(ours, "partial", 2)
    frozen = [n for n, _ in ours.named_children() if n in ("conv_stem", "bn1")]
    freeze(theirs, frozen + [f"blocks.{i}" for i in range(5)])
    assert {n for n, p in theirs.named_parameters() if p.requires_grad} == {
        n for n, p in ours.named_parameters() if p.requires_grad
    }
    set_train_mode(ours)
    theirs.train()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)  # float32 rounds the two formulas apart
    outputs = []
    for model in (ours, theirs):
        torch.manual_seed(1)  # the same dropout masks
        outputs.append(model.double()(x))
    torch.testing.assert_close(*outputs, rtol=1e-9, atol=1e-9)

    assert isinstance(theirs.bn1, FrozenBatchNormAct2d)
    lost = set(ours.state_dict()) - set(theirs.state_dict())
    assert lost and all(k.endswith("num_batches_tracked") for k in lost)
    assert "blocks.5.0.bn1.num_batches_tracked" not in lost  # trained part untouched
    assert summary.trainable_modules[0] == "blocks.5"


@pytest.mark.parametrize(
    "backbone", ["resnet18", "efficientnet_b0", "convnext_atto", "vit_tiny_patch16_224"]
)
def test_partial_cut_follows_timm_layer_order(backbone):
    """Our stages come from the same group_matcher as timm's group_with_matcher (used by timm's
    layer decay): every tensor partial trains sits at a timm layer no shallower than any frozen
    one. group_with_matcher itself only numbers layers, it does not say which are stages (vs
    stem, neck, head), so the stage list reads the matcher's captures directly."""
    from timm.models._manipulate import group_with_matcher

    model = build_model(backbone)
    layer = group_with_matcher(
        model.named_parameters(), model.group_matcher(coarse=True), reverse=True
    )
    for n in range(1, len(stages(model)) + 1):
        apply_strategy(model, "partial", n)
        trained = [layer[k] for k, p in model.named_parameters() if p.requires_grad]
        frozen = [layer[k] for k, p in model.named_parameters() if not p.requires_grad]
        assert min(trained) > max(frozen)
