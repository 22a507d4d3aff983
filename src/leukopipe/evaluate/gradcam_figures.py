"""Grad-CAM figures: a grid of sample test cells per group (evaluation) and one cell beside its
overlay (prediction). Evaluation draws them itself, so it needs nothing from the report stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leukopipe.plumbing.figure_file import plt, save_figure


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
    save_figure(fig, path)


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
    save_figure(fig, path)
