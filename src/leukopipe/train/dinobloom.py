"""DinoBloom checkpoints (DINOv2 repository layout) converted into timm's DINOv2 ViT.

A DinoBloom ``.pth`` is a DINOv2 training checkpoint: ``{"teacher": {...}}`` whose keys are
``backbone.<DINOv2 key>`` for the ViT and ``dino_head.*`` / ``ibot_head.*`` for the
self-supervised heads. DinoBloom's own loader (``dinov2/eval/models/return_model.py``) keeps
the teacher's backbone, drops both heads and loads the rest into DINOv2's ViT with a 257-token
position embedding (224 px). Here the same tensors go into timm's DINOv2 ViT of that size:
timm's own DINOv2 filter drops the mask token (used only in pretraining), renames a SwiGLU
FFN's ``w12``/``w3`` (DinoBloom-G) and fits the position embedding to the model's patch grid.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from leukopipe.data.download import ChecksumError, download_file
from leukopipe.plumbing.errors import UserError
from leukopipe.plumbing.hashing import sha256_file
from leukopipe.train.dinobloom_names import TRAINED_SIZE, VARIANTS, DinoBloomVariant

log = logging.getLogger(__name__)

_HEADS = ("dino_head.", "ibot_head.")  # pretraining heads: not part of the backbone


class DinoBloomError(UserError, RuntimeError):
    """A DinoBloom checkpoint is missing, corrupt or not in the DINOv2 repository's layout."""


def variant(backbone: str) -> DinoBloomVariant:
    try:
        return VARIANTS[backbone]
    except KeyError:
        raise DinoBloomError(
            f"unknown DinoBloom backbone {backbone!r}; expected one of {', '.join(VARIANTS)}"
        ) from None


def backbone_state(checkpoint: Any, source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The teacher's ViT tensors under DINOv2's own key names, and the keys left out (heads).

    The teacher, not the student: DINOv2 evaluates (and DinoBloom publishes for use) the
    momentum teacher. ``source`` names the file in errors.
    """
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("teacher"), dict):
        found = sorted(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint)
        raise DinoBloomError(
            f"{source} is not a DINOv2 repository checkpoint: expected a 'teacher' state dict,"
            f" found {found}"
        )
    state: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in checkpoint["teacher"].items():
        if key.startswith(_HEADS):
            dropped.append(key)
        elif key.startswith("backbone."):
            state[key.removeprefix("backbone.")] = value
        else:
            raise DinoBloomError(f"{source}: unexpected key {key!r} in the teacher state dict")
    if not state:
        raise DinoBloomError(f"{source}: the teacher holds no backbone.* tensors")
    return state, sorted(dropped)


def convert(
    checkpoint: Any,
    backbone: str,
    source: str = "checkpoint",
    architecture_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """timm's DINOv2 ViT of ``backbone``'s size (224 px, no classifier) holding the checkpoint's
    teacher backbone; every tensor of the model must come from the checkpoint.

    ``architecture_kwargs`` overrides the architecture's config (``depth``, ``embed_dim``,
    ``num_heads``): the same conversion for a reduced model of the family, which the tests use
    to check it in seconds instead of building a full ViT.
    """
    v = variant(backbone)
    state, dropped = backbone_state(checkpoint, source)  # a wrong layout fails before the build
    model = timm.create_model(
        v.architecture, pretrained=False, num_classes=0, img_size=TRAINED_SIZE,
        **(architecture_kwargs or {}),
    )
    original = set(state)
    fitted = checkpoint_filter_fn(dict(state), model)
    own = model.state_dict()
    missing = sorted(set(own) - set(fitted))
    unexpected = sorted(set(fitted) - set(own))
    mismatched = sorted(k for k in set(own) & set(fitted) if own[k].shape != fitted[k].shape)
    if missing or unexpected or mismatched:
        raise DinoBloomError(
            f"{source} does not fit {v.architecture} ({backbone}): missing {missing[:5]},"
            f" unexpected {unexpected[:5]}, shape mismatch {mismatched[:5]}; is it the"
            f" checkpoint of another DinoBloom size?"
        )
    with torch.no_grad():
        model.load_state_dict(fitted, strict=True)
    renamed = sorted(original - set(fitted))  # mask_token, SwiGLU w12/w3
    return model, {
        "dropped_head_keys": len(dropped),
        "dropped_head_prefixes": sorted({k.split(".", 1)[0] for k in dropped}),
        "dropped_or_renamed_backbone_keys": renamed,
        # a reduced model says so in the weights record (never set by fetch_weights)
        **({"architecture_kwargs": architecture_kwargs} if architecture_kwargs else {}),
        "tensors": len(fitted),
        "pos_embed_tokens": int(fitted["pos_embed"].shape[1]),
    }


def fetch(
    backbone: str,
    raw_dir: str | os.PathLike[str],
    sha256: str | bool | None = True,
    architecture_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Download ``backbone``'s ``DinoBloom-*.pth`` into ``raw_dir`` (resumable; skipped when
    present), check it, and convert it. ``sha256``: True checks the published digest where one
    is known (else the file's own digest is recorded), a string checks that digest, None
    checks nothing. ``architecture_kwargs``: see :func:`convert`. Returns the model and what
    the weights record says about its origin."""
    v = variant(backbone)
    expected = v.sha256 if sha256 is True else (sha256 or None)
    path = Path(raw_dir) / v.file
    try:
        download_file(v.url, path, expected)
    except ChecksumError as exc:
        raise DinoBloomError(
            f"{path}: sha256 differs from the one recorded for {v.file} ({expected}); delete it"
            f" and fetch again ({exc})"
        ) from None
    actual = sha256_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and EOF errors all mean: not a readable checkpoint
        raise DinoBloomError(
            f"cannot read {path} ({type(exc).__name__}: {exc}); delete it and fetch it again"
        ) from exc
    model, report = convert(checkpoint, backbone, str(path), architecture_kwargs)
    log.info("converted %s (sha256 %s) into %s", path, actual[:12], v.architecture)
    return model, {
        "source": f"DinoBloom, Zenodo record {v.url.split('/files/')[0]}",
        "converted_from": {
            "file": v.file,
            "url": v.url,
            "sha256": actual,
            "sha256_checked_against": expected,
            "sha256_source": (v.sha256_source if expected == v.sha256 and expected else None)
            or ("given by the caller" if expected else "recorded on first download"),
            "layout": "DINOv2 repository checkpoint: teacher, backbone.* keys",
            "architecture": v.architecture,
            "image_size": TRAINED_SIZE,
            **report,
        },
    }
