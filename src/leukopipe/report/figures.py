"""Figures from stored results: ROC curves, confusion matrices, training curves, reliability
diagram and risk-coverage curve. Each is a titled, labelled PNG readable at a glance."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; compute nodes and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from leukopipe.data.cnmc_names import DISPLAY_NAMES
from leukopipe.evaluate import metrics, referral
from leukopipe.report.captions import FIGURES
from leukopipe.workflow.atomic import atomic_path
from leukopipe.workflow.readers import read_parquet

DPI = 120


def _save(fig: plt.Figure, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    plt.close(fig)


def roc_figure(preds: Mapping[str, pd.DataFrame], path: str | Path) -> None:
    """All experiments' test ROC curves on one plot, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for name, df in preds.items():
        pts = metrics.roc_points(df["label"], df["prob_all"])
        if pts.empty:
            continue
        auc = metrics.roc_auc(df["label"], df["prob_all"])
        ax.plot(pts["fpr"], pts["tpr"], lw=1.6, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax.set(
        xlabel="False positive rate (1 - specificity)",
        ylabel="True positive rate (sensitivity, ALL)",
        title="ROC curves on the test set",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)


def confusion_figure(preds: Mapping[str, pd.DataFrame], path: str | Path) -> None:
    """One confusion matrix per experiment (counts and row percentages)."""
    n = max(len(preds), 1)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (name, df) in zip(axes.flat, preds.items(), strict=False):
        cm = metrics.confusion(df["label"], df["pred"])
        mat = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
        ax.imshow(mat, cmap="Blues")
        for (i, j), v in np.ndenumerate(mat):
            share = v / max(mat[i].sum(), 1)
            ax.text(
                j,
                i,
                f"{v}\n{share:.0%}",
                ha="center",
                va="center",
                color="white" if v > mat.max() / 2 else "black",
            )
        ax.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=list(DISPLAY_NAMES),
            yticklabels=list(DISPLAY_NAMES),
            xlabel="predicted",
            ylabel="true",
            title=name,
        )
        ax.title.set_fontsize(8)
    for ax in list(axes.flat)[len(preds) :]:
        ax.axis("off")
    fig.suptitle("Confusion matrices on the test set")
    _save(fig, path)


def training_curves_figure(
    histories: Mapping[str, pd.DataFrame], path: str | Path, best: Mapping[str, int | None]
) -> None:
    """Loss and validation macro-F1 per epoch for every experiment; best epoch marked."""
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (name, h) in enumerate(histories.items()):
        c = f"C{i % 10}"
        ax_loss.plot(h["epoch"], h["train_loss"], c=c, ls="-", label=f"{name} train")
        ax_loss.plot(h["epoch"], h["val_loss"], c=c, ls="--", label=f"{name} val")
        ax_f1.plot(h["epoch"], h["val_macro_f1"], c=c, marker="o", ms=3, label=name)
        b = best.get(name)
        if b is not None and (h["epoch"] == b).any():
            ax_f1.plot([b], h.loc[h["epoch"] == b, "val_macro_f1"], marker="*", ms=14, c=c, mec="k")
    ax_loss.set(
        xlabel="epoch", ylabel="cross-entropy loss", title="Loss (solid: train, dashed: validation)"
    )
    ax_f1.set(
        xlabel="epoch", ylabel="validation macro-F1", title="Validation macro-F1 (star: best epoch)"
    )
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
    ax_f1.legend(fontsize=7)
    _save(fig, path)


