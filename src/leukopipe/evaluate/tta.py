"""8-fold dihedral test-time augmentation: every flip x 90-degree rotation of a cell.

A segmented cell on a black background has no preferred orientation, so the eight symmetries
of the square are all equally plausible views; their probabilities of ALL are averaged. The
same checkpoint scores each view, nothing is retrained.
"""

from __future__ import annotations

import numpy as np

from leukopipe.evaluate.inference import Classifier, predict_batch
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.progress import Progress

# (number of 90-degree rotations, horizontal flip first?)
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral_views(images: np.ndarray) -> list[np.ndarray]:
    """The 8 views of a uint8 NHWC batch (identity first), as contiguous arrays."""
    views = []
    for k, flip in DIHEDRAL:
        x = images[:, :, ::-1] if flip else images
        views.append(np.ascontiguousarray(np.rot90(x, k, axes=(1, 2))))
    return views


def predict_store_tta(
    clf: Classifier, pixels: np.ndarray, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(mean over the 8 views, plain identity-view probability) for every store row."""
    if pixels.ndim != 4 or pixels.shape[1:] != (clf.image_size, clf.image_size, 3):
        raise InvalidInputError(
            f"pixel store of shape {pixels.shape} does not match the model's input"
            f" ({clf.image_size}x{clf.image_size} RGB)"
        )
    mean = np.empty(len(pixels), dtype=np.float64)
    plain = np.empty(len(pixels), dtype=np.float64)
    per_batch = max(1, batch_size // len(DIHEDRAL))
    bar = Progress(len(pixels), "test-time augmentation (8 views each)")
    for start in range(0, len(pixels), per_batch):
        chunk = np.asarray(pixels[start : start + per_batch])
        views = dihedral_views(chunk)
        probs = predict_batch(clf, np.concatenate(views)).reshape(len(DIHEDRAL), len(chunk))
        mean[start : start + len(chunk)] = probs.mean(axis=0)
        plain[start : start + len(chunk)] = probs[0]
        bar.update(len(chunk))
    bar.close()
    return mean, plain
