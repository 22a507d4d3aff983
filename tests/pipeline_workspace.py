"""A throw-away copy of the workflow with a tiny synthetic config, for end-to-end tests.

Tests run Snakemake inside the copy so that editing package code there (to test code-change
reruns) never touches the real checkout, and results never land in the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = (
    "Snakefile",
    "config.yaml",
    "rules",
    "scripts",
    "src",
    "envs",
    "profiles",
    "report",
)
BIN = Path(sys.executable).parent

TINY_CONFIG = {
    "run": "tiny",
    "data": {
        "source": "synthetic",
        "raw_dir": "data/raw/tiny",
        "expected_image_size": 96,
        "synthetic": {
            "seed": 11,
            "image_size": 96,
            "train_all_subjects": 6,
            "train_hem_subjects": 5,
            "prelim_all_subjects": 3,
            "prelim_hem_subjects": 3,
            "cells_per_subject": [8, 12],
            "final_images": 4,
        },
    },
    "augment": {"image_size": 32, "target_per_class": 80},
    "weights": {"pretrained": False, "dir": "resources/weights"},
    "train": {
        "epochs": 2,
        "patience": 2,
        "lr": 1.0e-3,
        "batch_size": 32,
        "eval_batch_size": 64,
        "amp": "none",
    },
    # the extras of config.yaml off: the plain two-experiment DAG (the SLURM test relies on it)
    "evaluate": {"bootstrap": 50, "batch_size": 64, "tta": False, "knn": False},
    "gradcam": {"per_group": 0},
    "ensembles": [],
    "experiments": [
        {
            "name": "a",
            "split": "image",
            "backbones": ["resnet18"],
            "strategies": ["full"],
            "seeds": [0],
        },
        {
            "name": "b",
            "split": "official",
            "backbones": ["resnet18"],
            "strategies": ["frozen"],
            "seeds": [0],
        },
    ],
}

# Everything on: 2-fold cross-validation, TTA, Grad-CAM grids, an ensemble and a group with its
# own preprocessing (the cross-validation trains on the resized originals) (test_pipeline).
FULL_CONFIG = {
    **TINY_CONFIG,
    # starts from a weight file the workspace holds (fetch_weights only records it)
    "weights": {"pretrained": True, "dir": "resources/weights"},
    "split": {"folds": 2, "test_fraction": 0.1, "val_fraction": 0.1, "seed": 42},
    # the k-NN probe has its own workspace (test_knn_pipeline): the rerun tests' job counts
    "evaluate": {"bootstrap": 50, "batch_size": 64, "tta": True, "knn": False},
    "gradcam": {"per_group": 1},
    # two seeds of one model on the official split: the cheapest ensemble with a shared test set
    "ensembles": [{"name": "seeds", "groups": ["b"]}],
    "experiments": [
        TINY_CONFIG["experiments"][0],
        {**TINY_CONFIG["experiments"][1], "seeds": [0, 1]},
        {
            "name": "c",
            "split": "cv",
            "backbones": ["resnet18"],
            "strategies": ["frozen"],
            "seeds": [0],
            "augment": "none",
        },
    ],
}


def make_workspace(dest: Path, overrides: dict | None = None) -> Path:
    """Copy the workflow into ``dest`` and write ``test-config.yaml`` with the tiny settings."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    cfg = {**TINY_CONFIG, **(overrides or {})}
    write_config(dest, cfg)
    if cfg["weights"]["pretrained"]:
        _write_weights(dest / cfg["weights"]["dir"], cfg)
    return dest


def _write_weights(folder: Path, cfg: dict) -> None:
    """Random-initialised weight files standing in for ImageNet ones (no network in tests)."""
    from leukopipe.train.models import build_model
    from leukopipe.train.weight_files import weights_path
    from leukopipe.train.weights import save_weights

    for backbone in sorted({b for g in cfg["experiments"] for b in g["backbones"]}):
        save_weights(build_model(backbone), weights_path(folder, backbone), backbone)


def write_config(ws: Path, cfg: dict) -> None:
    (ws / "test-config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def snakemake(ws: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run Snakemake in the workspace with the tiny config; the venv's tools on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    cmd = [str(BIN / "snakemake"), "--configfile", "config.yaml", "test-config.yaml", *args]
    return subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=timeout, env=env)


def planned_jobs(ws: Path, *args: str) -> dict[str, int]:
    """Rule -> job count that a dry run would execute now (empty when nothing is to do)."""
    proc = snakemake(ws, "--dry-run", "--cores", "2", *args)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    jobs: dict[str, int] = {}
    if "Job stats:" not in out:
        return jobs
    table = out.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs
