"""Hybrid human-AI workflow (Study B): the model decides confident cells, an expert the rest.

A cell's confidence is the probability of its predicted class, max(p, 1 - p) with p the
probability of ALL (prediction: ALL when p >= 0.5). A cell is *accepted* (decided by the model)
when its confidence is >= the threshold t and *referred* to an expert otherwise. Raising t
refers more cells; the threshold is chosen on validation data and then applied unchanged to
test data, so the test numbers are an honest estimate.

Undefined ratios (no accepted cell, or no accepted ALL cell for sensitivity) are None here
rather than 0.0: "accuracy 0 %" of an empty set would read as a failure of the model.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from leukopipe.evaluate.metrics import check_predictions
from leukopipe.plumbing.errors import InvalidInputError

Criterion = Literal["accuracy", "sensitivity"]

# Lowest possible confidence: a threshold this low accepts every cell (no referral).
MIN_CONFIDENCE = 0.5


def _confidence(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = (p >= 0.5).astype(np.int64)
    return np.where(pred == 1, p, 1.0 - p), pred


def _sweep(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Statistics of the accepted set for every distinct threshold t = a confidence value.

    Sorting by confidence (descending) turns "accept confidence >= t" into a prefix, so
    cumulative sums give every candidate at once; ties are kept together (one row per value).
    """
    conf, pred = _confidence(p)
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    correct = (pred[order] == y[order]).astype(np.int64)
    is_all = (y[order] == 1).astype(np.int64)
    tp = is_all * pred[order]
    last_of_tie = np.r_[c[1:] != c[:-1], True]  # prefix ends where the confidence changes
    n_acc = np.arange(1, c.size + 1)[last_of_tie]
    n_correct = np.cumsum(correct)[last_of_tie]
    n_all = np.cumsum(is_all)[last_of_tie]
    n_tp = np.cumsum(tp)[last_of_tie]
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(n_all > 0, n_tp / np.maximum(n_all, 1), np.nan)
    return pd.DataFrame(
        {
            "threshold": c[last_of_tie],
            "n_accepted": n_acc,
            "coverage": n_acc / c.size,
            "accuracy": n_correct / n_acc,
            "sensitivity": sens,
            "n_all_accepted": n_all,
        }
    )


def choose_threshold(
    y_val: Any, p_val: Any, target: float, criterion: Criterion = "accuracy"
) -> dict[str, Any]:
    """Lowest confidence threshold whose accepted validation cells reach ``target``.

    ``criterion`` is "accuracy" or "sensitivity" (recall of ALL among accepted cells), ``target``
    a fraction in [0, 1]. The lowest threshold refers the fewest cells. The returned threshold
    is the confidence of the least confident accepted validation cell, or ``MIN_CONFIDENCE``
    (0.5, refer nothing) when all cells already reach the target. When no threshold reaches the
    target, the one with the best criterion value (lowest among ties) is returned with
    ``reached`` False.

    Returns {threshold, val_coverage, val_criterion, reached, criterion, target}.
    """
    if criterion not in ("accuracy", "sensitivity"):
        raise InvalidInputError(f"criterion must be 'accuracy' or 'sensitivity', got {criterion!r}")
    if not 0.0 <= target <= 1.0:
        raise InvalidInputError(f"target must be a fraction in [0, 1] (e.g. 0.95), got {target}")
    y, p = check_predictions(y_val, p_val)
    sweep = _sweep(y, p)
    # Ascending thresholds = descending coverage; the first hit is the lowest threshold.
    sweep = sweep.iloc[::-1].reset_index(drop=True)
    crit = sweep[criterion].to_numpy(dtype=np.float64)
    crit_filled = np.where(np.isnan(crit), -np.inf, crit)  # undefined never reaches a target
    hits = np.flatnonzero(crit_filled >= target)
    reached = hits.size > 0
    i = int(hits[0]) if reached else int(np.argmax(crit_filled))
    row = sweep.iloc[i]
    threshold = float(row["threshold"])
    if i == 0:  # every validation cell accepted: refer nothing on new data either
        threshold = MIN_CONFIDENCE
    value = crit[i]
    return {
        "threshold": threshold,
        "val_coverage": float(row["coverage"]),
        "val_criterion": None if np.isnan(value) else float(value),
        "reached": bool(reached),
        "criterion": criterion,
        "target": float(target),
    }


def apply_threshold(y: Any, p: Any, threshold: float) -> dict[str, Any]:
    """Accept cells with confidence >= ``threshold``, refer the rest.

    Returns accepted_accuracy, accepted_sensitivity (None when undefined), referred_fraction,
    n_referred, n_accepted, coverage (= 1 - referred_fraction) and the threshold.
    """
    yy, pp = check_predictions(y, p)
    conf, pred = _confidence(pp)
    acc = conf >= threshold
    n_acc = int(acc.sum())
    n_all_acc = int(np.sum(acc & (yy == 1)))
    accuracy = float(np.mean(pred[acc] == yy[acc])) if n_acc else None
    sensitivity = float(np.sum(acc & (yy == 1) & (pred == 1)) / n_all_acc) if n_all_acc else None
    return {
        "threshold": float(threshold),
        "accepted_accuracy": accuracy,
        "accepted_sensitivity": sensitivity,
        "n_accepted": n_acc,
        "n_referred": int(yy.size - n_acc),
        "coverage": n_acc / yy.size,
        "referred_fraction": (yy.size - n_acc) / yy.size,
    }


def risk_coverage(y: Any, p: Any) -> pd.DataFrame:
    """Risk-coverage curve: one row per distinct confidence threshold, coverage ascending.

    Columns: threshold, n_accepted, coverage, accuracy, risk (= 1 - accuracy) and sensitivity
    (NaN when no ALL cell is accepted) of the accepted cells.
    """
    yy, pp = check_predictions(y, p)
    sweep = _sweep(yy, pp)
    sweep["risk"] = 1.0 - sweep["accuracy"]
    cols = ["threshold", "n_accepted", "coverage", "accuracy", "risk", "sensitivity"]
    return sweep[cols].reset_index(drop=True)
