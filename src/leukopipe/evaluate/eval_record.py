"""The evaluation record of one set of test predictions (torch-free): metrics.json.

Single models, test-time augmentation, soft-voting ensembles, k-NN probes and pooled
cross-validation folds all go through the same code, so every row of the comparison carries the
same metrics, the same subject-bootstrap intervals, the same validation-chosen referral and
subject-level diagnosis. The whole record (those blocks plus experiment, training, checkpoint,
files and provenance) is put together by :func:`finish_record`, written by
:func:`write_outputs` and read back by :func:`read_metrics`, here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.evaluate import calibration, metrics, referral, subject_level
from leukopipe.plumbing import atomic
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.hashing import sha256_file
from leukopipe.plumbing.provenance import provenance
from leukopipe.plumbing.readers import read_json
from leukopipe.plumbing.schema import defaults

CONVENTION = (
    "label 1 = ALL (positive class), 0 = Hem; precision/recall/f1 are ALL-class values (the"
    " studies' convention); macro_f1 averages both classes; weighted_f1 weights them by support"
    " (the C-NMC challenge's ranking metric); fractions in [0, 1]"
)
PREDICTION_COLUMNS = [
    "image_id", "subject", "label", "prob_all", "pred", "confidence", "referred",
    "prob_all_calibrated",
]


@dataclass(frozen=True, kw_only=True)
class ScoringSettings:
    """How one set of probabilities of ALL is scored: the call threshold, the bootstrap
    resamples and seed of the intervals, the referral target and what it is about."""

    threshold: float
    n_boot: int
    referral_target: float
    referral_criterion: str
    seed: int = 0

    @classmethod
    def from_config(cls, **overrides: Any) -> Any:
        """The config schema's ``evaluate`` defaults (``bootstrap`` is ``n_boot``), with
        ``overrides``; a subclass gets those of its own fields the schema has."""
        d = defaults("evaluate")
        known = {**d, "n_boot": d["bootstrap"]}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in known.items() if k in names}, **overrides})

    @classmethod
    def from_flags(cls, flags: Any, **more: Any) -> Any:
        """From a step's parsed flags (``--threshold``, ``--bootstrap``, ``--referral-target``,
        ``--referral-criterion`` and, where the step has it, ``--seed``), plus ``more`` fields."""
        return cls(
            threshold=flags.threshold,
            n_boot=flags.bootstrap,
            seed=getattr(flags, "seed", 0),
            referral_target=flags.referral_target,
            referral_criterion=flags.referral_criterion,
            **more,
        )


@dataclass(frozen=True)
class OutputFiles:
    """Where one record and its predictions are written."""

    predictions: Path
    metrics: Path
    val_predictions: Path | None = None


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
    settings: ScoringSettings | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(test predictions, validation predictions, scored blocks of the record) for one set of
    probabilities; ``settings`` default to the config schema's.

    Validation chooses the referral threshold and the subject-level thresholds; test is only
    scored with them.
    """
    s = settings or ScoringSettings.from_config()
    threshold, n_boot, seed = s.threshold, s.n_boot, s.seed
    referral_target, referral_criterion = s.referral_target, s.referral_criterion
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


def _run_record(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    if path is None:
        return None
    record = read_json(path)
    return {k: record.get(k) for k in ("host", "time_utc", "code_version", "sha256")}


def training_block(
    meta: dict[str, Any], history: pd.DataFrame, run_record: str | os.PathLike[str] | None
) -> dict[str, Any]:
    """The ``training`` block of a trained model's record, from its checkpoint's metadata, its
    history and the provenance.json written beside the checkpoint."""
    return {
        **train_val_gap(history, meta.get("best_epoch")),
        "backbone": meta["backbone"],
        "strategy": meta.get("strategy"),
        "partial_stages": meta.get("partial_stages"),
        "image_size": meta["image_size"],
        "train_config": meta.get("train_config"),
        # the fetch_weights record (timm tag, its pretraining data, sha256); None: no weights
        "weights": (meta.get("extra_meta") or {}).get("weights"),
        "checkpoint_code_version": (meta.get("provenance") or {}).get("code_version"),
        # host and time of the training, which the checkpoint leaves out (identical bytes)
        "run": _run_record(run_record),
    }


def checkpoint_block(checkpoint: str | os.PathLike[str]) -> dict[str, str]:
    """The ``checkpoint`` block: the file scored and its sha256 (predict checks against it)."""
    return {"path": str(checkpoint), "sha256": sha256_file(checkpoint)}


def finish_record(
    scored: dict[str, Any],
    *,
    experiment: dict[str, Any],
    outputs: OutputFiles,
    training: dict[str, Any] | None = None,
    checkpoint: dict[str, str] | None = None,
    members: list[str] | None = None,
) -> dict[str, Any]:
    """The whole metrics.json record: the scored blocks (``build_record`` or ``pooled_record``:
    metrics, intervals, calibration, referral, subject level) with the experiment, training,
    checkpoint and ensemble members given, the files written beside it and the provenance.
    Updates ``scored`` in place and returns it."""
    scored["experiment"] = experiment
    for key, block in (("training", training), ("checkpoint", checkpoint), ("members", members)):
        if block is not None:
            scored[key] = block
    files: dict[str, Any] = {"predictions": outputs.predictions.name}
    if not experiment.get("pooled"):  # pooled folds have no validation set of their own
        val = outputs.val_predictions
        files["val_predictions"] = val.name if val else None
    scored["files"] = files
    scored["provenance"] = provenance()
    return scored


def write_outputs(
    outputs: OutputFiles,
    predictions: pd.DataFrame,
    val_predictions: pd.DataFrame | None,
    record: dict[str, Any],
) -> None:
    """Predictions, validation predictions (when a file is given) and metrics.json, each
    written atomically, the record last."""
    atomic.write_parquet(outputs.predictions, predictions)
    if outputs.val_predictions is not None and val_predictions is not None:
        atomic.write_parquet(outputs.val_predictions, val_predictions)
    atomic.write_json(outputs.metrics, record)


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A metrics.json record as written by :func:`write_outputs`. A damaged file, or one that
    holds no record, raises InvalidInputError naming it; a missing one stays FileNotFoundError."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise InvalidInputError(
            f"{path}: not a metrics.json record (a JSON object expected, found"
            f" {type(record).__name__}); delete it and rerun the step that writes it"
        )
    return record
