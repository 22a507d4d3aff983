"""Inference from a trained checkpoint: load ``best.pt`` and score images in large batches.

The checkpoint carries the backbone, class names, input size and normalisation, so nothing
from the pipeline config is needed: this is what evaluation and ``scripts/predict.py`` use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.progress import Progress
from leukopipe.train.checkpoint_saver import load_checkpoint
from leukopipe.train.device import pick_device


@dataclass
class Classifier:
    """A trained model ready for inference, with what it needs to preprocess its input."""

    model: torch.nn.Module
    meta: dict[str, Any]
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])


def load_classifier(checkpoint: str | os.PathLike[str], device: str | None = None) -> Classifier:
    """Rebuild the network of ``checkpoint`` (a best.pt) and load its weights, in eval mode."""
    model, meta = load_checkpoint(checkpoint)
    dev = pick_device(device)
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    shape = (1, 3, 1, 1)
    mean = torch.tensor(meta["mean"], dtype=torch.float32, device=dev).view(shape) * 255.0
    std = torch.tensor(meta["std"], dtype=torch.float32, device=dev).view(shape) * 255.0
    return Classifier(model, meta, dev, mean, std)


@torch.inference_mode()
def predict_batch(clf: Classifier, images: np.ndarray) -> np.ndarray:
    """Probability of ALL (class 1) for a uint8 NHWC batch."""
    # np.array copies the (read-only, memory-mapped) slice into RAM that torch may own
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).to(clf.device, non_blocking=True)
    # convert and normalise on the device: the host only moves uint8 bytes
    x = x.permute(0, 3, 1, 2).float().sub_(clf.mean).div_(clf.std)
    if clf.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = clf.model(x)
    else:
        logits = clf.model(x)
    return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()


def predict_store(clf: Classifier, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probability of ALL for every row of a uint8 (N, S, S, 3) store, read in contiguous slices."""
    if pixels.ndim != 4 or pixels.shape[1:] != (clf.image_size, clf.image_size, 3):
        raise InvalidInputError(
            f"pixel store of shape {pixels.shape} does not match the model's input"
            f" ({clf.image_size}x{clf.image_size} RGB)"
        )
    out = np.empty(len(pixels), dtype=np.float64)
    bar = Progress(len(pixels), "inference")
    for start in range(0, len(pixels), batch_size):
        stop = min(start + batch_size, len(pixels))
        out[start:stop] = predict_batch(clf, pixels[start:stop])
        bar.update(stop - start)
    bar.close()
    return out
