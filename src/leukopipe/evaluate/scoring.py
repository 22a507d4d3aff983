"""Evaluation of one trained experiment on its test manifest.

Everything in ``metrics.json`` says what it is: the metric convention (ALL is the positive
class; macro and weighted F1 labelled separately), the interval method (subject-level cluster
bootstrap when subjects are known), the checkpoint and code version that produced it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.data.pixel_store import open_store
from leukopipe.evaluate.eval_record import CONVENTION, build_record
from leukopipe.evaluate.inference import Classifier, predict_store
from leukopipe.evaluate.tta import predict_store_tta
from leukopipe.plumbing.errors import InvalidInputError

__all__ = ["CONVENTION", "evaluate", "score", "train_val_gap"]


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


def evaluate(
    clf: Classifier,
    test: pd.DataFrame,
    test_pixels: str | Path,
    val: pd.DataFrame,
    val_pixels: str | Path,
    *,
    threshold: float,
    n_boot: int,
    referral_target: float,
    referral_criterion: str,
    batch_size: int,
    seed: int = 0,
    tta: bool = False,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]]:
    """Per variant ("plain", and "tta" when asked): test predictions, validation predictions
    and the metrics record. Validation chooses the referral and subject-level thresholds."""
    opts = {
        "threshold": threshold,
        "n_boot": n_boot,
        "seed": seed,
        "referral_target": referral_target,
        "referral_criterion": referral_criterion,
    }
    if not tta:
        p_test = score(clf, test, test_pixels, batch_size)
        p_val = score(clf, val, val_pixels, batch_size)
        return {"plain": build_record(test, p_test, val, p_val, **opts)}
    t_mean, t_plain = score(clf, test, test_pixels, batch_size, tta=True)
    v_mean, v_plain = score(clf, val, val_pixels, batch_size, tta=True)
    return {
        "plain": build_record(test, t_plain, val, v_plain, **opts),
        "tta": build_record(test, t_mean, val, v_mean, **opts),
    }


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
