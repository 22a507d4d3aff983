"""Saving a matplotlib figure: headless backend, tight layout, atomic write, figure closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; compute nodes and CI have no display
import matplotlib.pyplot as plt

from leukopipe.plumbing.atomic import atomic_path

DPI = 120

__all__ = ["DPI", "plt", "save_figure"]


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = DPI, **savefig: Any) -> None:
    """Write ``fig`` to ``path`` (PNG by its suffix) atomically and close it; ``savefig``
    passes on (e.g. ``bbox_inches="tight"``)."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, **savefig)
    plt.close(fig)
