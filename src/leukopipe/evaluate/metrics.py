"""Evaluation metrics for ALL (label 1, positive) versus Hem (label 0) cell classification.

Conventions (the same everywhere in the pipeline, so tables from different runs compare):

- ``prob_all`` is the predicted probability of ALL; a cell is *called* ALL when
  ``prob_all >= threshold`` (0.5 by default).
- ``precision``, ``recall`` and ``f1`` are the ALL-class (positive-class) values. Study A's
  Table 2 prints these although its text says "macro"; ``macro_f1`` (unweighted mean over both
  classes) and ``weighted_f1`` (support-weighted mean over both classes, the C-NMC challenge's
  ranking metric) are reported next to them, labelled.
- Every metric is a fraction in [0, 1]. A ratio whose denominator is zero (0/0) is defined as
  0.0, as scikit-learn does with ``zero_division=0``: precision without predicted ALL, recall
  without true ALL, specificity without true Hem, the F1 of a class that is neither present nor
  predicted, and MCC when a row or column of the confusion matrix is empty. The one exception
  follows scikit-learn too: ``balanced_accuracy`` averages the recalls of the classes that are
  present in ``y_true`` (a single-class sample gives that class's recall), and is 0.0 when there
  are no samples at all.
- ``roc_auc`` is None when ``y_true`` holds a single class (it is undefined, not 0.0).

The bootstrap (``bootstrap_ci``) treats each resample as integer multiplicities (weights) of the
original cells, so images and subjects are resampled with the same vectorised code, and the
point estimates come from the same formulas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

# Scalar metrics that get a bootstrap confidence interval, in report order.
SCALAR_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "specificity",
    "macro_f1",
    "weighted_f1",
    "mcc",
    "roc_auc",
    "ece",
)

# Upper bound on resamples x cells held in memory at once by the bootstrap (~32 MB of float64).
_BOOT_CHUNK_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------- input checks
def _as_labels(y_true: Any, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of 0/1 labels, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise ValueError(
            f"{name} must hold only 0 (Hem) and 1 (ALL); found {bad.tolist()}. "
            "Map the labels to 0/1 before computing metrics."
        )
    return y.astype(np.int64)


def _as_probs(prob_all: Any, n: int, name: str = "prob_all") -> np.ndarray:
    p = np.asarray(prob_all, dtype=np.float64)
    if p.ndim != 1 or p.shape[0] != n:
        raise ValueError(
            f"{name} must be a 1-D array with one value per label ({n}), got {p.shape}"
        )
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(
            f"{name} must hold finite probabilities in [0, 1]; pass the softmax probability of "
            "ALL, not a logit."
        )
    return p


def check_predictions(y_true: Any, prob_all: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels as int64, probabilities as float64) arrays; ValueError saying what is
    wrong otherwise (non 0/1 labels, probabilities outside [0, 1], lengths differ, empty)."""
    y = _as_labels(y_true)
    p = _as_probs(prob_all, y.shape[0])
    if y.size == 0:
        raise ValueError("no predictions to evaluate (y_true is empty)")
    return y, p


