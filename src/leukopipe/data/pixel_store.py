"""The pixel store: one ``.npy`` file of shape (N, S, S, 3), uint8, NHWC; row i = manifest row i.

Training memory-maps it (``np.load(path, mmap_mode="r")``) instead of decoding images, so
every epoch reads the exact bytes the augment step produced. A plain ``.npy`` keeps the store
readable by anything that speaks numpy, with no extra dependency.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from leukopipe.plumbing.atomic import atomic_path
from leukopipe.plumbing.diskspace import SPACE_ERRNOS, disk_full, free_bytes, reserve
from leukopipe.plumbing.errors import InvalidInputError, MissingInputError


@contextlib.contextmanager
def create_store(path: str | os.PathLike[str], n: int, size: int) -> Iterator[np.ndarray]:
    """Yield a writable (n, size, size, 3) uint8 memmap; ``path`` appears only on success.

    The array lives in a temporary sibling file that is flushed and renamed onto ``path`` when the
    block exits normally; an exception removes it and leaves any previous ``path`` untouched.
    Other processes may open the temporary file (``arr.filename``) with mode ``r+`` to fill rows.
    Its disk space is reserved first: a full disk raises DiskFullError here, naming the folder,
    not SIGBUS in whichever process writes the first row that finds no free block.
    """
    if n < 0 or size <= 0:
        raise ValueError(f"create_store: need n >= 0 and size > 0, got n={n}, size={size}")
    path = Path(path)
    what = f"the pixel store {path.name} ({n} images at {size} px)"
    with atomic_path(path) as tmp:
        if n == 0:
            # mmap cannot map an empty data section; an empty in-memory array is saved instead.
            arr = np.zeros((0, size, size, 3), dtype=np.uint8)
            yield arr
            with open(tmp, "wb") as fh:  # a file handle: np.save would append ".npy" to a name
                np.save(fh, arr)
            return
        free = free_bytes(path.parent)
        try:
            mm = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
            )
        except OSError as exc:  # not even the header fits
            if exc.errno not in SPACE_ERRNOS:
                raise
            raise disk_full(path.parent, n * size * size * 3, free, what) from exc
        reserve(tmp, tmp.stat().st_size, what)
        yield mm
        mm.flush()
        # The rename below is safe while the mapping is alive (POSIX keeps the inode).
        del mm


def open_store(path: str | os.PathLike[str]) -> np.ndarray:
    """Open a store read-only as a memmap (an empty store loads as an ordinary array)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(
            f"Pixel store not found: {path}. Run the augment step (snakemake) to create it."
        )
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        # numpy refuses to memory-map a zero-byte data section; fall back for empty stores.
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception:
            raise InvalidInputError(
                f"{path} is not a readable .npy pixel store ({err}); delete it and rerun the "
                "augment step."
            ) from err
    except OSError as err:
        raise InvalidInputError(
            f"{path} is not a readable .npy pixel store ({err}); delete it and rerun the "
            "augment step."
        ) from err
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3 or arr.shape[1] != arr.shape[2]:
        raise InvalidInputError(
            f"{path} is not a pixel store: expected a uint8 array of shape (N, S, S, 3), found "
            f"{arr.dtype} {tuple(arr.shape)}; delete it and rerun the augment step."
        )
    return arr


def check_store(path: str | os.PathLike[str], n: int, size: int) -> None:
    """Raise ValueError naming ``path`` unless it holds exactly (n, size, size, 3) uint8 pixels."""
    arr = open_store(path)
    if arr.shape != (n, size, size, 3):
        raise InvalidInputError(
            f"Pixel store {path} has shape {tuple(arr.shape)}, but the manifest needs "
            f"({n}, {size}, {size}, 3) ({n} rows at {size} px); the store and manifest are out of "
            "step: delete both and rerun the augment step."
        )
