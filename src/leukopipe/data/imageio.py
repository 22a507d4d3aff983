"""Decode one image file into the uint8 RGB array every later step works on.

Resizing uses PIL's bilinear filter. PIL always antialiases when it shrinks (the filter's
support widens with the reduction factor), so this is the same operation as torchvision's
``Resize(size, antialias=True)`` applied to a PIL image, which is how the study's pipeline
("convert to RGB, resize to 224x224") is normally written. The C-NMC images are square
(450x450); a non-square image is resized to size x size without keeping its aspect ratio,
exactly like ``Resize((size, size))``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from leukopipe.plumbing.errors import UserError


class MissingImageError(UserError, FileNotFoundError):
    """An image file that does not exist; the message names it."""


class UnreadableImageError(UserError, ValueError):
    """An image file that cannot be read or decoded; the message names it and says why."""


class ChangedImageError(UserError, ValueError):
    """A raw image whose bytes are no longer those the index hashed."""


class UnsuitableImageError(UserError, ValueError):
    """An image that decodes but is not a cell image the models can score (see image_problem)."""


# below this a crop shows no cell to classify; the data set's own crops are 450 px
MIN_SIDE = 32


def image_problem(mode: str, width: int, height: int, expected_size: int | None) -> str | None:
    """Why an image is not acceptable, or None: the one rule of merge and predict.

    An acceptable image is 8-bit RGB (24-bit colour; not grayscale, 16-bit, CMYK or a palette)
    and either exactly ``expected_size`` square (merge: the raw copy's stated size) or, without
    one (predict: new images), square and at least :data:`MIN_SIDE` pixels: the cells are square
    crops, resized to the model's input without keeping the aspect ratio.
    """
    if mode != "RGB":
        return f"image mode {mode}, expected RGB (8 bits a channel: 24-bit colour)"
    if expected_size is not None:
        if (width, height) != (expected_size, expected_size):
            return (
                f"size {width}x{height}, expected {expected_size}x{expected_size}"
                " (set data.expected_image_size if your copy was resized on purpose)"
            )
        return None
    if width != height:
        return f"size {width}x{height} is not square (a cell image is a square crop)"
    if width < MIN_SIDE:
        return f"size {width}x{height}, too small to show a cell (at least {MIN_SIDE}x{MIN_SIDE})"
    return None


def read_rgb(
    path: str | os.PathLike[str], size: int, sha256: str | None = None, check: bool = False
) -> np.ndarray:
    """Read ``path``, convert to RGB, resize to ``size`` x ``size``; return uint8 HWC (C-order).

    Errors name the file and the reason only (any image, from any source). With ``sha256`` the
    file's bytes must have that digest (:class:`ChangedImageError` otherwise). With ``check``
    the image must pass :func:`image_problem` (:class:`UnsuitableImageError` otherwise).
    """
    if size <= 0:
        raise ValueError(f"read_rgb: size must be a positive number of pixels, got {size}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise MissingImageError(f"Image file not found: {path}") from err
    except OSError as err:
        raise UnreadableImageError(f"Cannot read image {path}: {err.strerror}") from err
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ChangedImageError(
                f"{path} changed after the merge step indexed it (sha256 now {actual[:12]}..., "
                f"indexed {sha256[:12]}...): its pixels are not the ones the splits were made "
                "from. Restore the original file, or run the workflow again: merge reruns by "
                "itself when the raw copy's content changes, and everything after it follows."
            )
    try:
        with Image.open(io.BytesIO(data)) as im:
            problem = image_problem(im.mode, im.width, im.height, None) if check else None
            # convert() forces a full decode, so truncated files fail here, naming the file.
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UnreadableImageError(f"Cannot decode image {path}: {err}") from err
    if problem is not None:
        raise UnsuitableImageError(f"{path}: {problem}")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), resample=Image.Resampling.BILINEAR)
    return np.array(rgb, dtype=np.uint8, copy=True)


def load_rgb(
    path: str | os.PathLike[str], size: int, sha256: str | None = None
) -> np.ndarray:
    """:func:`read_rgb` for the data set's images: errors also say what to do about the data."""
    try:
        return read_rgb(path, size, sha256)
    except MissingImageError as err:
        raise MissingImageError(
            f"{err}. The index/manifest points at a file that is missing; check that the raw "
            "dataset is complete, or rerun the merge step."
        ) from err.__cause__
    except UnreadableImageError as err:
        raise UnreadableImageError(
            f"{err}. The file is corrupt or not an image; replace it with an intact copy from "
            "the dataset archive (raw data is never modified here)."
        ) from err.__cause__
