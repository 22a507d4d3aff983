"""ImageNet weights as local files, so that training never touches the network.

Compute nodes are often offline: ``fetch`` runs where there is internet (the login node, the
``fetch_weights`` rule) and stores timm's pretrained state_dict as safetensors plus a small
JSON with timm's pretrained config; ``load_pretrained`` reads that file on the compute node.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from leukopipe.plumbing.atomic import atomic_path, write_json
from leukopipe.plumbing.errors import UserError
from leukopipe.plumbing.hashing import sha256_file
from leukopipe.train import dinobloom
from leukopipe.train.dinobloom_names import is_dinobloom
from leukopipe.train.models import classifier_names, is_head_key
from leukopipe.train.weight_files import (
    fetch_command,
    meta_path,
    pretraining_data,
    weights_path,
)

log = logging.getLogger(__name__)

class WeightsError(UserError, RuntimeError):
    """Pretrained weights are unavailable or do not fit the model."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """The local weights file is missing."""


def save_weights(
    model: nn.Module,
    dest: str | os.PathLike[str],
    backbone: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write ``model``'s state_dict as safetensors plus its JSON sidecar."""
    dest = Path(dest)
    # clone(): safetensors refuses tensors that share storage.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(dest) as tmp:
        save_file(tensors, str(tmp), metadata={"backbone": backbone, "format": "pt"})
    cfg = getattr(model, "pretrained_cfg", None) or {}
    write_json(
        meta_path(dest),
        {
            "backbone": backbone,
            "timm_version": timm.__version__,
            "pretrained_cfg": dict(cfg),
            "num_tensors": len(tensors),
            **(extra or {}),
        },
    )
    return dest


def weights_record(path: str | os.PathLike[str], backbone: str) -> dict[str, Any]:
    """What a run records about the weights it starts from: their sha256, timm tag and the
    data the tag was pretrained on; the folder is provenance only (the same file elsewhere is
    the same weights)."""
    path = Path(path)
    sidecar = meta_path(path)
    meta = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
    cfg = meta.get("pretrained_cfg") or {}
    return {
        "backbone": backbone,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "pretrained_tag": cfg.get("tag"),
        "pretraining_data": pretraining_data(cfg.get("tag")),
        "hf_hub_id": cfg.get("hf_hub_id"),
        # a converted checkpoint (DinoBloom): which file, with which sha256, became these weights
        "converted_from": meta.get("converted_from"),
        "located_at": str(path),
    }


def recorded_weights(record: str | os.PathLike[str]) -> dict[str, Any]:
    """The weights record a checkpoint and its metrics carry: everything but the location."""
    rec = json.loads(Path(record).read_text(encoding="utf-8"))
    return {k: v for k, v in rec.items() if k != "located_at"}


def check_against_record(path: str | os.PathLike[str], record: str | os.PathLike[str]) -> None:
    """Refuse a weights file whose bytes differ from the ones the run recorded."""
    expected = json.loads(Path(record).read_text(encoding="utf-8"))["sha256"]
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"weights file {path} (sha256 {actual[:12]}) is not the one recorded in {record}"
            f" (sha256 {expected[:12]}); to train on it, rerun with -R fetch_weights"
        )


def fetch(backbone: str, dest: str | os.PathLike[str], force: bool = False) -> Path:
    """Download timm's ImageNet weights of ``backbone`` to ``dest`` (skipped if present); a
    DinoBloom backbone: its Zenodo checkpoint, converted to timm's layout."""
    dest = Path(dest)
    if dest.exists() and not force:
        log.info("weights for %s already present at %s; skipping download", backbone, dest)
        return dest
    if is_dinobloom(backbone):
        # the published .pth is kept beside the converted file, so a rerun converts offline
        model, origin = dinobloom.fetch(backbone, dest.parent)
        return save_weights(model, dest, backbone, extra=origin)
    if not timm.is_model(backbone):
        raise WeightsError(f"unknown backbone {backbone!r}: not a timm model name")
    log.info("downloading ImageNet weights for %s (Hugging Face Hub via timm)", backbone)
    try:
        model = timm.create_model(backbone, pretrained=True)
    except Exception as exc:  # network, hub and missing-config errors all mean the same here
        raise WeightsError(
            f"could not download ImageNet weights for {backbone!r} into {dest} "
            f"({type(exc).__name__}: {exc}). Compute nodes are often offline: run "
            f"`{fetch_command(backbone, dest)}` on a machine with internet access (e.g. the "
            f"login node), then copy {dest.name} and {meta_path(dest).name} into {dest.parent}/"
        ) from exc
    return save_weights(model, dest, backbone, extra={"source": "timm pretrained=True"})


