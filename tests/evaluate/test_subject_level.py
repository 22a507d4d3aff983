"""Subject-level diagnosis: thresholds chosen on validation, counts, Wilson intervals, pooling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leukopipe.evaluate import subject_level


def cells(spec: dict[str, tuple[int, list[float]]]) -> pd.DataFrame:
    """Cell predictions from {subject: (label, [prob_all per cell])}."""
    rows = [
        {"subject": s, "label": y, "prob_all": p} for s, (y, probs) in spec.items() for p in probs
    ]
    return pd.DataFrame(rows)


def test_wilson_matches_known_values():
    lo, hi = subject_level.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = subject_level.wilson(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert subject_level.wilson(0, 0) is None


def test_threshold_is_chosen_on_validation_and_applied_to_test():
    # validation: ALL subjects' mean probability 0.35-0.45, Hem 0.1-0.2 -> a threshold below
    # 0.5 separates them; at the default 0.5 every ALL subject would be missed
    val = cells(
        {
            "1": (1, [0.4, 0.3]),
            "2": (1, [0.45, 0.45]),
            "H1": (0, [0.1, 0.2]),
            "H2": (0, [0.2, 0.2]),
        }
    )
    test = cells(
        {
            "3": (1, [0.42, 0.38]),  # mean 0.40: ALL with the chosen threshold
            "4": (1, [0.1, 0.1]),  # missed
            "H3": (0, [0.15, 0.15]),
            "H4": (0, [0.3, 0.34]),  # mean 0.32: called ALL by mistake
            "H5": (0, [0.05, 0.05]),
        }
    )
    out = subject_level.diagnose(test, val)
    mp = out["aggregations"]["mean_prob"]
    assert mp["chosen_on"] == "validation" and 0.2 < mp["threshold"] <= 0.35
    assert mp["val_balanced_accuracy"] == 1.0
    t = mp["test"]
    assert (t["n_subjects"], t["n_all"], t["n_hem"]) == (5, 2, 3)
    assert (t["tp"], t["fn"], t["tn"], t["fp"]) == (1, 1, 2, 1)
    assert t["sensitivity"] == 0.5 and t["specificity"] == pytest.approx(2 / 3)
    assert t["sensitivity_ci"] == pytest.approx(subject_level.wilson(1, 2))
    # fraction of cells called ALL at 0.5 is 0 for every validation subject: no threshold
    # separates them, and the tie goes to the one nearest 0.5
    fa = out["aggregations"]["fraction_all"]
    assert fa["val_balanced_accuracy"] == 0.5


def test_pooling_keeps_each_folds_decisions():
    a = subject_level.diagnose(
        cells({"1": (1, [0.9]), "H1": (0, [0.2])}), cells({"2": (1, [0.8]), "H2": (0, [0.1])})
    )
    b = subject_level.diagnose(
        cells({"3": (1, [0.3]), "H3": (0, [0.6])}), cells({"4": (1, [0.7]), "H4": (0, [0.2])})
    )
    pooled = subject_level.pool([a, b])["aggregations"]["mean_prob"]
    t = pooled["test"]
    assert t["n_subjects"] == 4 and (t["tp"], t["fn"], t["tn"], t["fp"]) == (1, 1, 1, 1)
    assert len(pooled["thresholds"]) == 2
    assert np.isclose(pooled["threshold"], np.mean(pooled["thresholds"]))