# ----------------------------------------------------------------------------- confusion
def confusion(y_true: Any, y_pred: Any) -> dict[str, int]:
    """Confusion counts with ALL (1) as the positive class: ``{tp, fn, fp, tn}``."""
    y = _as_labels(y_true)
    yp = _as_labels(y_pred, "y_pred")
    if y.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y.shape[0]} vs {yp.shape[0]}")
    return {
        "tp": int(np.sum((y == 1) & (yp == 1))),
        "fn": int(np.sum((y == 1) & (yp == 0))),
        "fp": int(np.sum((y == 0) & (yp == 1))),
        "tn": int(np.sum((y == 0) & (yp == 0))),
    }


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0/0 (any x/0) -> 0.0, the scikit-learn ``zero_division=0`` convention."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _confusion_metrics(
    tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Vectorised metrics from (possibly weighted) confusion counts.

    Returns the metric values and, per metric, a mask of where it is *defined* (no 0/0
    convention was needed); the bootstrap skips resamples where a metric is undefined.
    """
    tp, fn, fp, tn = (np.asarray(v, dtype=np.float64) for v in (tp, fn, fp, tn))
    pos, neg = tp + fn, tn + fp  # true ALL, true Hem
    n = pos + neg
    recall = _div(tp, pos)
    specificity = _div(tn, neg)
    precision = _div(tp, tp + fp)
    f1_all = _div(2 * tp, 2 * tp + fp + fn)
    f1_hem = _div(2 * tn, 2 * tn + fn + fp)
    # sklearn's balanced accuracy: mean recall over the classes present in y_true.
    n_present = (pos > 0).astype(np.float64) + (neg > 0)
    balanced = _div(recall * (pos > 0) + specificity * (neg > 0), n_present)
    mcc_den = np.sqrt((tp + fp) * pos * neg * (tn + fn))
    values = {
        "accuracy": _div(tp + tn, n),
        "balanced_accuracy": balanced,
        "precision": precision,
        "recall": recall,
        "f1": f1_all,
        "specificity": specificity,
        "macro_f1": (f1_all + f1_hem) / 2,
        "weighted_f1": _div(pos * f1_all + neg * f1_hem, n),
        "mcc": _div(tp * tn - fp * fn, mcc_den),
    }
    defined = {
        "accuracy": n > 0,
        "balanced_accuracy": (pos > 0) & (neg > 0),
        "precision": (tp + fp) > 0,
        "recall": pos > 0,
        "f1": (2 * tp + fp + fn) > 0,
        "specificity": neg > 0,
        "macro_f1": ((2 * tp + fp + fn) > 0) & ((2 * tn + fn + fp) > 0),
        "weighted_f1": n > 0,
        "mcc": mcc_den > 0,
    }
    return values, defined


def metrics_from_confusion(tp: int, fn: int, fp: int, tn: int) -> dict[str, float]:
    """Accuracy, balanced accuracy, ALL-class precision/recall/F1, specificity, macro-F1,
    weighted F1 and MCC from confusion counts (fractions; 0/0 -> 0.0, see module docstring)."""
    for name, v in (("tp", tp), ("fn", fn), ("fp", fp), ("tn", tn)):
        if v < 0:
            raise ValueError(f"confusion count {name} must be >= 0, got {v}")
    values, _ = _confusion_metrics(tp, fn, fp, tn)
    return {k: float(v) for k, v in values.items()}


# ----------------------------------------------------------------------------- AUC
def _weighted_auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of ``weights`` (resamples x cells), ties counted as 1/2.

    This is the Mann-Whitney statistic, identical to the trapezoidal area under the ROC curve
    that scikit-learn computes. Rows with a single class get NaN.
    """
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])  # tie groups
    w = weights[:, order]
    is_pos = (y[order] == 1).astype(np.float64)
    pos_w = np.add.reduceat(w * is_pos, starts, axis=1)
    neg_w = np.add.reduceat(w * (1.0 - is_pos), starts, axis=1)
    neg_below = np.cumsum(neg_w, axis=1) - neg_w
    total_pos = pos_w.sum(axis=1)
    total_neg = neg_w.sum(axis=1)
    pairs = total_pos * total_neg
    wins = np.sum(pos_w * (neg_below + 0.5 * neg_w), axis=1)
    out = np.full(weights.shape[0], np.nan)
    np.divide(wins, pairs, out=out, where=pairs > 0)
    return out


def roc_auc(y_true: Any, prob_all: Any) -> float | None:
    """Area under the ROC curve of ``prob_all`` for ALL; None when only one class is present."""
    y, p = check_predictions(y_true, prob_all)
    auc = _weighted_auc(y, p, np.ones((1, y.size)))[0]
    return None if np.isnan(auc) else float(auc)


