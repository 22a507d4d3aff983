"""Tests of leukopipe.evaluate.metrics and the published-numbers data file."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from leukopipe.evaluate import metrics as lm
from leukopipe.report.published import load_published

# The paper's EfficientNet-B3 test matrix (847 ALL + 406 Hem).
B3 = {"tp": 825, "fn": 22, "fp": 78, "tn": 328}


def _sk_reference(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """scikit-learn values under the documented conventions (zero_division=0, both labels)."""
    kw = {"labels": [0, 1], "zero_division": 0}
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, pos_label=1, zero_division=0),
        "recall": skm.recall_score(y, pred, pos_label=1, zero_division=0),
        "f1": skm.f1_score(y, pred, pos_label=1, zero_division=0),
        "specificity": skm.recall_score(y, pred, pos_label=0, zero_division=0),
        "macro_f1": skm.f1_score(y, pred, average="macro", **kw),
        "weighted_f1": skm.f1_score(y, pred, average="weighted", **kw),
        "mcc": skm.matthews_corrcoef(y, pred),
    }


def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(1, 60))
    frac = rng.choice([0.0, 1.0, rng.uniform(0.05, 0.95)])  # includes one-class samples
    y = (rng.random(n) < frac).astype(int)
    # Probabilities on a coarse grid so ties (and p == 0.5 exactly) occur.
    p = np.round(np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1), int(rng.integers(1, 3)))
    return y, p


# ----------------------------------------------------------------------------- vs scikit-learn
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", range(40))
def test_binary_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, p = _random_case(rng)
    threshold = float(rng.choice([0.5, 0.3, 0.7]))
    pred = (p >= threshold).astype(int)
    got = lm.binary_metrics(y, p, threshold=threshold)
    for name, ref in _sk_reference(y, pred).items():
        assert got[name] == pytest.approx(ref, abs=1e-12), name
    cm = skm.confusion_matrix(y, pred, labels=[0, 1])
    assert got["confusion"] == {"tp": cm[1, 1], "fn": cm[1, 0], "fp": cm[0, 1], "tn": cm[0, 0]}
    assert (got["n"], got["n_all"], got["n_hem"]) == (y.size, int(y.sum()), int((y == 0).sum()))
    if len(set(y.tolist())) == 2:
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    else:
        assert got["roc_auc"] is None
    for name in lm.SCALAR_METRICS:
        if got[name] is not None:
            assert 0.0 <= got[name] <= 1.0 or (name == "mcc" and -1.0 <= got[name] <= 1.0)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("y", "pred"),
    [
        ([1, 1, 1], [1, 1, 1]),  # only ALL, all right
        ([0, 0, 0], [0, 0, 0]),  # only Hem, all right: precision/recall/F1 of ALL are 0/0
        ([1, 1], [0, 0]),  # nothing called ALL
        ([0, 0], [1, 1]),  # only Hem, all called ALL
        ([0, 1], [1, 1]),  # specificity 0, MCC denominator 0
        ([0, 1], [0, 0]),  # precision 0/0
    ],
)
def test_degenerate_cases_match_sklearn(y: list[int], pred: list[int]) -> None:
    ya, pa = np.array(y), np.array(pred)
    got = lm.metrics_from_confusion(**lm.confusion(ya, pa))
    for name, ref in _sk_reference(ya, pa).items():
        assert got[name] == pytest.approx(ref, abs=1e-12), name


def test_all_zero_confusion_is_zero_not_nan() -> None:
    got = lm.metrics_from_confusion(0, 0, 0, 0)
    assert got == {k: 0.0 for k in got}
    assert set(got) == {
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "f1",
        "specificity",
        "macro_f1",
        "weighted_f1",
        "mcc",
    }


def test_explicit_zero_division_values() -> None:
    # Only Hem, all correct: ALL-class precision/recall/F1 are 0/0 -> 0.0; Hem F1 is 1.
    got = lm.metrics_from_confusion(tp=0, fn=0, fp=0, tn=5)
    assert (got["precision"], got["recall"], got["f1"]) == (0.0, 0.0, 0.0)
    assert got["specificity"] == 1.0
    assert got["macro_f1"] == 0.5
    assert got["weighted_f1"] == 1.0
    assert got["balanced_accuracy"] == 1.0  # mean over the classes present (sklearn)
    assert got["mcc"] == 0.0


def test_negative_count_rejected() -> None:
    with pytest.raises(ValueError, match="fp"):
        lm.metrics_from_confusion(1, 1, -1, 1)


def test_bad_inputs_are_explained() -> None:
    with pytest.raises(ValueError, match="0 \\(Hem\\) and 1 \\(ALL\\)"):
        lm.binary_metrics(np.array([0, 2]), np.array([0.1, 0.9]))
    with pytest.raises(ValueError, match="not a logit"):
        lm.binary_metrics(np.array([0, 1]), np.array([-0.1, 3.0]))
    with pytest.raises(ValueError, match="one value per label"):
        lm.binary_metrics(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError, match="empty"):
        lm.binary_metrics(np.array([], dtype=int), np.array([]))


# ----------------------------------------------------------------------------- the paper
def test_paper_worked_example() -> None:
    m = lm.metrics_from_confusion(**B3)
    assert round(100 * m["accuracy"], 2) == 92.02
    assert round(100 * m["precision"], 2) == 91.36
    assert round(100 * m["recall"], 2) == 97.40
    assert round(100 * m["f1"], 2) == 94.29
    assert round(100 * m["macro_f1"], 2) == 90.53
    assert round(100 * m["weighted_f1"], 2) == 91.85


def _matrices_matching(n_all: int, n_hem: int, acc: float, prec: float, rec: float) -> np.ndarray:
    """Every (tp, fp) whose accuracy/precision/recall round to the printed percentages."""
    tp = np.arange(n_all + 1)[:, None].astype(float)
    fp = np.arange(n_hem + 1)[None, :].astype(float)
    tn = n_hem - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        a = 100 * (tp + tn) / (n_all + n_hem)
        p = 100 * tp / (tp + fp)
        r = np.broadcast_to(100 * tp / n_all, a.shape)
    ok = (np.abs(a - acc) <= 0.005) & (np.abs(p - prec) <= 0.005) & (np.abs(r - rec) <= 0.005)
    return np.argwhere(ok)  # rows of (tp, fp)


def test_worked_example_matrix_is_unique() -> None:
    hits = _matrices_matching(847, 406, 92.02, 91.36, 97.40)
    assert hits.tolist() == [[825, 78]]


def test_published_table2_agrees_with_derived_matrices() -> None:
    pub = load_published()["study_a"]["table2"]
    n_all, n_hem = pub["test_set"]["n_all"], pub["test_set"]["n_hem"]
    assert (n_all, n_hem, pub["test_set"]["n"]) == (847, 406, 1253)
    rows = {r["model"]: r for r in pub["rows"]}
    assert list(rows) == [
        "resnet50",
        "resnet101",
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b3",
    ]
    derived = {r["model"]: r for r in pub["derived_confusion"]["rows"]}
    assert set(derived) == set(rows)
    for model, row in rows.items():
        cm = {k: derived[model][k] for k in ("tp", "fn", "fp", "tn")}
        assert cm["tp"] + cm["fn"] == n_all and cm["fp"] + cm["tn"] == n_hem, model
        hits = _matrices_matching(n_all, n_hem, row["accuracy"], row["precision"], row["recall"])
        assert hits.tolist() == [[cm["tp"], cm["fp"]]], model
        m = lm.metrics_from_confusion(**cm)
        for key in ("accuracy", "precision", "recall"):
            assert round(100 * m[key], 2) == pytest.approx(row[key], abs=1e-9), (model, key)
        # Printed F1 is within 0.035 points of the matrix's ALL-class F1 (print rounding).
        assert abs(100 * m["f1"] - row["f1"]) < 0.035, model
    assert derived["efficientnet_b3"] == {"model": "efficientnet_b3", **B3}
    assert rows["efficientnet_b3"]["f1"] == 94.30


def test_published_other_entries() -> None:
    pub = load_published()
    for key in ("study_a", "study_b", "leakage_aware_benchmark", "challenge_winner"):
        assert isinstance(pub[key]["source"], str) and pub[key]["source"].strip(), key
        assert pub[key]["citation"].strip() and pub[key]["url"].startswith("https://"), key
        assert {"image_size", "pretrained", "max_epochs", "runs"} <= set(pub[key]["setting"]), key
    for sub in ("table2", "table3"):
        assert pub["study_a"][sub]["source"].strip()
    b = pub["study_b"]
    assert [(r["model"], r["strategy"], r["val_accuracy"]) for r in b["rows"]] == [
        ("resnet18", "frozen", 65.77),
        ("resnet18", "partial", 76.22),
        ("resnet50", "partial", 78.41),
    ]
    assert b["split"] == "official"
    v = b["validation_set"]
    assert (v["n"], v["n_all"], v["n_hem"]) == (1867, 1219, 648) and v["n_all"] + v["n_hem"] == v["n"]
    assert (b["peak_epoch"], b["train_val_gap"]) == (7, 11.39)
    bench = pub["leakage_aware_benchmark"]
    assert (bench["auroc"], bench["sensitivity"], bench["specificity"]) == (0.913, 0.87, 0.80)
    assert bench["split"] == "official" and bench["ece_calibrated"] == 0.024
    winner = pub["challenge_winner"]
    assert (winner["preliminary"]["weighted_f1"], winner["preliminary"]["balanced_accuracy"]) == (
        92.50, 91.73)
    assert winner["final"]["weighted_f1"] == 91.04 and winner["split"] == "official"
    t3 = pub["study_a"]["table3"]["rows"]
    # quoted as printed, with no metric or test set claimed
    assert len(t3) == 13 and all(set(r) == {"name", "note", "f1_quoted"} for r in t3)
    assert t3[-1]["f1_quoted"] == 94.30  # Study A's own, ALL-class F1
    assert max(r["f1_quoted"] for r in t3) == 94.30 and t3[0]["f1_quoted"] == 92.60
    a = pub["study_a"]
    assert a["table2"]["strategy"] == "full" and a["table2"]["test_set"]["split"] == "image"
    assert (a["labelled"]["n_all"], a["labelled"]["n_hem"]) == (8491, 4037)
    assert a["labelled"]["n_all"] + a["labelled"]["n_hem"] == a["labelled"]["n"] == 12528
    assert (a["train_set"]["n_all"], a["train_set"]["n_hem"]) == (7644, 3631)
    for key in ("study_a", "study_b", "dataset"):
        assert pub[key]["citation"].strip() and pub[key]["url"].startswith("https://"), key


# ----------------------------------------------------------------------------- AUC / ROC
@pytest.mark.parametrize("seed", range(10))
def test_weighted_auc_equals_auc_of_repeated_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    p = np.round(rng.random(n), 1)
    w = rng.integers(0, 4, size=(3, n)).astype(float)
    w[:, :2] = 1.0  # keep both classes
    got = lm._weighted_auc(y, p, w)
    for row, auc in zip(w, got, strict=True):
        rep = np.repeat(np.arange(n), row.astype(int))
        assert auc == pytest.approx(skm.roc_auc_score(y[rep], p[rep]), abs=1e-12)


def test_roc_points() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1)
    pts = lm.roc_points(y, p)
    assert list(pts.columns) == ["fpr", "tpr", "threshold"]
    assert pts["fpr"].is_monotonic_increasing and pts["tpr"].is_monotonic_increasing
    assert (pts["fpr"].iloc[0], pts["tpr"].iloc[0]) == (0.0, 0.0)
    assert (pts["fpr"].iloc[-1], pts["tpr"].iloc[-1]) == (1.0, 1.0)
    assert np.trapezoid(pts["tpr"], pts["fpr"]) == pytest.approx(lm.roc_auc(y, p), abs=1e-12)
    empty = lm.roc_points(np.ones(5, int), np.linspace(0, 1, 5))
    assert empty.empty and list(empty.columns) == ["fpr", "tpr", "threshold"]


# ----------------------------------------------------------------------------- calibration
def _ece_loop(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """Reference ECE written the slow, obvious way (right-closed bins on [0, 1])."""
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = []
        for yi, pi in zip(y, p, strict=True):
            pred = 1 if pi >= 0.5 else 0
            conf = pi if pred == 1 else 1 - pi
            if (lo < conf <= hi) or (b == 0 and conf == 0):
                sel.append((conf, pred == yi))
        if sel:
            conf_mean = sum(c for c, _ in sel) / len(sel)
            acc = sum(ok for _, ok in sel) / len(sel)
            total += len(sel) / len(y) * abs(acc - conf_mean)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_ece_matches_reference_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 2)  # includes bin edges such as 0.6 exactly
    for n_bins in (1, 10, 15):
        assert lm.expected_calibration_error(y, p, n_bins) == pytest.approx(
            _ece_loop(y, p, n_bins), abs=1e-12
        )


def test_ece_hand_example() -> None:
    # Two cells at confidence 0.9 (one right), two at 0.6 (both right).
    y = np.array([1, 0, 0, 1])
    p = np.array([0.9, 0.9, 0.4, 0.6])
    # bin of 0.9: acc 0.5, conf 0.9 -> 0.4 * 2/4; bin of 0.6: acc 1, conf 0.6 -> 0.4 * 2/4
    assert lm.expected_calibration_error(y, p, 10) == pytest.approx(0.4)


def test_ece_calibrated_small_overconfident_large() -> None:
    rng = np.random.default_rng(0)
    q = rng.random(20_000)
    y = (rng.random(q.size) < q).astype(int)  # labels drawn from q: q is calibrated
    assert lm.expected_calibration_error(y, q) < 0.02
    logit = np.log(q / (1 - q))
    sharp = 1 / (1 + np.exp(-6 * logit))  # same ranking, far too confident
    assert lm.expected_calibration_error(y, sharp) > 0.15
    perfect = lm.expected_calibration_error(np.array([0, 1, 1]), np.array([0.0, 1.0, 1.0]))
    assert perfect == 0.0


def test_reliability_table_consistent_with_ece() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = rng.random(500)
    t = lm.reliability_table(y, p, n_bins=15)
    assert list(t.columns) == ["bin", "lo", "hi", "count", "mean_confidence", "accuracy"]
    assert len(t) == 15 and t["count"].sum() == 500
    assert (t.loc[t["hi"] < 0.5, "count"] == 0).all()  # confidence is never below 0.5
    filled = t[t["count"] > 0]
    assert ((filled["mean_confidence"] > filled["lo"]) | (filled["bin"] == 0)).all()
    assert (filled["mean_confidence"] <= filled["hi"]).all()
    assert t.loc[t["count"] == 0, "accuracy"].isna().all()
    ece = (filled["count"] / 500 * (filled["accuracy"] - filled["mean_confidence"]).abs()).sum()
    assert ece == pytest.approx(lm.expected_calibration_error(y, p, 15), abs=1e-12)


# ----------------------------------------------------------------------------- per subject
def test_per_subject_table() -> None:
    subject = np.array(["H1", "H1", "7", "7", "7", "H1"])
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.2, 0.6, 0.9, 0.4, 0.7, 0.1])
    t = lm.per_subject_table(subject, y, p)
    assert list(t.columns) == [
        "subject",
        "label",
        "n_cells",
        "accuracy",
        "mean_prob_all",
        "fraction_called_all",
    ]
    assert t["subject"].tolist() == ["7", "H1"]
    r7 = t.set_index("subject").loc["7"]
    assert (r7["label"], r7["n_cells"]) == (1, 3)
    assert r7["accuracy"] == pytest.approx(2 / 3)
    assert r7["mean_prob_all"] == pytest.approx(2.0 / 3)
    assert r7["fraction_called_all"] == pytest.approx(2 / 3)
    rh = t.set_index("subject").loc["H1"]
    assert rh["accuracy"] == pytest.approx(2 / 3) and rh["fraction_called_all"] == pytest.approx(
        1 / 3
    )
    strict = lm.per_subject_table(subject, y, p, threshold=0.95)
    assert strict["fraction_called_all"].tolist() == [0.0, 0.0]


def test_per_subject_mixed_labels_named() -> None:
    with pytest.raises(ValueError, match=r"\['11'\]"):
        lm.per_subject_table(np.array(["11", "11"]), np.array([0, 1]), np.array([0.2, 0.8]))


# ----------------------------------------------------------------------------- bootstrap
def _clustered_data(n_subj: int = 20, cells: int = 50) -> tuple[np.ndarray, ...]:
    """Half the subjects are classified entirely right, half have 40 % of cells wrong.

    Correctness is a property of the subject, so the effective sample size is the number of
    subjects, not of cells.
    """
    rng = np.random.default_rng(42)
    groups = np.repeat(np.arange(n_subj), cells)
    label_of = np.array([i % 2 for i in range(n_subj)])
    y = label_of[groups]
    hard = np.isin(groups, np.arange(n_subj)[(np.arange(n_subj) // 2) % 2 == 1])
    wrong = hard & (rng.random(y.size) < 0.4)
    p_right = np.where(y == 1, 0.6 + 0.4 * rng.random(y.size), 0.4 * rng.random(y.size))
    p = np.where(wrong, 1 - p_right, p_right)
    return y, p, groups


def test_bootstrap_cluster_wider_than_image_and_contains_point() -> None:
    y, p, groups = _clustered_data()
    point = lm.binary_metrics(y, p)
    img = lm.bootstrap_ci(y, p, n_boot=500, seed=1)
    subj = lm.bootstrap_ci(y, p, groups, n_boot=500, seed=1)
    assert img["bootstrap"]["unit"] == "image" and subj["bootstrap"]["unit"] == "subject"
    assert subj["bootstrap"]["n_units"] == 20 and img["bootstrap"]["n_units"] == y.size
    for name in ("accuracy", "recall", "specificity", "macro_f1", "weighted_f1", "mcc", "roc_auc"):
        w_img = img[name][1] - img[name][0]
        w_subj = subj[name][1] - subj[name][0]
        assert w_subj > 1.5 * w_img, name
        for ci in (img[name], subj[name]):
            assert ci[0] <= point[name] <= ci[1], name
    for name in lm.SCALAR_METRICS:
        assert subj[name][0] <= subj[name][1]
        assert img["bootstrap"]["n_used"][name] == 500


def test_bootstrap_matches_explicit_resampling() -> None:
    """The weighted shortcut equals recomputing every metric on the drawn cells."""
    y, p, groups = _clustered_data(n_subj=8, cells=12)
    values, defined = lm.bootstrap_distribution(y, p, groups, n_boot=30, seed=5)
    rng = np.random.default_rng(5)
    _, unit = np.unique(groups, return_inverse=True)
    counts = lm._resample_weights(rng, 30, unit, 8)
    for b in range(30):
        idx = np.repeat(np.arange(y.size), counts[b].astype(int))
        ref = lm.binary_metrics(y[idx], p[idx])
        for name in lm.SCALAR_METRICS:
            if ref[name] is None:
                assert not defined[name][b]
            else:
                assert values[name][b] == pytest.approx(ref[name], abs=1e-12), (b, name)


def test_bootstrap_subject_draw_takes_whole_subjects() -> None:
    rng = np.random.default_rng(0)
    unit = np.array([0, 0, 0, 1, 2, 2])
    w = lm._resample_weights(rng, 50, unit, 3)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 1] == w[:, 2]).all() and (w[:, 4] == w[:, 5]).all()
    per_subject = w[:, [0, 3, 4]]
    assert (per_subject.sum(axis=1) == 3).all()  # 3 subjects drawn per resample


def test_bootstrap_deterministic_and_seed_sensitive() -> None:
    y, p, groups = _clustered_data()
    a = lm.bootstrap_ci(y, p, groups, n_boot=200, seed=7)
    b = lm.bootstrap_ci(y, p, groups, n_boot=200, seed=7)
    c = lm.bootstrap_ci(y, p, groups, n_boot=200, seed=8)
    assert a == b
    assert a != c


def test_bootstrap_skips_undefined_resamples() -> None:
    # 3 subjects drawn with replacement: one-class resamples are common and must be skipped
    # (counted in n_used), not scored as 0.0.
    y = np.array([1, 1, 0, 0, 1, 1])
    p = np.array([0.9, 0.7, 0.2, 0.6, 0.8, 0.4])
    groups = np.array(["a", "a", "H1", "H1", "b", "b"])
    n_boot = 400
    out = lm.bootstrap_ci(y, p, groups, n_boot=n_boot, seed=0)
    _, unit = np.unique(groups, return_inverse=True)
    w = lm._resample_weights(np.random.default_rng(0), n_boot, unit, 3)
    has_all = w[:, y == 1].sum(axis=1) > 0
    has_hem = w[:, y == 0].sum(axis=1) > 0
    used = out["bootstrap"]["n_used"]
    assert (~has_hem).sum() > 0 and (~has_all).sum() > 0
    assert used["accuracy"] == n_boot
    assert used["recall"] == has_all.sum()
    assert used["specificity"] == has_hem.sum()
    assert used["roc_auc"] == used["balanced_accuracy"] == (has_all & has_hem).sum()
    lo, hi = out["roc_auc"]
    assert 0.0 <= lo <= hi <= 1.0


def test_bootstrap_undefined_masks_per_metric() -> None:
    # Subject "a": ALL, every cell called ALL; subject "H1": Hem, every cell called Hem.
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.1, 0.3])
    groups = np.array(["a", "a", "H1", "H1"])
    values, defined = lm.bootstrap_distribution(y, p, groups, n_boot=200, seed=3)
    _, unit = np.unique(groups, return_inverse=True)
    w = lm._resample_weights(np.random.default_rng(3), 200, unit, 2)
    only_hem = w[:, 0] == 0
    only_all = w[:, 2] == 0
    both = ~only_hem & ~only_all
    assert only_hem.any() and only_all.any() and both.any()
    # Undefined (0/0) for a sample of Hem cells all called Hem / ALL cells all called ALL.
    undefined_hem_only = {
        "recall",
        "precision",
        "f1",
        "balanced_accuracy",
        "macro_f1",
        "mcc",
        "roc_auc",
    }
    undefined_all_only = {"specificity", "balanced_accuracy", "macro_f1", "mcc", "roc_auc"}
    for name in lm.SCALAR_METRICS:
        assert defined[name][both].all(), name
        assert (defined[name][only_hem] == (name not in undefined_hem_only)).all(), name
        assert (defined[name][only_all] == (name not in undefined_all_only)).all(), name
    assert (values["accuracy"] == 1.0).all()


def test_bootstrap_all_undefined_gives_none() -> None:
    out = lm.bootstrap_ci(np.ones(10, int), np.linspace(0.1, 0.9, 10), n_boot=20)
    assert out["roc_auc"] is None and out["bootstrap"]["n_used"]["roc_auc"] == 0
    assert out["accuracy"] is not None


def test_bootstrap_level_orders_widths() -> None:
    y, p, _ = _clustered_data()
    narrow = lm.bootstrap_ci(y, p, n_boot=300, seed=0, level=0.5)
    wide = lm.bootstrap_ci(y, p, n_boot=300, seed=0, level=0.99)
    assert narrow["accuracy"][0] >= wide["accuracy"][0]
    assert narrow["accuracy"][1] <= wide["accuracy"][1]
    with pytest.raises(ValueError, match="level"):
        lm.bootstrap_ci(y, p, level=95)


@pytest.mark.benchmark
def test_bootstrap_is_fast() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.3 * y + 0.7 * rng.random(2000), 0, 1)
    groups = rng.integers(0, 30, 2000)
    start = time.perf_counter()
    lm.bootstrap_ci(y, p, n_boot=1000)
    lm.bootstrap_ci(y, p, groups, n_boot=1000)
    assert time.perf_counter() - start < 6.0


def test_outputs_are_json_friendly() -> None:
    import json

    y, p, groups = _clustered_data(n_subj=6, cells=10)
    m = lm.binary_metrics(y, p)
    ci = lm.bootstrap_ci(y, p, groups, n_boot=50)
    json.dumps(m, allow_nan=False)
    json.dumps(ci, allow_nan=False)
    assert isinstance(lm.per_subject_table(groups, y, p), pd.DataFrame)
