"""The evaluation record of one set of test predictions (torch-free).

Single models, test-time augmentation, soft-voting ensembles and pooled cross-validation folds
all go through the same code, so every row of the comparison carries the same metrics, the same
subject-bootstrap intervals, the same validation-chosen referral and subject-level diagnosis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leukopipe.evaluate import calibration, metrics, referral, subject_level

CONVENTION = (
    "label 1 = ALL (positive class), 0 = Hem; precision/recall/f1 are ALL-class values (the"
    " studies' convention); macro_f1 averages both classes; weighted_f1 weights them by support"
    " (the C-NMC challenge's ranking metric); fractions in [0, 1]"
)
PREDICTION_COLUMNS = [
    "image_id", "subject", "label", "prob_all", "pred", "confidence", "referred",
    "prob_all_calibrated",
]


def prediction_frame(
    manifest: pd.DataFrame,
    prob_all: np.ndarray,
    threshold: float,
    refer_below: float,
    temperature: float | None = None,
) -> pd.DataFrame:
    """Per-image predictions: ids, true label, probability of ALL, call, confidence, referral,
    and (with ``temperature``) the temperature-scaled probability of ALL."""
    p = np.asarray(prob_all, dtype=np.float64)
    confidence = np.maximum(p, 1.0 - p)
    frame = pd.DataFrame(
        {
            "image_id": manifest["image_id"].to_numpy(),
            "subject": manifest["subject"].to_numpy(),
            "label": manifest["label"].to_numpy(dtype=np.int64),
            "prob_all": p,
            "pred": (p >= threshold).astype(np.int64),
            "confidence": confidence,
            "referred": confidence < refer_below,
        }
    )
    if temperature is not None:
        frame["prob_all_calibrated"] = calibration.apply_temperature(p, temperature)
    return frame


def _metric_block(pred: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> dict[str, Any]:
    y, p = pred["label"].to_numpy(dtype=np.int64), pred["prob_all"].to_numpy()
    subjects = metrics.per_subject_table(pred["subject"].to_numpy(), y, p, threshold)
    return {
        "convention": CONVENTION,
        "n_test": len(pred),
        "n_test_subjects": int(pred["subject"].nunique()),
        "metrics": metrics.binary_metrics(y, p, threshold),
        "ci": metrics.bootstrap_ci(
            y, p, pred["subject"].to_numpy(), n_boot=n_boot, seed=seed, threshold=threshold
        ),
        "per_subject": {
            "mean_accuracy": float(subjects["accuracy"].mean()),
            "min_accuracy": float(subjects["accuracy"].min()),
            "table": subjects.to_dict(orient="records"),
        },
    }


def build_record(
    test: pd.DataFrame,
    p_test: np.ndarray,
    val: pd.DataFrame,
    p_val: np.ndarray,
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    referral_target: float = 0.95,
    referral_criterion: str = "accuracy",
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(test predictions, validation predictions, metrics record) for one set of probabilities.

    Validation chooses the referral threshold and the subject-level thresholds; test is only
    scored with them.
    """
    y_val = val["label"].to_numpy(dtype=np.int64)
    y_test = test["label"].to_numpy(dtype=np.int64)
    chosen = referral.choose_threshold(y_val, p_val, referral_target, referral_criterion)
    calibrated = calibration.calibration_record(
        y_test, np.asarray(p_test, dtype=np.float64), test["subject"].to_numpy(),
        y_val, np.asarray(p_val, dtype=np.float64), n_boot=n_boot, seed=seed,
        referral_target=referral_target, referral_criterion=referral_criterion,
    )
    temperature = calibrated["temperature"]
    pred = prediction_frame(test, p_test, threshold, chosen["threshold"], temperature)
    val_pred = prediction_frame(val, p_val, threshold, chosen["threshold"], temperature)
    record = _metric_block(pred, threshold, n_boot, seed)
    record["calibration"] = calibrated
    record["val_metrics"] = metrics.binary_metrics(y_val, p_val, threshold)
    record["referral"] = {
        "chosen_on": "validation",
        **chosen,
        "test": referral.apply_threshold(y_test, p_test, chosen["threshold"]),
    }
    record["subject_level"] = subject_level.diagnose(pred, val_pred, threshold)
    return pred, val_pred, record


def pooled_record(
    parts: list[tuple[pd.DataFrame, dict[str, Any]]],
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Out-of-fold record over disjoint test sets (cross-validation folds).

    Metrics and subject-bootstrap intervals come from the concatenated predictions; referral
    and subject-level calls keep each fold's own validation-chosen thresholds.
    """
    pred = pd.concat([p for p, _ in parts], ignore_index=True)
    if pred["image_id"].duplicated().any():
        raise ValueError("pooled folds share test images: the folds are not disjoint")
    record = _metric_block(pred, threshold, n_boot, seed)
    referred = pred["referred"].to_numpy(dtype=bool)
    accepted = ~referred
    correct = (pred["pred"] == pred["label"]).to_numpy()
    record["referral"] = {
        "chosen_on": "validation, per fold",
        "threshold": float(np.mean([r["referral"]["threshold"] for _, r in parts])),
        "thresholds": [r["referral"]["threshold"] for _, r in parts],
        "test": {
            "n_referred": int(referred.sum()),
            "referred_fraction": float(referred.mean()),
            "coverage": float(accepted.mean()),
            "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None,
        },
    }
    if all("calibration" in r for _, r in parts) and "prob_all_calibrated" in pred:
        record["calibration"] = _pooled_calibration(parts, pred, n_boot, seed)
    subj = [r["subject_level"] for _, r in parts if "subject_level" in r]
    if len(subj) == len(parts):
        record["subject_level"] = subject_level.pool(subj)
    return pred, record


def _pooled_calibration(
    parts: list[tuple[pd.DataFrame, dict[str, Any]]], pred: pd.DataFrame, n_boot: int, seed: int
) -> dict[str, Any]:
    """Calibration out of fold: every fold's own temperature and calibrated referral threshold
    (fitted on its validation set) applied to its test cells, scored together."""
    y = pred["label"].to_numpy(dtype=np.int64)
    refer = []
    for p, r in parts:
        conf = p["prob_all_calibrated"].to_numpy()
        refer.append(np.maximum(conf, 1.0 - conf) < r["calibration"]["referral"]["threshold"])
    referred = np.concatenate(refer)
    accepted = ~referred
    correct = (pred["pred"] == pred["label"]).to_numpy()
    thresholds = [r["calibration"]["referral"]["threshold"] for _, r in parts]
    return {
        "method": calibration.METHOD,
        "fitted_on": "validation, per fold",
        "temperature": None,
        "temperatures": [r["calibration"]["temperature"] for _, r in parts],
        **calibration.scores(
            y, pred["prob_all"].to_numpy(), pred["prob_all_calibrated"].to_numpy(),
            pred["subject"].to_numpy(), n_boot=n_boot, seed=seed,
        ),
        "referral": {
            "chosen_on": "validation, calibrated probabilities, per fold",
            "threshold": float(np.mean(thresholds)),
            "thresholds": thresholds,
            "test": {
                "n_referred": int(referred.sum()),
                "referred_fraction": float(referred.mean()),
                "coverage": float(accepted.mean()),
                "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None,
            },
        },
    }