# ----------------------------------------------------------------------------- calibration
def _confidence_bins(prob_all: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Predicted-class confidence, correctness target and bin index of every cell.

    Bins are ``n_bins`` equal-width, right-closed intervals (lo, hi] over [0, 1] (the first
    also holds 0), as in Guo et al. 2017. The confidence max(p, 1 - p) is at least 0.5, so the
    bins below 0.5 stay empty; keeping the usual edges makes ECE values comparable to
    published ones.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    pred = (prob_all >= 0.5).astype(np.int64)  # argmax prediction; p == 0.5 counts as ALL
    conf = np.where(pred == 1, prob_all, 1.0 - prob_all)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    return edges, pred, conf, idx


def _ece_from_sums(count: np.ndarray, conf_sum: np.ndarray, correct_sum: np.ndarray) -> np.ndarray:
    """ECE = sum_b |correct_b - conf_b| / n from per-bin sums (last axis = bins)."""
    n = count.sum(axis=-1)
    return _div(np.abs(correct_sum - conf_sum).sum(axis=-1), n)


def expected_calibration_error(y_true: Any, prob_all: Any, n_bins: int = 15) -> float:
    """Expected calibration error of the predicted-class confidence max(p, 1 - p).

    ECE = sum over bins b of (n_b / n) * |accuracy_b - mean_confidence_b|, where accuracy_b is
    the fraction of cells in bin b whose argmax prediction (ALL when p >= 0.5) is right.
    Bins: ``n_bins`` equal-width intervals on [0, 1] (see ``reliability_table``). 0 is perfect.
    """
    y, p = check_predictions(y_true, prob_all)
    _, pred, conf, idx = _confidence_bins(p, n_bins)
    correct = (pred == y).astype(np.float64)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    correct_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    return float(_ece_from_sums(count, conf_sum, correct_sum))


def reliability_table(y_true: Any, prob_all: Any, n_bins: int = 15) -> pd.DataFrame:
    """One row per confidence bin: bin, lo, hi, count, mean_confidence, accuracy.

    Bins are (lo, hi] of the predicted-class confidence; empty bins have count 0 and NaN means,
    so a reliability diagram can skip them.
    """
    y, p = check_predictions(y_true, prob_all)
    edges, pred, conf, idx = _confidence_bins(p, n_bins)
    correct = (pred == y).astype(np.float64)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lo": edges[:-1],
            "hi": edges[1:],
            "count": count.astype(np.int64),
            "mean_confidence": mean_conf,
            "accuracy": acc,
        }
    )


