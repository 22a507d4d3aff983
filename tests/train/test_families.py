"""Study C's backbone families (vision transformers incl. DINOv2, ConvNeXt, EfficientNetV2).

Real study backbones are only built on the meta device (no memory, no initialisation) to check
names, input sizes and what each strategy trains; everything that runs uses a small
random-initialised member of each family on tiny synthetic data: train -> evaluate -> Grad-CAM.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from train_fixtures import write_data, write_split

from leukopipe.evaluate.gradcam import gradcam, target_layer, token_map
from leukopipe.evaluate.inference import Classifier, load_classifier
from leukopipe.evaluate.scoring import EvalSettings, evaluate, gradcam_grid
from leukopipe.plumbing.schema import defaults
from leukopipe.train import weights
from leukopipe.train.loop import TrainConfig, prepare_model, train
from leukopipe.train.models import (
    apply_strategy,
    build_model,
    input_size,
    normalisation,
    optimizer_param_groups,
)
from leukopipe.train.weight_files import meta_path
from leukopipe.train.weights import fetch, load_pretrained, save_weights
from leukopipe_tools.benchmark import STUDY_C_BACKBONES

_CREATE_MODEL = timm.create_model  # the real one, also while a test monkeypatches timm
SIZE = 32  # px of the synthetic stores: a 2 x 2 patch grid for a patch-16 ViT
VIT = "vit_tiny_patch16_224"
# (tiny family member, tensors trained by frozen, by partial with 2 stages)
FAMILIES = {
    "vit": (VIT, ("head.",), ("blocks.10.", "blocks.11.", "norm.", "head.")),
    "convnext": ("convnext_atto", ("head.fc.",), ("stages.2.", "stages.3.", "head.")),
    "efficientnetv2": (
        "tf_efficientnetv2_b0", ("classifier.",),
        ("blocks.4.", "blocks.5.", "conv_head.", "bn2.", "classifier."),
    ),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is faster on a shared machine
    yield
    torch.set_num_threads(before)


def _meta(backbone: str, image_size: int | None = None) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(backbone, image_size=image_size)


# ------------------------------------------------------------------- names, sizes, grouping


def test_study_c_backbones_resolve_with_their_pretrained_size_and_normalisation():
    expected = {  # (pretrained input size, mean) from timm's registry of each tag
        "convnext_tiny.fb_in22k_ft_in1k": (224, (0.485, 0.456, 0.406)),
        "efficientnetv2_rw_s.ra2_in1k": (288, (0.485, 0.456, 0.406)),
        "vit_small_patch16_224.augreg_in21k_ft_in1k": (224, (0.5, 0.5, 0.5)),
        "vit_small_patch14_dinov2.lvd142m": (518, (0.485, 0.456, 0.406)),
    }
    assert set(STUDY_C_BACKBONES) == set(expected)
    for backbone, (size, mean) in expected.items():
        assert timm.is_model(backbone)
        assert input_size(backbone) == size
        assert input_size(backbone, 224) == 224  # the study's store size
        assert normalisation(backbone)[0] == mean


def test_dinov2_at_224_px_is_a_16_by_16_patch_grid():
    model = _meta("vit_small_patch14_dinov2.lvd142m", 224)
    assert tuple(model.patch_embed.grid_size) == (16, 16)
    assert model.pos_embed.shape == (1, 1 + 16 * 16, 384)  # class token + patches
    assert tuple(_meta("vit_small_patch14_dinov2.lvd142m").patch_embed.grid_size) == (37, 37)


def test_a_vit_image_size_must_be_whole_patches():
    with pytest.raises(ValueError, match=r"230 px does not fit .*14 px patches.*224 or 238"):
        input_size("vit_small_patch14_dinov2.lvd142m", 230)
    with pytest.raises(ValueError, match="16 px patches"):
        build_model(VIT, image_size=40)
    assert input_size("convnext_tiny", 230) == 230  # a CNN takes any size


@pytest.mark.parametrize(
    ("backbone", "n_stages", "frozen", "partial"),
    [
        ("vit_small_patch14_dinov2.lvd142m", 12, ("head",), ("blocks.10", "blocks.11", "norm",
                                                             "head")),
        ("vit_small_patch16_224.augreg_in21k_ft_in1k", 12, ("head",),
         ("blocks.10", "blocks.11", "norm", "head")),
        ("convnext_tiny.fb_in22k_ft_in1k", 4, ("head.fc",), ("stages.2", "stages.3", "head")),
        ("efficientnetv2_rw_s.ra2_in1k", 6, ("classifier",),
         ("blocks.4", "blocks.5", "conv_head", "bn2", "classifier")),
    ],
)
def test_strategies_of_the_study_backbones(backbone, n_stages, frozen, partial):
    model = _meta(backbone, 224)
    assert apply_strategy(model, "frozen").trainable_modules == frozen
    summary = apply_strategy(model, "partial", 2)
    assert len(summary.stages) == n_stages  # a ViT's unit is the block, a CNN's the stage
    assert summary.trainable_modules == partial
    full = apply_strategy(model, "full")
    assert full.trainable_params == full.total_params > summary.trainable_params


# ---------------------------------------------------------------------- layer-wise lr decay


def _lr_of(groups: list[dict]) -> dict[int, float]:
    return {id(p): g["lr"] for g in groups for p in g["params"]}


def test_layer_decay_lowers_the_learning_rate_layer_by_layer_towards_the_stem():
    model = build_model(VIT, image_size=SIZE)
    apply_strategy(model, "full")
    params = dict(model.named_parameters())
    lr = _lr_of(optimizer_param_groups(model, 1e-3, layer_decay=0.5))
    assert set(lr) == {id(p) for p in params.values()}  # every parameter, once

    def at(name: str) -> float:
        return lr[id(params[name])]

    # timm's grouping: stem (0), blocks 1..12 with the final norm in the last, head (13)
    assert at("head.weight") == pytest.approx(1e-3)
    for i in range(12):
        assert at(f"blocks.{i}.attn.qkv.weight") == pytest.approx(1e-3 * 0.5 ** (12 - i))
    assert at("norm.weight") == at("blocks.11.mlp.fc2.bias")
    for stem in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        assert at(stem) == pytest.approx(1e-3 * 0.5**13)

    off = optimizer_param_groups(model, 1e-3, 0.1, None)
    assert len(off) == 1 and off[0]["lr"] == 1e-3 and off[0]["weight_decay"] == 0.1
    assert len(off[0]["params"]) == len(params)
    assert len(optimizer_param_groups(model, 1e-3, layer_decay=1.0)) == 1


def test_layer_decay_skips_frozen_parameters_and_orders_a_cnn_by_depth():
    model = build_model("convnext_atto")
    apply_strategy(model, "partial", 2)
    groups = optimizer_param_groups(model, 1e-3, layer_decay=0.8)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(_lr_of(groups)) == trainable
    assert groups[0]["lr"] == pytest.approx(1e-3)  # the head's group first (the history logs it)
    lr = _lr_of(groups)
    deep, deeper = (
        lr[id(model.get_parameter(f"stages.{s}.blocks.0.conv_dw.weight"))] for s in (2, 3)
    )
    assert deep < deeper < 1e-3
    with pytest.raises(ValueError, match="layer_decay"):
        optimizer_param_groups(model, 1e-3, layer_decay=1.5)


def test_the_training_loop_uses_the_decayed_rates(tmp_path, tiny):
    cfg = TrainConfig(backbone=VIT, strategy="full", epochs=1, batch_size=8, eval_batch_size=16,
                      lr=1e-3, workers=0, layer_decay=0.5)
    before = prepare_model(cfg, SIZE)[0].state_dict()
    summary = train(cfg, **_train_data(tiny), out_dir=tmp_path / "run",
                    resume_dir=tmp_path / "resume")
    after = torch.load(summary["last_checkpoint"], weights_only=True)["state_dict"]

    def moved(key: str) -> float:
        return float((after[key] - before[key]).abs().max())

    # Adam moves each weight by about its learning rate per step: 1e-3 at the head,
    # 1e-3 * 0.5**13 (about 1e-7) at the stem, in between for the blocks
    assert moved("head.weight") > 1e-4
    assert moved("blocks.11.attn.qkv.weight") > moved("blocks.0.attn.qkv.weight")
    assert 0 < moved("patch_embed.proj.weight") < 1e-5
    assert pd.read_parquet(summary["history"])["lr"].tolist() == [1e-3]
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        TrainConfig(backbone=VIT, strategy="full", layer_decay=0.0)
    assert TrainConfig(backbone=VIT, strategy="full", layer_decay=1.0).layer_decay is None


# ----------------------------------------------------------------------------------- weights


def _imagenet_like(backbone: str, seed: int, **kwargs) -> torch.nn.Module:
    """What timm's pretrained=True returns (here randomly initialised)."""
    torch.manual_seed(seed)
    return _CREATE_MODEL(backbone, pretrained=False, **kwargs)


