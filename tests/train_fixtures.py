"""Tiny synthetic train/val data for the training tests (shared by several test files).

The task is deliberately easy: ALL cells (label 1) are bright, Hem cells (label 0) dark, with
per-pixel noise, so a few epochs must separate them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_split(
    folder: Path, name: str, n: int, size: int = 32, seed: int = 0
) -> tuple[Path, Path]:
    """Write ``<name>.parquet`` and ``<name>.npy`` (n images of size x size) into ``folder``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2  # balanced, interleaved so every batch holds both classes
    rng.shuffle(labels)
    base = np.where(labels[:, None, None, None] == 1, 170.0, 80.0)
    noise = rng.normal(0.0, 30.0, size=(n, size, size, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    frame = pd.DataFrame({
        "image_id": [f"{name}_{i:04d}" for i in range(n)],
        "subject": [f"S{i % 7}" for i in range(n)],
        "label": labels.astype(np.int64),
    })
    folder.mkdir(parents=True, exist_ok=True)
    manifest, store = folder / f"{name}.parquet", folder / f"{name}.npy"
    frame.to_parquet(manifest, index=False)
    np.save(store, pixels)
    return manifest, store


def write_data(folder: Path, n_train: int = 64, n_val: int = 32, size: int = 32) -> dict[str, Path]:
    """Train and validation splits; returns the four paths keyed like train()'s arguments."""
    train_manifest, train_pixels = write_split(folder, "train", n_train, size, seed=1)
    val_manifest, val_pixels = write_split(folder, "val", n_val, size, seed=2)
    return {
        "train_manifest": train_manifest,
        "train_pixels": train_pixels,
        "val_manifest": val_manifest,
        "val_pixels": val_pixels,
    }
