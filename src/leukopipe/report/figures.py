"""Figures from stored results: ROC curves, confusion matrices, training curves, reliability
diagram and risk-coverage curve. Each is a titled, labelled PNG readable at a glance."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; compute nodes and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from leukopipe.data.cnmc_names import DISPLAY_NAMES
from leukopipe.evaluate import metrics, referral
from leukopipe.plumbing.figure_file import save_figure
from leukopipe.plumbing.readers import read_parquet
from leukopipe.report.captions import FIGURES
from leukopipe.report.compare import split_label

DPI = 120
WIDTH = 8.3  # inches: 1,000 px at DPI, the width the report shows figures at
LINE_STYLES = ("-", "--", ":", "-.")


def _save(fig: plt.Figure, path: str | Path) -> None:
    # "tight" keeps a legend placed below the axes inside the image
    save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def line_styles(n: int) -> list[dict[str, Any]]:
    """``n`` colour and line-style pairs, none repeated: tab10 up to 10 curves, tab20 up to 20,
    then tab20's colours again with dashed, dotted and dash-dotted lines."""
    colours = plt.get_cmap("tab10" if n <= 10 else "tab20").colors
    return [
        {"color": colours[i % len(colours)], "ls": LINE_STYLES[(i // len(colours)) % 4]}
        for i in range(n)
    ]


def _legend_below(ax: plt.Axes, n: int) -> None:
    # below the axes, where long model names neither cover curves nor shrink them
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncol=1 if n <= 8 else 2, frameon=False)


def luminance(rgb: Sequence[float]) -> float:
    """Relative luminance (WCAG 2) of an sRGB colour with channels in 0..1."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """WCAG contrast ratio of two colours, 1 (none) to 21 (black on white)."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colour(background: Sequence[float]) -> str:
    """Black or white, whichever stands out more from ``background``."""
    black = contrast_ratio(background, (0, 0, 0))
    white = contrast_ratio(background, (1, 1, 1))
    return "black" if black >= white else "white"


def confusion_axes(ax: plt.Axes, mat: np.ndarray, title: str) -> None:
    """One confusion matrix: each cell's count and row share, in the colour that contrasts
    most with that cell's own background (taken from the colour scale that painted it)."""
    im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=max(int(mat.max()), 1))
    for (i, j), v in np.ndenumerate(mat):
        share = v / max(mat[i].sum(), 1)
        ax.text(j, i, f"{v}\n{share:.0%}", ha="center", va="center", fontsize=10,
                color=text_colour(im.cmap(im.norm(v))))
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=list(DISPLAY_NAMES),
        yticklabels=list(DISPLAY_NAMES),
        xlabel="predicted",
        ylabel="true",
    )
    ax.set_title(textwrap.fill(title, 34), fontsize=8)


