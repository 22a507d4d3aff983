"""Decode one image file into the uint8 RGB array every later step works on.

Resizing uses PIL's bilinear filter. PIL always antialiases when it shrinks (the filter's
support widens with the reduction factor), so this is the same operation as torchvision's
``Resize(size, antialias=True)`` applied to a PIL image, which is how the study's pipeline
("convert to RGB, resize to 224x224") is normally written. The C-NMC images are square
(450x450); a non-square image is resized to size x size without keeping its aspect ratio,
exactly like ``Resize((size, size))``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


def load_rgb(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Read ``path``, convert to RGB, resize to ``size`` x ``size``; return uint8 HWC (C-order)."""
    if size <= 0:
        raise ValueError(f"load_rgb: size must be a positive number of pixels, got {size}")
    path = Path(path)
    try:
        with Image.open(path) as im:
            # convert() forces a full decode, so truncated files fail here, naming the file.
            rgb = im.convert("RGB")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"Image file not found: {path}. The index/manifest points at a file that is missing; "
            "check that the raw dataset is complete, or rerun the merge step."
        ) from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ValueError(
            f"Cannot decode image {path}: {err}. The file is corrupt or not an image; replace it "
            "with an intact copy from the dataset archive (raw data is never modified here)."
        ) from err
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), resample=Image.Resampling.BILINEAR)
    return np.array(rgb, dtype=np.uint8, copy=True)