def test_vit_weights_of_another_size_load_with_the_position_embedding_resampled(tmp_path):
    # DINOv2-like: fetched at its own (larger) size and without a classifier
    path = save_weights(_imagenet_like(VIT, 1, img_size=64, num_classes=0),
                        tmp_path / f"{VIT}.safetensors", VIT)
    file = load_file(str(path))
    assert file["pos_embed"].shape == (1, 1 + 4 * 4, 192)

    torch.manual_seed(2)
    model = build_model(VIT, image_size=SIZE)
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    report = load_pretrained(model, path, VIT)
    assert report["resampled_keys"] == ["pos_embed"] and report["dropped_head_keys"] == []

    state = model.state_dict()
    expected = timm.layers.resample_abs_pos_embed(file["pos_embed"], (2, 2), num_prefix_tokens=1)
    torch.testing.assert_close(state["pos_embed"], expected)
    assert torch.equal(state["pos_embed"][:, :1], file["pos_embed"][:, :1])  # class token kept
    for key in file.keys() - {"pos_embed"}:
        assert torch.equal(state[key], file[key]), key
    for key, value in head.items():
        assert torch.equal(state[key], value)

    same = save_weights(_imagenet_like(VIT, 3, img_size=SIZE), tmp_path / "same.safetensors", VIT)
    assert load_pretrained(build_model(VIT, image_size=SIZE), same, VIT)["resampled_keys"] == []


