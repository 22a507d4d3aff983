"""Grad-CAM (Selvaraju et al. 2017) for any timm CNN or vision transformer, with hooks on a
feature stage.

The maps come from a stage timm lists in ``model.feature_info``, by default the deepest
(ResNet ``layer4``, EfficientNet ``blocks.6``, ConvNeXt ``stages.3``, ViT ``blocks.11``): the
channel weights are the spatially averaged gradients of the explained class's logit, the map is
the ReLU of the weighted channel sum, upsampled to the input and scaled to [0, 1] per image.

A vision transformer's stage is a block, and its map is the token map *entering* that block,
its class and register tokens dropped and its patch tokens laid out on the patch grid: the
patch tokens a block puts out reach a class-token head only through later blocks' attention, so
after the last block their gradient is zero. No extra dependency; the checkpoint is used as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional

from leukopipe.evaluate.inference import Classifier
from leukopipe.plumbing.errors import InvalidInputError

GROUPS = (
    ("ALL, called ALL", 1, True),
    ("ALL, called Hem", 1, False),
    ("Hem, called Hem", 0, True),
    ("Hem, called ALL", 0, False),
)


def target_layer(model: nn.Module, stage: int = -1) -> tuple[str, nn.Module]:
    """(name, module) of a feature stage from timm's ``feature_info``; -1 is the deepest."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise InvalidInputError(
            f"{type(model).__name__} has no timm feature_info: cannot place Grad-CAM"
        )
    try:
        name = info[stage]["module"]
    except IndexError:
        raise InvalidInputError(
            f"gradcam stage {stage} out of range: {type(model).__name__} has {len(info)} stages"
        ) from None
    return name, model.get_submodule(name)


def is_token_model(model: nn.Module) -> bool:
    """Whether the model's stages pass token sequences (timm vision transformers)."""
    return hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed")


def token_map(tokens: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """(N, tokens, C) with the model's class/register tokens first -> (N, C, rows, cols)."""
    rows, cols = (int(v) for v in model.patch_embed.grid_size)
    patches = tokens[:, int(model.num_prefix_tokens):]
    if patches.shape[1] != rows * cols:
        raise InvalidInputError(
            f"{patches.shape[1]} patch tokens do not fill {type(model).__name__}'s "
            f"{rows}x{cols} patch grid"
        )
    return patches.transpose(1, 2).reshape(len(tokens), tokens.shape[2], rows, cols)


def gradcam(
    clf: Classifier, images: np.ndarray, target: np.ndarray | None = None, stage: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """(maps in [0, 1] of shape (N, H, W), probability of ALL) for a uint8 NHWC batch.

    ``target`` is the class explained per image (default: the predicted class).
    """
    _, layer = target_layer(clf.model, stage)
    tokens = is_token_model(clf.model)
    store: dict[str, torch.Tensor] = {}

    def differentiable(act: torch.Tensor) -> torch.Tensor:
        if not act.requires_grad:  # a frozen backbone: make the stage's tensor differentiable
            act = act.detach().requires_grad_(True)
        store["act"] = act
        return act

    def keep_output(_module: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        return differentiable(out)

    def keep_input(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (differentiable(args[0]), *args[1:])

    handle = (
        layer.register_forward_pre_hook(keep_input)
        if tokens
        else layer.register_forward_hook(keep_output)
    )
    try:
        with torch.enable_grad():
            x = torch.from_numpy(np.array(images, dtype=np.uint8)).to(clf.device)
            x = x.permute(0, 3, 1, 2).float().sub(clf.mean).div(clf.std)
            logits = clf.model(x).float()
            prob = torch.softmax(logits, dim=1)[:, 1]
            cls = (
                torch.as_tensor(target, device=logits.device, dtype=torch.long)
                if target is not None
                else logits.argmax(dim=1)
            )
            chosen = logits.gather(1, cls[:, None]).sum()
            (grad,) = torch.autograd.grad(chosen, store["act"])
    finally:
        handle.remove()
    act = store["act"].detach()
    if tokens:
        act, grad = token_map(act, clf.model), token_map(grad, clf.model)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = functional.relu((weights * act).sum(dim=1, keepdim=True))
    cam = functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return (cam / peak).cpu().numpy(), prob.detach().cpu().numpy().astype(np.float64)


def select_cells(pred: pd.DataFrame, per_group: int) -> list[tuple[str, list[int]]]:
    """Row positions of ``pred`` to show per group (true class x right/wrong): the
    ``per_group`` most confident of each, so wrong rows show the model's worst errors."""
    out = []
    for title, label, right in GROUPS:
        mask = (pred["label"].to_numpy() == label) & (
            (pred["pred"].to_numpy() == pred["label"].to_numpy()) == right
        )
        conf = pred["confidence"].to_numpy()
        pos = np.flatnonzero(mask)
        pos = pos[np.argsort(-conf[pos], kind="stable")][:per_group]
        out.append((title, pos.tolist()))
    return out
