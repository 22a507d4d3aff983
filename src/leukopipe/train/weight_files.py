"""Where pretrained weight files live and how they are fetched: names only, no torch.

The workflow's rule files need these paths at every Snakemake start; keeping them apart from
``train/weights.py`` (which loads weights, so imports torch and timm) keeps that start fast.
"""

from __future__ import annotations

import os
from pathlib import Path

FETCH_SCRIPT = "scripts/fetch_weights.py"


def weights_path(weights_dir: str | os.PathLike[str], backbone: str) -> Path:
    """Where the weights of ``backbone`` live: ``<weights_dir>/<backbone>.safetensors``."""
    return Path(weights_dir) / f"{backbone}.safetensors"


def meta_path(weights_file: str | os.PathLike[str]) -> Path:
    """The JSON sidecar next to a weights file (timm's pretrained config, backbone name)."""
    weights_file = Path(weights_file)
    return weights_file.with_name(weights_file.name.removesuffix(".safetensors") + ".json")


def fetch_command(backbone: str, dest: str | os.PathLike[str]) -> str:
    """The shell command that downloads the weights of ``backbone`` to ``dest``."""
    return f"python {FETCH_SCRIPT} --backbone {backbone} --out {dest}"


# Dataset tokens of timm's pretrained tags (the part after the architecture's dot).
_DATASETS = {
    "in1k": "ImageNet-1k",
    "in12k": "ImageNet-12k",
    "in21k": "ImageNet-21k",
    "in22k": "ImageNet-22k",
    "lvd142m": "LVD-142M (self-supervised)",
    "jft": "JFT-300M",
    "yfcc100m": "YFCC100M",
    "ig1b": "Instagram-1B",
}


def split_tag(backbone: str) -> tuple[str, str | None]:
    """``resnet50.tv_in1k`` -> (``resnet50``, ``tv_in1k``); a bare architecture has no tag."""
    arch, _, tag = backbone.partition(".")
    return arch, tag or None


def pretraining_data(tag: str | None) -> str | None:
    """The data a timm pretrained tag was trained on, read from the tag's dataset tokens:
    ``in21k_ft_in1k`` -> "ImageNet-21k, fine-tuned on ImageNet-1k"; None when the tag names
    no dataset this table knows (see the tag's model card then)."""
    if not tag:
        return None

    def datasets(part: str) -> list[str]:
        return [_DATASETS[t] for t in part.split("_") if t in _DATASETS]

    pre, _, fine = tag.partition("_ft_")
    first = datasets(pre)
    if not first:
        return None
    text = " and ".join(first)
    then = datasets(fine) if fine else []
    return f"{text}, fine-tuned on {' and '.join(then)}" if then else text