def test_fetch_keeps_the_tagged_weights_at_their_own_size(tmp_path, monkeypatch):
    calls = []

    def fake_create_model(name, pretrained=False, **kwargs):
        calls.append((name, pretrained, kwargs))
        return _imagenet_like(name, 4, img_size=64)  # what the hub gives, at a test size

    monkeypatch.setattr(weights.timm, "create_model", fake_create_model)
    tagged = f"{VIT}.augreg_in21k_ft_in1k"
    dest = fetch(tagged, tmp_path / f"{tagged}.safetensors")
    assert calls == [(tagged, True, {})]  # no image size: the file is as published
    cfg = json.loads(meta_path(dest).read_text())["pretrained_cfg"]
    assert (cfg["architecture"], cfg["tag"]) == (VIT, "augreg_in21k_ft_in1k")
    monkeypatch.undo()  # training builds the real model
    model = build_model(tagged, image_size=SIZE)
    assert load_pretrained(model, dest, tagged)["resampled_keys"] == ["pos_embed"]


# ---------------------------------------------------- strategies in training, end to end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("families")
    data = write_data(folder, n_train=16, n_val=8, size=SIZE)
    data["test_manifest"], data["test_pixels"] = write_split(folder, "test", 12, SIZE, seed=3)
    for key in ("val_manifest", "test_manifest"):  # one class per subject, as in C-NMC
        frame = pd.read_parquet(data[key])
        frame["subject"] = [f"{'' if y else 'H'}{i % 3}" for i, y in enumerate(frame["label"])]
        frame.to_parquet(data[key], index=False)
    return data


def _train_data(data: dict[str, Path]) -> dict[str, Path]:
    return {k: v for k, v in data.items() if not k.startswith("test_")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny) -> dict[tuple[str, str], tuple[dict, dict, dict]]:
    """Each family x strategy trained for one epoch (two steps) from a weights file:
    (summary, initial state, final state)."""
    folder = tmp_path_factory.mktemp("family-runs")
    train_data = _train_data(tiny)
    out = {}
    for family, (backbone, _, _) in FAMILIES.items():
        file = save_weights(_imagenet_like(backbone, 7), folder / f"{backbone}.safetensors",
                            backbone)
        for strategy in ("frozen", "partial", "full"):
            cfg = TrainConfig(backbone=backbone, strategy=strategy, partial_stages=2, epochs=1,
                              batch_size=8, eval_batch_size=16, lr=1e-3, workers=0,
                              pretrained_weights=str(file))
            initial = {k: v.clone() for k, v in prepare_model(cfg, SIZE)[0].state_dict().items()}
            run = folder / family / strategy
            summary = train(cfg, **train_data, out_dir=run / "out", resume_dir=run / "resume")
            final = torch.load(summary["last_checkpoint"], weights_only=True)["state_dict"]
            out[family, strategy] = (summary, initial, final)
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("strategy", ["frozen", "partial", "full"])
def test_strategy_changes_exactly_its_tensors(runs, family, strategy):
    _, frozen_part, partial_part = FAMILIES[family]
    _, initial, final = runs[family, strategy]
    assert final.keys() == initial.keys()
    changed = {k for k in final if not torch.equal(final[k], initial[k])}
    trained = {"frozen": frozen_part, "partial": partial_part, "full": ("",)}[strategy]
    # every tensor of the trained part moves, nothing else does: no weight, no LayerNorm,
    # no BatchNorm running statistic of the frozen part
    assert changed == {k for k in final if k.startswith(trained)}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_evaluates_and_explains(runs, tiny, tmp_path, family):
    summary, _, _ = runs[family, "partial"]
    clf = load_classifier(summary["best_checkpoint"], "cpu")
    assert clf.image_size == SIZE
    test = pd.read_parquet(tiny["test_manifest"])
    val = pd.read_parquet(tiny["val_manifest"])
    preds, _, record = evaluate(
        clf, test, tiny["test_pixels"], val, tiny["val_pixels"], EvalSettings.from_config(n_boot=20)
    )["plain"]
    assert len(preds) == 12 and record["n_test"] == 12
    assert preds["prob_all"].between(0, 1).all()
    chosen = gradcam_grid(clf, preds, test, tiny["test_pixels"], tmp_path / "gradcam.png",
                          per_group=1, stage=-1, alpha=defaults("gradcam")["alpha"])
    assert sum(len(rows) for _, rows in chosen) >= 2
    assert Image.open(tmp_path / "gradcam.png").size[0] > 200
    cams, _ = gradcam(clf, np.load(tiny["test_pixels"])[:4], stage=-2)
    assert cams.shape == (4, SIZE, SIZE) and np.isfinite(cams).all()


