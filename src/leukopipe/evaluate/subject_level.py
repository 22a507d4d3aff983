"""Subject-level diagnosis: one call per person from the probabilities of their cells.

A clinician diagnoses a patient, not a cell. Two aggregations of a subject's cells are scored:
``mean_prob`` (mean probability of ALL) and ``fraction_all`` (share of cells called ALL at the
cell threshold). Each gets its own decision threshold, chosen on the validation subjects
(highest balanced accuracy, ties broken towards 0.5) and applied unchanged to the test
subjects, whose sensitivity and specificity are reported with Wilson 95 % intervals and the
numbers of subjects they rest on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.evaluate.metrics import per_subject_table

AGGREGATIONS = {"mean_prob": "mean_prob_all", "fraction_all": "fraction_called_all"}
AGGREGATION_TEXT = {
    "mean_prob": "mean probability of ALL",
    "fraction_all": "fraction of cells called ALL",
}


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval of a proportion k/n (None when n = 0); sound for few subjects."""
    if n == 0:
        return None
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def choose_threshold(score: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) maximising balanced accuracy of ``score >= t`` on
    validation subjects; candidates are midpoints between distinct scores (and 0.5)."""
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(label, dtype=np.int64)
    values = np.unique(s)
    candidates = np.unique(np.r_[0.5, (values[1:] + values[:-1]) / 2, values.min() - 1e-9])
    best_t, best_ba = 0.5, -1.0
    for t in candidates:
        called = s >= t
        sens = called[y == 1].mean() if (y == 1).any() else np.nan
        spec = (~called[y == 0]).mean() if (y == 0).any() else np.nan
        ba = float(np.nanmean([sens, spec]))
        closer = abs(t - 0.5) < abs(best_t - 0.5)
        if ba > best_ba + 1e-12 or (abs(ba - best_ba) <= 1e-12 and closer):
            best_t, best_ba = float(t), ba
    return min(max(best_t, 0.0), 1.0), best_ba


def subject_table(
    subject: Any, label: Any, prob_all: Any, cell_threshold: float = 0.5
) -> pd.DataFrame:
    """One row per subject: label, n_cells, mean_prob, fraction_all."""
    t = per_subject_table(subject, label, prob_all, cell_threshold)
    return t.rename(columns={v: k for k, v in AGGREGATIONS.items()})[
        ["subject", "label", "n_cells", *AGGREGATIONS]
    ]


def counts(label: np.ndarray, called: np.ndarray) -> dict[str, Any]:
    """Subject-level confusion counts, sensitivity/specificity with Wilson intervals."""
    y = np.asarray(label, dtype=np.int64)
    c = np.asarray(called, dtype=bool)
    tp, fn = int((c & (y == 1)).sum()), int((~c & (y == 1)).sum())
    tn, fp = int((~c & (y == 0)).sum()), int((c & (y == 0)).sum())
    n_all, n_hem = tp + fn, tn + fp
    return {
        "n_subjects": n_all + n_hem,
        "n_all": n_all,
        "n_hem": n_hem,
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "sensitivity": tp / n_all if n_all else None,
        "specificity": tn / n_hem if n_hem else None,
        "accuracy": (tp + tn) / (n_all + n_hem) if n_all + n_hem else None,
        "sensitivity_ci": wilson(tp, n_all),
        "specificity_ci": wilson(tn, n_hem),
    }


def diagnose(
    test: pd.DataFrame, val: pd.DataFrame | None, cell_threshold: float = 0.5
) -> dict[str, Any]:
    """Subject-level record from cell predictions (columns subject, label, prob_all).

    Thresholds are chosen on ``val`` subjects; without validation predictions the default
    0.5 is used and the record says so.
    """
    t = subject_table(test["subject"], test["label"], test["prob_all"], cell_threshold)
    v = (
        subject_table(val["subject"], val["label"], val["prob_all"], cell_threshold)
        if val is not None and len(val)
        else None
    )
    out: dict[str, Any] = {"cell_threshold": cell_threshold, "aggregations": {}}
    for agg in AGGREGATIONS:
        if v is not None:
            thr, val_ba = choose_threshold(v[agg].to_numpy(), v["label"].to_numpy())
            chosen = {"threshold": thr, "chosen_on": "validation", "val_balanced_accuracy": val_ba}
            chosen["n_val_subjects"] = len(v)
        else:
            chosen = {"threshold": 0.5, "chosen_on": "default"}
        called = t[agg].to_numpy() >= chosen["threshold"]
        t[f"called_{agg}"] = called
        out["aggregations"][agg] = {**chosen, "test": counts(t["label"].to_numpy(), called)}
    out["table"] = t.to_dict(orient="records")
    return out


def pool(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Subject-level result over several disjoint test sets (cross-validation folds), each
    subject decided with its own fold's validation-chosen threshold."""
    table = pd.DataFrame([row for r in records for row in r["table"]])
    out: dict[str, Any] = {"cell_threshold": records[0]["cell_threshold"], "aggregations": {}}
    for agg in AGGREGATIONS:
        thresholds = [r["aggregations"][agg]["threshold"] for r in records]
        out["aggregations"][agg] = {
            "threshold": float(np.mean(thresholds)),
            "thresholds": thresholds,
            "chosen_on": "validation, per fold",
            "test": counts(table["label"].to_numpy(), table[f"called_{agg}"].to_numpy()),
        }
    out["table"] = table.to_dict(orient="records")
    return out
