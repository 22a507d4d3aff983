"""Evaluation of one trained experiment on its test manifest.

Everything in ``metrics.json`` says what it is: the metric convention (ALL is the positive
class; macro and weighted F1 labelled separately), the interval method (subject-level cluster
bootstrap when subjects are known), the checkpoint and code version that produced it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.data.pixel_store import open_store
from leukopipe.evaluate.eval_record import (
    CONVENTION,
    OutputFiles,
    ScoringSettings,
    build_record,
    checkpoint_block,
    finish_record,
    train_val_gap,
    training_block,
    write_outputs,
)
from leukopipe.evaluate.inference import Classifier, load_classifier, predict_store
from leukopipe.evaluate.tta import predict_store_tta
from leukopipe.plumbing import atomic
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.readers import read_parquet

__all__ = [
    "CONVENTION",
    "EvalSettings",
    "EvaluationJob",
    "GradcamSettings",
    "evaluate",
    "evaluate_experiment",
    "score",
    "train_val_gap",
]

# the step's own name, which its log lines have always carried
log = logging.getLogger("evaluate")


@dataclass(frozen=True, kw_only=True)
class EvalSettings(ScoringSettings):
    """Scoring settings plus inference batch size and whether to score with 8-fold TTA too."""

    batch_size: int
    tta: bool = False


def score(
    clf: Classifier,
    manifest: pd.DataFrame,
    pixels_path: str | Path,
    batch_size: int,
    tta: bool = False,
) -> Any:
    """Probability of ALL for every manifest row, from its pixel store; with ``tta`` the pair
    (8-view dihedral mean, plain) from one pass over the views."""
    pixels = open_store(pixels_path)
    if len(pixels) != len(manifest):
        raise InvalidInputError(
            f"{pixels_path}: {len(pixels)} images but the manifest has {len(manifest)} rows"
            " (rerun the resize step)"
        )
    rows = manifest["store_row"].to_numpy() if "store_row" in manifest else np.arange(len(manifest))
    if tta:
        mean, plain = predict_store_tta(clf, pixels, batch_size)
        return mean[rows], plain[rows]
    return predict_store(clf, pixels, batch_size)[rows]


def evaluate(
    clf: Classifier,
    test: pd.DataFrame,
    test_pixels: str | Path,
    val: pd.DataFrame,
    val_pixels: str | Path,
    settings: EvalSettings,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]]:
    """Per variant ("plain", and "tta" when ``settings.tta``): test predictions, validation
    predictions and the scored blocks of the record. Validation chooses the referral and
    subject-level thresholds."""
    batch_size = settings.batch_size
    if not settings.tta:
        p_test = score(clf, test, test_pixels, batch_size)
        p_val = score(clf, val, val_pixels, batch_size)
        return {"plain": build_record(test, p_test, val, p_val, settings)}
    t_mean, t_plain = score(clf, test, test_pixels, batch_size, tta=True)
    v_mean, v_plain = score(clf, val, val_pixels, batch_size, tta=True)
    return {
        "plain": build_record(test, t_plain, val, v_plain, settings),
        "tta": build_record(test, t_mean, val, v_mean, settings),
    }


@dataclass(frozen=True)
class GradcamSettings:
    """A Grad-CAM grid of sample test cells: where, cells per group, feature stage, opacity."""

    out: Path
    per_group: int
    stage: int
    alpha: float


@dataclass(frozen=True, kw_only=True)
class EvaluationJob:
    """Everything the evaluate step reads and writes for one trained experiment.

    ``tta_outputs`` (all three paths, or none) asks for the 8-fold TTA variant too;
    ``history_out`` copies the history beside the metrics so eval/ alone makes tables.
    """

    checkpoint: Path
    history: Path | None
    run_record: Path | None
    test_manifest: Path
    test_pixels: Path
    val_manifest: Path
    val_pixels: Path
    settings: EvalSettings
    experiment: dict[str, Any]
    outputs: OutputFiles
    tta_predictions: Path | None = None
    tta_val_predictions: Path | None = None
    tta_metrics: Path | None = None
    history_out: Path | None = None
    gradcam: GradcamSettings | None = None
    device: str | None = None


def evaluate_experiment(job: EvaluationJob) -> dict[str, Any]:
    """The evaluate step: score the checkpoint on test (and validation, which chooses the
    thresholds), write predictions and metrics.json per variant, the history copy and the
    Grad-CAM grid when asked, log a summary; returns the plain variant's record."""
    clf = load_classifier(job.checkpoint, job.device)
    test = read_parquet(job.test_manifest)
    val = read_parquet(job.val_manifest)
    tta = job.tta_metrics is not None
    if tta and not (job.tta_predictions and job.tta_val_predictions):
        raise InvalidInputError(
            "--tta-metrics-out needs --tta-predictions-out and --tta-val-predictions-out"
        )
    settings = dataclasses.replace(job.settings, tta=tta)
    variants = evaluate(clf, test, job.test_pixels, val, job.val_pixels, settings)
    history = read_parquet(job.history) if job.history else pd.DataFrame()
    training = training_block(clf.meta, history, job.run_record)
    checkpoint = checkpoint_block(job.checkpoint)
    outputs = {"plain": job.outputs}
    if tta:
        outputs["tta"] = OutputFiles(job.tta_predictions, job.tta_metrics, job.tta_val_predictions)
    name = job.experiment.get("name", "experiment")
    for variant, (predictions, val_predictions, scored) in variants.items():
        experiment = {
            **job.experiment,
            "name": f"{name}+tta" if variant == "tta" else name,
            "variant": "tta" if variant == "tta" else "single",
        }
        record = finish_record(
            scored, experiment=experiment, outputs=outputs[variant], training=training,
            checkpoint=checkpoint,
        )
        write_outputs(outputs[variant], predictions, val_predictions, record)
    if job.history_out:
        atomic.write_parquet(job.history_out, history)
    if job.gradcam:
        title = job.experiment.get("name", job.checkpoint.parent.name)
        gradcam_grid(
            clf, variants["plain"][0], test, job.test_pixels, job.gradcam.out,
            per_group=job.gradcam.per_group, stage=job.gradcam.stage, alpha=job.gradcam.alpha,
            title=f"Grad-CAM on test cells: {title}",
        )
    record = variants["plain"][2]
    m = record["metrics"]
    log.info(
        "test n=%d: accuracy %.4f, F1(ALL) %.4f, weighted F1 %.4f, AUC %s",
        record["n_test"], m["accuracy"], m["f1"], m["weighted_f1"], m["roc_auc"],
    )
    return record