# ------------------------------------------------------------------------- Grad-CAM on ViT


def test_token_map_drops_class_and_register_tokens_and_keeps_row_order():
    model = timm.create_model(VIT, img_size=48, reg_tokens=4, num_classes=2)  # 3 x 3 patches
    assert model.num_prefix_tokens == 5
    tokens = torch.zeros(1, 5 + 9, 2)
    tokens[0, 5:, 0] = torch.arange(9.0)  # channel 0: patch index in timm's row-major order
    tokens[0, :5, :] = -1.0  # class and register tokens must not reach the map
    grid = token_map(tokens, model)
    assert grid.shape == (1, 2, 3, 3)
    assert grid[0, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert (grid >= 0).all()
    with pytest.raises(ValueError, match="do not fill"):
        token_map(tokens[:, 1:], model)


def _classifier(model: torch.nn.Module) -> Classifier:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) * 255 for v in normalisation(VIT))
    return Classifier(model.eval(), {"image_size": SIZE}, torch.device("cpu"), mean, std)


def test_vit_gradcam_uses_the_tokens_entering_the_block():
    torch.manual_seed(0)
    model = timm.create_model(VIT, img_size=SIZE, reg_tokens=4, num_classes=2)
    images = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    clf = _classifier(model)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().sub(clf.mean).div(clf.std)

    # why not the block's output: after the last block the patch tokens reach the class-token
    # head no more, so their gradient (and a Grad-CAM built on it) is exactly zero
    out: dict[str, torch.Tensor] = {}
    handle = model.blocks[-1].register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    logit = model(x)[:, 1].sum()
    handle.remove()
    (grad,) = torch.autograd.grad(logit, out["o"])
    assert grad[:, model.num_prefix_tokens:].abs().max() == 0

    cams, prob = gradcam(clf, images, target=np.array([1, 1, 1]))
    assert cams.shape == (3, SIZE, SIZE) and prob.shape == (3,)
    assert cams.reshape(3, -1).max(axis=1) == pytest.approx(1.0)  # no all-zero map
    name, layer = target_layer(model)
    assert name == "blocks.11" and not layer._forward_pre_hooks and not layer._forward_hooks
    for p in model.parameters():  # a frozen (linear-probe) model still gets maps
        p.requires_grad_(False)
    assert np.allclose(gradcam(clf, images, target=np.array([1, 1, 1]))[0], cams, atol=1e-6)
    assert target_layer(model, -12)[0] == "blocks.0"
    with pytest.raises(ValueError, match="out of range"):
        gradcam(clf, images, stage=-13)


def test_vit_gradcam_points_at_the_evidence(tmp_path):
    # "bright = ALL": a dark cell with one bright quadrant (one 16 px patch) must light up there
    data = write_data(tmp_path / "data", n_train=64, n_val=32, size=SIZE)
    cfg = TrainConfig(backbone=VIT, strategy="full", epochs=2, batch_size=16, lr=3e-4,
                      workers=0)
    summary = train(cfg, **data, out_dir=tmp_path / "run", resume_dir=tmp_path / "resume")
    assert summary["best_val_metrics"]["val_macro_f1"] > 0.9
    clf = load_classifier(summary["best_checkpoint"], "cpu")
    img = np.full((1, SIZE, SIZE, 3), 80, dtype=np.uint8)
    img[:, :16, :16] = 200
    cam, _ = gradcam(clf, img, target=np.array([1]))
    assert cam[0, :16, :16].mean() > 2 * cam[0, 16:, 16:].mean()
