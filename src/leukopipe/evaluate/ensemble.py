"""Soft-voting ensembles from stored predictions (nothing is retrained or re-scored).

The ensemble's probability of ALL is the mean of its members' probabilities, on test and on
validation alike, so its referral and subject-level thresholds are chosen on validation as for
a single model. Members must have scored the same images (the same split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.readers import read_parquet

KEYS = ["image_id", "subject", "label"]


def soft_vote(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``image_id, subject, label, prob_all`` with prob_all averaged over ``frames``.

    Rows are aligned on image_id; members that scored different images are an error.
    """
    if len(frames) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(frames)}")
    base = frames[0][KEYS].sort_values("image_id").reset_index(drop=True)
    probs = []
    for i, f in enumerate(frames):
        f = f.sort_values("image_id").reset_index(drop=True)
        if len(f) != len(base) or not (f["image_id"].to_numpy() == base["image_id"]).all():
            raise InvalidInputError(
                f"ensemble member {i} scored other images than member 0: members must share"
                " one split (the same test and validation manifests)"
            )
        if not (f["label"].to_numpy() == base["label"].to_numpy()).all():
            raise InvalidInputError(f"ensemble member {i} disagrees on true labels with member 0")
        probs.append(f["prob_all"].to_numpy(dtype=np.float64))
    out = base.copy()
    out["prob_all"] = np.mean(probs, axis=0)
    return out


def load_member_predictions(folders: list[Path], name: str) -> list[pd.DataFrame]:
    """Each member folder's ``name`` parquet (predictions.parquet or val_predictions.parquet)."""
    return [read_parquet(Path(f) / name) for f in folders]