def gradcam_grid(
    clf: Classifier,
    predictions: pd.DataFrame,
    test: pd.DataFrame,
    test_pixels: str | Path,
    out: str | Path,
    *,
    per_group: int,
    stage: int,
    alpha: float,
    title: str = "Grad-CAM",
) -> list[tuple[str, list[int]]]:
    """Grad-CAM overlays of sample test cells (both classes, called right and wrong) as one
    PNG grid; returns the chosen manifest rows per group."""
    from leukopipe.evaluate import (
        gradcam,
        gradcam_figures,  # deferred: matplotlib only for the grid
    )

    pixels = open_store(test_pixels)
    rows = test["store_row"].to_numpy() if "store_row" in test else np.arange(len(test))
    chosen = gradcam.select_cells(predictions, per_group)
    panels = []
    for group, positions in chosen:
        cells = []
        if positions:
            images = np.asarray(pixels[np.sort(rows[positions])])
            # keep the selection's order (np.sort only for the memory map's sake)
            order = np.argsort(np.argsort(rows[positions]))
            images = images[order]
            cams, probs = gradcam.gradcam(clf, images, stage=stage)
            ids = predictions["image_id"].to_numpy()[positions]
            cells = [
                (images[i], cams[i], float(probs[i]), str(ids[i])) for i in range(len(positions))
            ]
        panels.append((group, cells))
    gradcam_figures.gradcam_grid_figure(panels, out, title, alpha)
    return chosen
