"""Soft-voting ensembles from stored predictions (nothing is retrained or re-scored).

The ensemble's probability of ALL is the mean of its members' probabilities, on test and on
validation alike, so its referral and subject-level thresholds are chosen on validation as for
a single model. Members must have scored the same images (the same split).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.evaluate.eval_record import (
    OutputFiles,
    ScoringSettings,
    build_record,
    finish_record,
    write_outputs,
)
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.readers import read_parquet

# the step's own name, which its log lines have always carried
log = logging.getLogger("ensemble")
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


def run_ensemble(
    members: list[Path],
    settings: ScoringSettings,
    experiment: dict[str, Any],
    outputs: OutputFiles,
) -> dict[str, Any]:
    """The ensemble step: soft vote of the ``members`` (eval folders) on test and validation,
    scored like a single model, written atomically, a summary logged; returns the record."""
    test = soft_vote(load_member_predictions(members, "predictions.parquet"))
    val = soft_vote(load_member_predictions(members, "val_predictions.parquet"))
    pred, val_pred, scored = build_record(
        test, test["prob_all"].to_numpy(), val, val["prob_all"].to_numpy(), settings
    )
    record = finish_record(
        scored,
        experiment={**experiment, "variant": "ensemble"},
        outputs=outputs,
        members=[str(m) for m in members],
    )
    write_outputs(outputs, pred, val_pred, record)
    m = record["metrics"]
    log.info(
        "soft vote of %d: test n=%d accuracy %.4f AUC %s",
        len(members), record["n_test"], m["accuracy"], m["roc_auc"],
    )
    return record
