"""Tests of leukopipe.evaluate.referral (confidence-threshold referral to an expert)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from leukopipe.evaluate import referral as rf


def _data(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose errors concentrate at low confidence, like a real classifier."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.65).astype(int)
    conf = 0.5 + 0.5 * rng.random(n)
    right = rng.random(n) < conf  # confident cells are right more often
    called_all = np.where(right, y == 1, y == 0)
    p = np.where(called_all, conf, 1 - conf)
    return y, np.round(p, 3)  # rounding creates ties in confidence


def _brute_force(y: np.ndarray, p: np.ndarray, target: float, criterion: str) -> float | None:
    """Lowest candidate threshold (a confidence value) that reaches the target, or None."""
    conf = np.maximum(p, 1 - p)
    for t in np.unique(conf):  # ascending
        r = rf.apply_threshold(y, p, t)
        key = "accepted_accuracy" if criterion == "accuracy" else "accepted_sensitivity"
        if r[key] is not None and r[key] >= target:
            return float(t)
    return None


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("criterion", ["accuracy", "sensitivity"])
@pytest.mark.parametrize("target", [0.8, 0.9, 0.97])
def test_threshold_reaches_target_and_is_lowest(seed: int, criterion: str, target: float) -> None:
    y, p = _data(seed)
    out = rf.choose_threshold(y, p, target, criterion=criterion)
    expected = _brute_force(y, p, target, criterion)
    assert expected is not None
    assert out["reached"] is True
    applied = rf.apply_threshold(y, p, out["threshold"])
    key = "accepted_accuracy" if criterion == "accuracy" else "accepted_sensitivity"
    assert applied[key] >= target
    assert applied[key] == pytest.approx(out["val_criterion"])
    assert applied["coverage"] == pytest.approx(out["val_coverage"])
    if out["threshold"] == rf.MIN_CONFIDENCE:  # everything accepted already reaches it
        assert applied["coverage"] == 1.0
        assert expected == float(np.min(np.maximum(p, 1 - p)))
    else:
        assert out["threshold"] == pytest.approx(expected)
        assert applied["coverage"] < 1.0


def test_accept_all_when_target_already_met() -> None:
    y, p = _data(0)
    out = rf.choose_threshold(y, p, 0.5)
    assert out == {
        "threshold": 0.5,
        "val_coverage": 1.0,
        "val_criterion": pytest.approx(np.mean((p >= 0.5) == y)),
        "reached": True,
        "criterion": "accuracy",
        "target": 0.5,
    }
    assert rf.apply_threshold(y, p, out["threshold"])["n_referred"] == 0


def test_unreachable_target_returns_best_without_crashing() -> None:
    # Every cell wrong except the single least confident one: accuracy never reaches 0.9.
    y = np.array([1, 0, 1, 0, 1])
    p = np.array([0.1, 0.95, 0.2, 0.7, 0.55])  # only the last (confidence 0.55) is right
    out = rf.choose_threshold(y, p, 0.9)
    assert out["reached"] is False
    # Best accuracy is over all cells (1/5); higher thresholds drop the only right cell.
    assert out["val_criterion"] == pytest.approx(0.2)
    assert out["threshold"] == 0.5 and out["val_coverage"] == 1.0
    # Sensitivity with no ALL among accepted cells at any threshold is undefined, never "reached".
    hem_only = rf.choose_threshold(
        np.zeros(4, int), np.array([0.1, 0.2, 0.3, 0.4]), 0.0, criterion="sensitivity"
    )
    assert hem_only["reached"] is False and hem_only["val_criterion"] is None


def test_unreachable_best_is_lowest_among_ties() -> None:
    # Accuracy of accepted sets by threshold: 0.9 ->1 cell wrong (0), 0.8 -> 1/2, 0.7 -> 2/3,
    # 0.6 -> 2/4. Best 2/3 at threshold 0.7.
    y = np.array([0, 1, 1, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6])
    out = rf.choose_threshold(y, p, 0.99)
    assert out["reached"] is False
    assert out["threshold"] == pytest.approx(0.7)
    assert out["val_criterion"] == pytest.approx(2 / 3)
    assert out["val_coverage"] == pytest.approx(0.75)


def test_invalid_arguments() -> None:
    y, p = _data(1, 20)
    with pytest.raises(ValueError, match="criterion"):
        rf.choose_threshold(y, p, 0.9, criterion="f1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fraction"):
        rf.choose_threshold(y, p, 95)


def test_apply_threshold_counts() -> None:
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.95, 0.4, 0.2, 0.55, 0.8])
    # confidences 0.95, 0.6, 0.8, 0.55, 0.8
    r = rf.apply_threshold(y, p, 0.8)
    assert (r["n_accepted"], r["n_referred"]) == (3, 2)
    assert r["coverage"] == pytest.approx(0.6) and r["referred_fraction"] == pytest.approx(0.4)
    assert r["accepted_accuracy"] == 1.0 and r["accepted_sensitivity"] == 1.0
    r2 = rf.apply_threshold(y, p, 0.5)
    assert r2["n_referred"] == 0
    assert r2["accepted_accuracy"] == pytest.approx(3 / 5)
    assert r2["accepted_sensitivity"] == pytest.approx(2 / 3)
    none = rf.apply_threshold(y, p, 0.99)
    assert none["n_accepted"] == 0 and none["accepted_accuracy"] is None
    assert none["accepted_sensitivity"] is None and none["referred_fraction"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_risk_coverage_monotone_and_consistent(seed: int) -> None:
    y, p = _data(seed, 300)
    rc = rf.risk_coverage(y, p)
    assert list(rc.columns) == [
        "threshold",
        "n_accepted",
        "coverage",
        "accuracy",
        "risk",
        "sensitivity",
    ]
    assert rc["coverage"].is_monotonic_increasing
    assert rc["threshold"].is_monotonic_decreasing
    assert rc["coverage"].iloc[-1] == 1.0
    assert rc["threshold"].is_unique
    np.testing.assert_allclose(rc["risk"], 1 - rc["accuracy"])
    for _, row in rc.sample(10, random_state=seed).iterrows():
        ref = rf.apply_threshold(y, p, row["threshold"])
        assert ref["coverage"] == pytest.approx(row["coverage"])
        assert ref["accepted_accuracy"] == pytest.approx(row["accuracy"])
    # Errors concentrate at low confidence: the most selective quarter beats full coverage.
    top = rc[rc["coverage"] <= 0.25]["accuracy"].iloc[-1]
    assert top > rc["accuracy"].iloc[-1]


def test_coverage_monotone_in_threshold() -> None:
    y, p = _data(3)
    thresholds = np.linspace(0.5, 1.0, 26)
    cov = [rf.apply_threshold(y, p, t)["coverage"] for t in thresholds]
    assert all(a >= b for a, b in itertools.pairwise(cov))
    assert cov[0] == 1.0 and cov[-1] < 0.05