def brier_score(y_true: Any, prob_all: Any) -> float:
    """Mean squared difference between the probability of ALL and the label (0 is perfect)."""
    y, p = check_predictions(y_true, prob_all)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def _ece_brier_for_weights(
    y: np.ndarray, p: np.ndarray, weights: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """ECE and Brier score of every row of resampling ``weights`` (n_rows x cells)."""
    _, pred, conf, idx = _confidence_bins(p, n_bins)
    onehot = np.zeros((y.size, n_bins))
    onehot[np.arange(y.size), idx] = 1.0
    correct = (pred == y).astype(np.float64)
    count = weights @ onehot
    ece = _ece_from_sums(count, weights @ (onehot * conf[:, None]),
                         weights @ (onehot * correct[:, None]))
    brier = _div(weights @ ((p - y) ** 2), weights.sum(axis=1))
    return ece, brier


def calibration_ci(
    y_true: Any,
    probs: dict[str, Any],
    groups: Sequence[Any] | np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Subject-bootstrap intervals of ECE and Brier score for several probability vectors of
    the same cells (e.g. before and after calibration), each resample shared by all of them so
    that the intervals are paired: ``{"ece": {name: (lo, hi)}, "brier": {...}, "bootstrap":
    {...}}``."""
    y = _as_labels(y_true)
    ps = {name: _as_probs(p, y.size) for name, p in probs.items()}
    _, unit_of_cell = np.unique(np.asarray(groups), return_inverse=True)
    n_units = int(unit_of_cell.max()) + 1 if y.size else 0
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // max(y.size * n_bins, 1))
    draws: dict[str, dict[str, list[np.ndarray]]] = {
        m: {name: [] for name in ps} for m in ("ece", "brier")
    }
    for start in range(0, n_boot, chunk):
        w = _resample_weights(rng, min(chunk, n_boot - start), unit_of_cell, n_units)
        for name, p in ps.items():
            ece, brier = _ece_brier_for_weights(y, p, w, n_bins)
            draws["ece"][name].append(ece)
            draws["brier"][name].append(brier)
    alpha = 1.0 - level
    out: dict[str, Any] = {}
    for m, per_name in draws.items():
        out[m] = {}
        for name, parts in per_name.items():
            lo, hi = np.quantile(np.concatenate(parts), [alpha / 2, 1 - alpha / 2])
            out[m][name] = (float(lo), float(hi))
    out["bootstrap"] = {
        "unit": "subject", "n_units": n_units, "n_boot": int(n_boot), "level": float(level),
        "seed": int(seed), "n_bins": n_bins,
    }
    return out


# ----------------------------------------------------------------------------- summary
def binary_metrics(y_true: Any, prob_all: Any, threshold: float = 0.5) -> dict[str, Any]:
    """All scalar metrics at ``threshold`` plus roc_auc (None if one class), ece, n, n_all,
    n_hem and the ``confusion`` dict {tp, fn, fp, tn}."""
    y, p = check_predictions(y_true, prob_all)
    cm = confusion(y, (p >= threshold).astype(np.int64))
    out: dict[str, Any] = metrics_from_confusion(**cm)
    out["roc_auc"] = roc_auc(y, p)
    out["ece"] = expected_calibration_error(y, p)
    out["n"] = int(y.size)
    out["n_all"] = int(np.sum(y == 1))
    out["n_hem"] = int(np.sum(y == 0))
    out["threshold"] = float(threshold)
    out["confusion"] = cm
    return out


# ----------------------------------------------------------------------------- bootstrap
def _resample_weights(
    rng: np.random.Generator, n_rows: int, unit_of_cell: np.ndarray, n_units: int
) -> np.ndarray:
    """(n_rows x n_cells) multiplicities: draw ``n_units`` units with replacement per row and
    give every cell the number of times its unit was drawn (all cells of a drawn subject)."""
    draws = rng.integers(0, n_units, size=(n_rows, n_units))
    flat = (draws + np.arange(n_rows)[:, None] * n_units).ravel()
    unit_counts = np.bincount(flat, minlength=n_rows * n_units).reshape(n_rows, n_units)
    return unit_counts[:, unit_of_cell].astype(np.float64)


def _metrics_for_weights(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    weights: np.ndarray,
    n_bins: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every scalar metric for every row of ``weights`` (and where each is defined)."""
    pred = (p >= threshold).astype(np.int64)
    cells = np.stack(
        [
            (y == 1) & (pred == 1),
            (y == 1) & (pred == 0),
            (y == 0) & (pred == 1),
            (y == 0) & (pred == 0),
        ],
        axis=1,
    ).astype(np.float64)
    tp, fn, fp, tn = (weights @ cells).T
    values, defined = _confusion_metrics(tp, fn, fp, tn)
    auc = _weighted_auc(y, p, weights)
    values["roc_auc"] = auc
    defined["roc_auc"] = ~np.isnan(auc)
    _, pred_cal, conf, idx = _confidence_bins(p, n_bins)
    onehot = np.zeros((y.size, n_bins))
    onehot[np.arange(y.size), idx] = 1.0
    correct = (pred_cal == y).astype(np.float64)
    count = weights @ onehot
    conf_sum = weights @ (onehot * conf[:, None])
    correct_sum = weights @ (onehot * correct[:, None])
    values["ece"] = _ece_from_sums(count, conf_sum, correct_sum)
    defined["ece"] = count.sum(axis=1) > 0
    return values, defined


def bootstrap_distribution(
    y_true: Any,
    prob_all: Any,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-resample metric values (n_boot each) and masks of where each metric is defined.

    With ``groups`` (a subject id per cell) whole subjects are drawn with replacement
    (cluster bootstrap); otherwise single cells are.
    """
    y, p = check_predictions(y_true, prob_all)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if groups is None:
        unit_of_cell = np.arange(y.size)
    else:
        g = np.asarray(groups)
        if g.shape != y.shape:
            raise ValueError(f"groups must give one subject per cell ({y.size}), got {g.shape}")
        _, unit_of_cell = np.unique(g, return_inverse=True)
    n_units = int(unit_of_cell.max()) + 1
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // max(y.size, n_units))
    values: dict[str, list[np.ndarray]] = {m: [] for m in SCALAR_METRICS}
    defined: dict[str, list[np.ndarray]] = {m: [] for m in SCALAR_METRICS}
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        w = _resample_weights(rng, rows, unit_of_cell, n_units)
        v, d = _metrics_for_weights(y, p, threshold, w, n_bins=15)
        for m in SCALAR_METRICS:
            values[m].append(v[m])
            defined[m].append(d[m])
    return (
        {m: np.concatenate(values[m]) for m in SCALAR_METRICS},
        {m: np.concatenate(defined[m]) for m in SCALAR_METRICS},
    )


def bootstrap_ci(
    y_true: Any,
    prob_all: Any,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Percentile bootstrap confidence intervals for every metric in ``SCALAR_METRICS``.

    Returns ``{metric: (lo, hi)}`` for each metric (None when no resample defined it) plus one
    key ``"bootstrap"`` describing the procedure: ``{unit: "subject"|"image", n_units, n_boot,
    n_used: {metric: resamples used}, level, seed, threshold}``.

    With ``groups`` (subject id per cell) this is a cluster bootstrap: subjects are drawn with
    replacement and all their cells taken, because cells of one patient are not independent.
    Resamples where a metric is undefined (a 0/0 in its formula, e.g. AUC or balanced accuracy
    with one class, precision with no cell called ALL) are skipped for that metric instead of
    being counted as 0.0, which would bias the interval downwards.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values, defined = bootstrap_distribution(
        y_true, prob_all, groups, n_boot=n_boot, seed=seed, threshold=threshold
    )
    alpha = 1.0 - level
    out: dict[str, Any] = {}
    n_used: dict[str, int] = {}
    for m in SCALAR_METRICS:
        ok = values[m][defined[m]]
        n_used[m] = int(ok.size)
        if ok.size == 0:
            out[m] = None
            continue
        lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
        out[m] = (float(lo), float(hi))
    n_cells = len(np.asarray(y_true))
    out["bootstrap"] = {
        "unit": "image" if groups is None else "subject",
        "n_units": n_cells if groups is None else int(np.unique(np.asarray(groups)).size),
        "n_boot": int(n_boot),
        "n_used": n_used,
        "level": float(level),
        "seed": int(seed),
        "threshold": float(threshold),
    }
    return out


# ----------------------------------------------------------------------------- tables
def per_subject_table(
    subject: Any, y_true: Any, prob_all: Any, threshold: float = 0.5
) -> pd.DataFrame:
    """One row per subject: subject, label, n_cells, accuracy, mean_prob_all,
    fraction_called_all (share of its cells with prob_all >= threshold); sorted by subject."""
    y, p = check_predictions(y_true, prob_all)
    s = np.asarray(subject)
    if s.shape != y.shape:
        raise ValueError(f"subject must give one id per cell ({y.size}), got {s.shape}")
    df = pd.DataFrame({"subject": s, "label": y, "prob": p})
    df["called"] = (df["prob"] >= threshold).astype(np.float64)
    df["correct"] = (df["called"] == df["label"]).astype(np.float64)
    g = df.groupby("subject", sort=True)
    n_labels = g["label"].nunique()
    mixed = n_labels[n_labels > 1].index.tolist()
    if mixed:
        raise ValueError(
            f"subjects {mixed[:10]} have cells labelled both ALL and Hem; a C-NMC subject is "
            "either a patient or a healthy donor. Check the subject ids parsed from file names "
            "(keep the H prefix of Hem subjects)."
        )
    table = pd.DataFrame(
        {
            "label": g["label"].first().astype(np.int64),
            "n_cells": g.size().astype(np.int64),
            "accuracy": g["correct"].mean(),
            "mean_prob_all": g["prob"].mean(),
            "fraction_called_all": g["called"].mean(),
        }
    )
    return table.reset_index()


def roc_points(y_true: Any, prob_all: Any) -> pd.DataFrame:
    """ROC curve points (fpr, tpr, threshold) for plotting, from scikit-learn's roc_curve.

    The first point (0, 0) has threshold +inf (nothing called ALL). With a single class the
    curve is undefined and an empty frame with the same columns is returned.
    """
    from sklearn.metrics import roc_curve  # local import: only plotting needs it

    y, p = check_predictions(y_true, prob_all)
    if np.unique(y).size < 2:
        return pd.DataFrame({"fpr": [], "tpr": [], "threshold": []}, dtype=np.float64)
    fpr, tpr, thr = roc_curve(y, p, pos_label=1)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr.astype(np.float64)})
