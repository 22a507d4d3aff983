"""Evaluation of one trained experiment on its test manifest.

Everything in ``metrics.json`` says what it is: the metric convention (ALL is the positive
class; macro and weighted F1 labelled separately), the interval method (subject-level cluster
bootstrap when subjects are known), the checkpoint and code version that produced it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe import metrics, referral
from leukopipe.inference import Classifier, predict_store
from leukopipe.store import open_store

CONVENTION = (
    "label 1 = ALL (positive class), 0 = Hem; precision/recall/f1 are ALL-class values (the"
    " studies' convention); macro_f1 averages both classes; weighted_f1 weights them by support"
    " (the C-NMC challenge's ranking metric); fractions in [0, 1]"
)


def file_sha256(path: str | Path) -> str:
    """Digest of a file, to tie a metrics file to the exact checkpoint it scored."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def score(
    clf: Classifier, manifest: pd.DataFrame, pixels_path: str | Path, batch_size: int
) -> np.ndarray:
    """Probability of ALL for every manifest row, from its pixel store."""
    pixels = open_store(pixels_path)
    if len(pixels) != len(manifest):
        raise ValueError(
            f"{pixels_path}: {len(pixels)} images but the manifest has {len(manifest)} rows"
            " (rerun the resize step)"
        )
    rows = manifest["store_row"].to_numpy() if "store_row" in manifest else np.arange(len(manifest))
    prob = predict_store(clf, pixels, batch_size)
    return prob[rows]


def train_val_gap(history: pd.DataFrame, best_epoch: int | None) -> dict[str, Any]:
    """Accuracies at the best epoch and the train-minus-validation gap (Study B's overfitting)."""
    if history.empty:
        return {}
    row = (
        history.loc[history["epoch"] == best_epoch]
        if best_epoch is not None
        else history.iloc[[-1]]
    )
    if row.empty:
        row = history.iloc[[-1]]
    r = row.iloc[0]
    out = {"best_epoch": int(r["epoch"]), "epochs_run": int(history["epoch"].max())}
    if "val_accuracy" in r:
        out["val_accuracy"] = float(r["val_accuracy"])
    if "train_accuracy" in r and pd.notna(r["train_accuracy"]):
        out["train_accuracy"] = float(r["train_accuracy"])
        out["gap"] = out["train_accuracy"] - out.get("val_accuracy", np.nan)
    return out


def evaluate(
    clf: Classifier,
    test: pd.DataFrame,
    test_pixels: str | Path,
    val: pd.DataFrame,
    val_pixels: str | Path,
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    referral_target: float = 0.95,
    referral_criterion: str = "accuracy",
    batch_size: int = 256,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions and the metrics record for one experiment (test scored, val for referral)."""
    p_test = score(clf, test, test_pixels, batch_size)
    p_val = score(clf, val, val_pixels, batch_size)
    y_test = test["label"].to_numpy(dtype=np.int64)
    y_val = val["label"].to_numpy(dtype=np.int64)
    groups = test["subject"].to_numpy() if "subject" in test else None

    chosen = referral.choose_threshold(y_val, p_val, referral_target, referral_criterion)
    confidence = np.maximum(p_test, 1.0 - p_test)
    predictions = pd.DataFrame(
        {
            "image_id": test["image_id"].to_numpy(),
            "subject": test["subject"].to_numpy(),
            "label": y_test,
            "prob_all": p_test,
            "pred": (p_test >= threshold).astype(np.int64),
            "confidence": confidence,
            "referred": confidence < chosen["threshold"],
        }
    )
    subjects = metrics.per_subject_table(test["subject"].to_numpy(), y_test, p_test, threshold)
    record: dict[str, Any] = {
        "convention": CONVENTION,
        "n_test": len(test),
        "n_test_subjects": int(test["subject"].nunique()),
        "metrics": metrics.binary_metrics(y_test, p_test, threshold),
        "ci": metrics.bootstrap_ci(
            y_test, p_test, groups, n_boot=n_boot, seed=seed, threshold=threshold
        ),
        "val_metrics": metrics.binary_metrics(y_val, p_val, threshold),
        "per_subject": {
            "mean_accuracy": float(subjects["accuracy"].mean()),
            "min_accuracy": float(subjects["accuracy"].min()),
            "table": subjects.to_dict(orient="records"),
        },
        "referral": {
            "chosen_on": "validation",
            **chosen,
            "test": referral.apply_threshold(y_test, p_test, chosen["threshold"]),
        },
    }
    return predictions, record