def reliability_figure(preds: Mapping[str, pd.DataFrame], path: str | Path) -> None:
    """Reliability diagram: accuracy versus confidence per bin, with ECE in the legend."""
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for name, df in preds.items():
        tab = metrics.reliability_table(df["label"], df["prob_all"], n_bins=10)
        tab = tab[tab["count"] > 0]
        ece = metrics.expected_calibration_error(df["label"], df["prob_all"])
        ax.plot(
            tab["mean_confidence"], tab["accuracy"], marker="o", label=f"{name} (ECE {ece:.3f})"
        )
    ax.plot([0.5, 1], [0.5, 1], ls="--", c="grey", label="perfect calibration")
    ax.set(
        xlabel="confidence of the predicted class",
        ylabel="accuracy",
        title="Reliability diagram (test set)",
        xlim=(0.5, 1.0),
        ylim=(0, 1.02),
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _save(fig, path)


def risk_coverage_figure(
    preds: Mapping[str, pd.DataFrame], path: str | Path, thresholds: Mapping[str, float]
) -> None:
    """Accuracy of accepted cells versus the share accepted; the validation-chosen point marked."""
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for i, (name, df) in enumerate(preds.items()):
        rc = referral.risk_coverage(df["label"], df["prob_all"])
        ax.plot(rc["coverage"], rc["accuracy"], c=f"C{i % 10}", label=name)
        t = thresholds.get(name)
        if t is not None:
            op = referral.apply_threshold(df["label"], df["prob_all"], t)
            if op["accepted_accuracy"] is not None:
                ax.plot(
                    [op["coverage"]], [op["accepted_accuracy"]], marker="D", c=f"C{i % 10}", mec="k"
                )
    ax.set(
        xlabel="coverage (share of cells not referred to an expert)",
        ylabel="accuracy of accepted cells",
        title="Risk-coverage: expert referral (diamond: threshold chosen on validation)",
        xlim=(0, 1.01),
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _save(fig, path)


def _overlay(ax: plt.Axes, image: np.ndarray, cam: np.ndarray, alpha: float) -> None:
    ax.imshow(image)
    ax.imshow(cam, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])


def gradcam_grid_figure(
    rows: list[tuple[str, list[tuple[np.ndarray, np.ndarray, float, str]]]],
    path: str | Path,
    title: str,
    alpha: float = 0.45,
) -> None:
    """Grad-CAM overlays, one row per group (true class x right/wrong), one column per cell;
    each panel shows the cell, its map (red = most evidence for the called class) and p(ALL)."""
    cols = max([len(cells) for _, cells in rows] + [1])
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.9 * cols + 1.2, 2.0 * len(rows)), squeeze=False
    )
    for r, (group, cells) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(cells):
                image, cam, prob, image_id = cells[c]
                _overlay(ax, image, cam, alpha)
                ax.set_title(f"p(ALL) {prob:.2f}\n{image_id[:22]}", fontsize=6)
            else:
                ax.axis("off")
                if c == 0:
                    ax.text(0.5, 0.5, "no such cell", ha="center", va="center", fontsize=8)
        axes[r, 0].set_ylabel(group, fontsize=8)
        axes[r, 0].axis("on")
        if not cells:
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def gradcam_single_figure(
    image: np.ndarray, cam: np.ndarray, prob: float, name: str, path: str | Path, alpha: float
) -> None:
    """One cell beside its Grad-CAM overlay (for scripts/predict.py)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3.3))
    a.imshow(image)
    a.set(xticks=[], yticks=[], title="input")
    _overlay(b, image, cam, alpha)
    b.set_title(f"Grad-CAM, p(ALL) {prob:.3f}")
    fig.suptitle(name, fontsize=8)
    _save(fig, path)


def comparison_figures(rows: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Every figure of the comparison under ``folder``: whole test protocols (single folds are
    drawn through their pooled row), training curves of the trained models."""
    folder = Path(folder)
    shown = rows[rows["fold"].isna() | rows["pooled"]]
    preds = {r.experiment: read_parquet(r.predictions_file) for r in shown.itertuples()}
    trained = rows[(rows["variant"] == "single") & ~rows["pooled"]]
    hist = {
        r.experiment: read_parquet(Path(r.metrics_file).parent / "history.parquet")
        for r in trained.itertuples()
        if (Path(r.metrics_file).parent / "history.parquet").exists()
    }
    best = dict(zip(rows["experiment"], rows["best_epoch"], strict=True))
    # a pooled row has one referral threshold per fold: no single operating point to mark
    thresholds = {r.experiment: r.referral_threshold for r in rows.itertuples() if not r.pooled}
    # one file per figure caption (leukopipe.report.captions.FIGURES names them)
    paths = {stem: folder / f"{stem}.png" for stem in FIGURES}
    roc_figure(preds, paths["roc"])
    confusion_figure(preds, paths["confusion"])
    training_curves_figure(hist, paths["training_curves"], best)
    reliability_figure(preds, paths["reliability"])
    risk_coverage_figure(preds, paths["risk_coverage"], thresholds)
    return list(paths.values())