def load_pretrained(
    model: nn.Module, path: str | os.PathLike[str], backbone: str
) -> dict[str, Any]:
    """Load backbone weights from ``path`` into ``model``; its head stays freshly initialised.

    The file's classifier is dropped (its class count is ImageNet's); every other tensor of the
    model must be found in the file with the same shape, and the file must hold nothing else.
    A vision transformer built for another image size than the file's (DINOv2: 518 px, 37 x 37
    patches) first gets its position embedding resampled to its own patch grid, by timm's own
    loading filter. Returns a short report (tensors loaded, keys dropped, keys resampled).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"pretrained weights for {backbone!r} not found: {path}. Fetch them on a machine with "
            f"internet access with `{fetch_command(backbone, path)}` (or run the pipeline's "
            "fetch_weights rule) and copy the file there; pass --pretrained-weights none to "
            "train from scratch instead"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"cannot read weights file {path} ({exc}); delete it and fetch it again with "
            f"`{fetch_command(backbone, path)}`"
        ) from exc
    _warn_if_other_backbone(path, backbone)
    state, resampled = _fit_to_patch_grid(state, model)
    if resampled:
        log.info("resampled %s of %s to the model's patch grid", ", ".join(resampled), path)

    heads = classifier_names(model)
    dropped = sorted(k for k in state if is_head_key(k, heads))
    state = {k: v for k, v in state.items() if not is_head_key(k, heads)}
    own = {k: v for k, v in model.state_dict().items() if not is_head_key(k, heads)}

    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("shape mismatch", mismatched)):
            if keys:
                details.append(f"{label} ({len(keys)}): {', '.join(keys[:5])}")
        raise WeightsError(
            f"weights file {path} does not fit backbone {backbone!r}: " + "; ".join(details)
            + f". Is it the file for another backbone? Fetch the right one with "
            f"`{fetch_command(backbone, path)}`"
        )
    with torch.no_grad():
        result = model.load_state_dict(state, strict=False)
    # load_state_dict reports head keys as missing: those are expected, nothing else may be.
    leftover = [k for k in result.missing_keys if not is_head_key(k, heads)]
    if leftover or result.unexpected_keys:
        not_loaded = leftover + list(result.unexpected_keys)
        raise WeightsError(f"weights file {path}: keys not loaded: {not_loaded}")
    return {
        "path": str(path), "loaded": len(state), "dropped_head_keys": dropped,
        "resampled_keys": resampled,
    }


def _fit_to_patch_grid(
    state: dict[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Resample a ViT's position embedding (and patch kernel) to the model's grid, as timm does
    when it loads pretrained weights into a ViT of another image size; other models: as is."""
    if not isinstance(model, VisionTransformer):
        return state, []
    fitted = checkpoint_filter_fn(state, model)
    resampled = sorted(
        k for k in fitted if k in state and fitted[k].shape != state[k].shape
    )
    return fitted, resampled


def _warn_if_other_backbone(path: Path, backbone: str) -> None:
    sidecar = meta_path(path)
    if not sidecar.is_file():
        return
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8")).get("backbone")
    except (OSError, ValueError):
        return
    if recorded and recorded != backbone:
        # Allowed (e.g. resnet50.tv_in1k weights for resnet50); key/shape checks still apply.
        log.warning("weights file %s was fetched for %r, loading into %r", path, recorded, backbone)


def fetch_step(
    backbone: str, out: Path | None, force: bool = False, record_out: Path | None = None
) -> Path:
    """The fetch_weights step: the backbone's weights at ``out`` (default:
    resources/weights/<backbone>.safetensors, from the working folder), downloaded unless
    there or ``force``; with ``record_out`` also their record (sha256, timm tag)."""
    path = fetch(backbone, out or weights_path("resources/weights", backbone), force=force)
    if record_out is not None:
        write_json(record_out, weights_record(path, backbone))
    # the log line keeps the name it had when the script logged it
    logging.getLogger("fetch_weights").info("weights for %s at %s", backbone, path)
    return path