def roc_figure(preds: Mapping[str, pd.DataFrame], path: str | Path) -> None:
    """All experiments' test ROC curves on one plot, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(WIDTH, 6.5))
    for style, (name, df) in zip(line_styles(len(preds)), preds.items(), strict=True):
        pts = metrics.roc_points(df["label"], df["prob_all"])
        if pts.empty:
            continue
        auc = metrics.roc_auc(df["label"], df["prob_all"])
        ax.plot(pts["fpr"], pts["tpr"], lw=1.6, label=f"{name} (AUC {auc:.3f})", **style)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax.set(
        xlabel="False positive rate (1 - specificity)",
        ylabel="True positive rate (sensitivity, ALL)",
        title="ROC curves on the test set",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    _legend_below(ax, len(preds) + 1)
    ax.grid(alpha=0.3)
    _save(fig, path)


def confusion_figure(preds: Mapping[str, pd.DataFrame], path: str | Path) -> None:
    """One confusion matrix per experiment (counts and row percentages)."""
    n = max(len(preds), 1)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH / 4 * cols * 1.2, 3.0 * rows),
                             squeeze=False)
    for ax, (name, df) in zip(axes.flat, preds.items(), strict=False):
        cm = metrics.confusion(df["label"], df["pred"])
        confusion_axes(ax, np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]]), name)
    for ax in list(axes.flat)[len(preds) :]:
        ax.axis("off")
    fig.suptitle("Confusion matrices on the test set")
    _save(fig, path)


def training_curves_figure(
    histories: Mapping[str, pd.DataFrame], path: str | Path, best: Mapping[str, int | None]
) -> None:
    """Loss and validation macro-F1 per epoch for every experiment; best epoch marked."""
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(WIDTH * 1.3, 5))
    # colour tells the models apart; solid and dashed tell train from validation loss
    colours = [st["color"] for st in line_styles(len(histories))]
    markers = "os^Dv<>ph*"
    for i, (c, (name, h)) in enumerate(zip(colours, histories.items(), strict=True)):
        marker = markers[(i // len(set(colours))) % len(markers)] if len(histories) > 20 else "o"
        ax_loss.plot(h["epoch"], h["train_loss"], c=c, ls="-")
        ax_loss.plot(h["epoch"], h["val_loss"], c=c, ls="--")
        ax_f1.plot(h["epoch"], h["val_macro_f1"], c=c, marker=marker, ms=3, label=name)
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
    fig.legend(*ax_f1.get_legend_handles_labels(), loc="upper center", fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0), ncol=1 if len(histories) <= 8 else 2)
    _save(fig, path)


def reliability_figure(
    preds: Mapping[str, pd.DataFrame],
    path: str | Path,
    title: str = "Reliability diagram (test set)",
) -> None:
    """Reliability diagram: accuracy versus confidence per bin, with ECE in the legend."""
    fig, ax = plt.subplots(figsize=(WIDTH, 6.5))
    for style, (name, df) in zip(line_styles(len(preds)), preds.items(), strict=True):
        tab = metrics.reliability_table(df["label"], df["prob_all"], n_bins=10)
        tab = tab[tab["count"] > 0]
        ece = metrics.expected_calibration_error(df["label"], df["prob_all"])
        ax.plot(
            tab["mean_confidence"], tab["accuracy"], marker="o", label=f"{name} (ECE {ece:.3f})",
            **style,
        )
    ax.plot([0.5, 1], [0.5, 1], ls="--", c="grey", label="perfect calibration")
    ax.set(
        xlabel="confidence of the predicted class",
        ylabel="accuracy",
        title=title,
        xlim=(0.5, 1.0),
        ylim=(0, 1.02),
    )
    _legend_below(ax, len(preds) + 1)
    ax.grid(alpha=0.3)
    _save(fig, path)


def risk_coverage_figure(
    preds: Mapping[str, pd.DataFrame], path: str | Path, thresholds: Mapping[str, float]
) -> None:
    """Accuracy of accepted cells versus the share accepted; the validation-chosen point marked."""
    fig, ax = plt.subplots(figsize=(WIDTH, 6.5))
    for style, (name, df) in zip(line_styles(len(preds)), preds.items(), strict=True):
        rc = referral.risk_coverage(df["label"], df["prob_all"])
        ax.plot(rc["coverage"], rc["accuracy"], label=name, **style)
        t = thresholds.get(name)
        if t is not None:
            op = referral.apply_threshold(df["label"], df["prob_all"], t)
            if op["accepted_accuracy"] is not None:
                ax.plot([op["coverage"]], [op["accepted_accuracy"]], marker="D",
                        c=style["color"], mec="k")
    ax.set(
        xlabel="coverage (share of cells not referred to an expert)",
        ylabel="accuracy of accepted cells",
        title="Risk-coverage: expert referral (diamond: threshold chosen on validation)",
        xlim=(0, 1.01),
    )
    ax.title.set_fontsize(9)
    _legend_below(ax, len(preds))
    ax.grid(alpha=0.3)
    _save(fig, path)


def readable_names(rows: pd.DataFrame) -> dict[str, str]:
    """Experiment id -> the name a figure's legend shows: the model as the tables name it and
    its test protocol (the fold or seed only where two rows would otherwise read the same)."""
    base = {r.experiment: f"{r.model}, {split_label(r)}" for r in rows.itertuples()}
    counts = pd.Series(list(base.values())).value_counts()
    out = {}
    for r in rows.itertuples():
        name = base[r.experiment]
        if counts[name] > 1:
            extra = [f"seed {int(r.seed)}"] if r.seed is not None and not pd.isna(r.seed) else []
            if r.fold is not None and not pd.isna(r.fold):
                extra.append(f"fold {int(r.fold)}")
            name = f"{name} ({', '.join(extra) or r.experiment})"
        out[r.experiment] = name
    return out


def comparison_figures(rows: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Every figure of the comparison under ``folder``: whole test protocols (single folds are
    drawn through their pooled row), training curves of the trained models."""
    folder = Path(folder)
    names = readable_names(rows)
    shown = rows[rows["fold"].isna() | rows["pooled"]]
    preds = {names[r.experiment]: read_parquet(r.predictions_file) for r in shown.itertuples()}
    trained = rows[(rows["variant"] == "single") & ~rows["pooled"]]
    hist = {
        names[r.experiment]: read_parquet(Path(r.metrics_file).parent / "history.parquet")
        for r in trained.itertuples()
        if (Path(r.metrics_file).parent / "history.parquet").exists()
    }
    best = {names[e]: b for e, b in zip(rows["experiment"], rows["best_epoch"], strict=True)}
    # a pooled row has one referral threshold per fold: no single operating point to mark
    thresholds = {
        names[r.experiment]: r.referral_threshold for r in rows.itertuples() if not r.pooled
    }
    # one file per figure caption (leukopipe.report.captions.FIGURES names them)
    paths = {stem: folder / f"{stem}.png" for stem in FIGURES}
    roc_figure(preds, paths["roc"])
    confusion_figure(preds, paths["confusion"])
    training_curves_figure(hist, paths["training_curves"], best)
    reliability_figure(preds, paths["reliability"])
    # the same diagram on the temperature-scaled probabilities (metrics.json: calibration)
    calibrated = {
        name: df.assign(prob_all=df["prob_all_calibrated"])
        for name, df in preds.items()
        if "prob_all_calibrated" in df
    }
    reliability_figure(
        calibrated, paths["reliability_calibrated"],
        title="Reliability diagram after temperature scaling (test set)",
    )
    risk_coverage_figure(preds, paths["risk_coverage"], thresholds)
    return list(paths.values())
