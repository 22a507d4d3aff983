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
