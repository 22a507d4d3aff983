"""Split audits for table tests, made by the split step's own ``audit`` (so their shape cannot
drift from what the pipeline writes) on small hand-made train / val / test parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from leukopipe.data.split import audit


def _phash(rng: np.random.Generator) -> str:
    return "".join(f"{int(w):016x}" for w in rng.integers(0, 2**63, size=4, dtype=np.int64))


def _part(subjects: list[str], cells: int, rng: np.random.Generator, tag: str) -> pd.DataFrame:
    rows = [
        {
            "image_id": f"{tag}_{s}_{c}",
            "subject": s,
            "class_name": "hem" if s.startswith("H") else "all",
            "sha256": f"{tag}-{s}-{c}",
            "phash": _phash(rng),
        }
        for s in subjects
        for c in range(cells)
    ]
    return pd.DataFrame(rows)


def split_audit(
    split: str,
    test_subjects: list[str],
    *,
    shared: int = 0,
    near_copies: int = 0,
    max_distance: int = 8,
    seed: int = 0,
) -> dict:
    """The audit of a split whose test part holds ``test_subjects`` (two cells each), whose
    training part also holds the first ``shared`` of them, and which has ``near_copies`` test
    images with a 1-bit-different copy in training."""
    rng = np.random.default_rng(seed)
    test = _part(test_subjects, 2, rng, "test")
    train = _part([*test_subjects[:shared], "T1", "HT2"], 3, rng, "train")
    val = _part(["V1", "HV2"], 2, rng, "val")
    for i in range(near_copies):
        flipped = int(test.loc[i, "phash"], 16) ^ 1
        train.loc[i, "phash"] = f"{flipped:064x}"
    return {
        **audit({"train": train, "val": val, "test": test}, split, max_distance),
        "parameters": {"test_fraction": 0.1, "val_fraction": 0.1, "seed": 0},
    }


def write_audits(folder: Path, audits: list[dict]) -> list[Path]:
    """Each audit as ``<folder>/<split>/audit.json``, as the split step lays them out."""
    paths = []
    for a in audits:
        path = folder / a["mode"] / "audit.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(a))
        paths.append(path)
    return paths
