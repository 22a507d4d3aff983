"""Temperature scaling: probabilities that mean what they say, fitted on validation only.

The model's two logits z_Hem, z_ALL give p(ALL) = sigmoid(z_ALL - z_Hem). Temperature scaling
(Guo et al., 2017) divides both logits by one T > 0 fitted to minimise the validation set's
negative log-likelihood, so the calibrated probability is sigmoid(logit(p) / T): it is computed
from the stored p alone (no model needed) and never changes a call (logit(p) keeps its sign) or
the order of confidences. ECE and Brier score on test, before and after, carry paired
subject-bootstrap intervals. Study B's referral threshold is chosen again on the calibrated
validation probabilities: since the order of confidences is unchanged, the same cells are
referred, and the threshold now reads as a calibrated probability of the called class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from leukopipe.evaluate import metrics, referral

METHOD = (
    "temperature scaling: p_cal = sigmoid(logit(p) / T), T fitted on the validation set by"
    " minimising its negative log-likelihood"
)
# probabilities 0 and 1 (float32 softmax saturates) as finite logits, |logit| <= 27.6
_CLIP = 1e-12
# search range of T: far beyond what a trained CNN needs (typical T: 0.5-5)
_LOG_T_BOUNDS = (np.log(0.01), np.log(100.0))


def _logit(prob_all: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(prob_all, dtype=np.float64), _CLIP, 1.0 - _CLIP)
    return np.log(p) - np.log1p(-p)


def fit_temperature(y_val: Any, p_val: Any) -> float:
    """The T > 0 that minimises the mean negative log-likelihood of sigmoid(logit(p) / T)."""
    y, p = metrics.check_predictions(y_val, p_val)
    if y.size == 0:
        raise ValueError("cannot fit a temperature without validation cells")
    z = _logit(p)
    sign = 2.0 * y - 1.0

    def nll(log_t: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -sign * z / np.exp(log_t))))

    best = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded",
                           options={"xatol": 1e-6})
    return float(np.exp(best.x))


def apply_temperature(prob_all: Any, temperature: float) -> np.ndarray:
    """Calibrated probability of ALL: sigmoid(logit(p) / T)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return expit(_logit(np.asarray(prob_all)) / temperature)


def _before_after(y: np.ndarray, p: np.ndarray, p_cal: np.ndarray) -> dict[str, Any]:
    return {
        "ece": {"before": metrics.expected_calibration_error(y, p),
                "after": metrics.expected_calibration_error(y, p_cal)},
        "brier": {"before": metrics.brier_score(y, p), "after": metrics.brier_score(y, p_cal)},
    }


def scores(
    y_test: np.ndarray,
    p_test: np.ndarray,
    p_test_cal: np.ndarray,
    subjects: np.ndarray,
    *,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """ECE and Brier score before and after calibration on test, with paired subject-bootstrap
    95 % intervals."""
    ci = metrics.calibration_ci(
        y_test, {"before": p_test, "after": p_test_cal}, subjects, n_boot=n_boot, seed=seed
    )
    return {"test": _before_after(y_test, p_test, p_test_cal), "ci": ci}


def calibration_record(
    y_test: np.ndarray,
    p_test: np.ndarray,
    subjects: np.ndarray,
    y_val: np.ndarray,
    p_val: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    referral_target: float,
    referral_criterion: str,
) -> dict[str, Any]:
    """The ``calibration`` block of metrics.json: T fitted on validation, ECE and Brier score
    before/after on validation and test (test with intervals), and the referral threshold
    chosen on the calibrated validation probabilities, applied to the calibrated test ones."""
    t = fit_temperature(y_val, p_val)
    v_cal, t_cal = apply_temperature(p_val, t), apply_temperature(p_test, t)
    chosen = referral.choose_threshold(y_val, v_cal, referral_target, referral_criterion)
    return {
        "method": METHOD,
        "fitted_on": "validation",
        "temperature": t,
        "val": _before_after(y_val, p_val, v_cal),
        **scores(y_test, p_test, t_cal, subjects, n_boot=n_boot, seed=seed),
        "referral": {
            "chosen_on": "validation, calibrated probabilities",
            **chosen,
            "test": referral.apply_threshold(y_test, t_cal, chosen["threshold"]),
        },
    }
