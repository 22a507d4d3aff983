"""Near-duplicate images: a perceptual hash per image, and the pairs of images from two sets
whose hashes differ in at most a given number of bits (Hamming distance).

sha256 catches byte-identical copies only; a copy that was resaved, resized or re-exposed
has other bytes but nearly the same perceptual hash. The hash is imagehash's DCT hash (phash)
of the greyscale image at 16 x 16 = 256 bits. At the library's default 8 x 8 = 64 bits,
different segmented cells on a black background differ in as few as 2 bits (the hash sees
mostly a round blob); at 256 bits, different synthetic cells differed in 24 bits or more
(14,000 pairs) and a brightened, contrast-changed or resized copy in 4 or fewer. The
threshold is a setting (``split.near_duplicate_max_distance``).
"""

from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image

from leukopipe.plumbing.errors import InvalidInputError

HASH_SIZE = 16
HASH_BITS = HASH_SIZE * HASH_SIZE
HASH_NAME = f"imagehash.phash (DCT of the greyscale image), {HASH_BITS} bits"
_WORDS = HASH_BITS // 64
_CHUNK = 64  # rows of the first set compared at once: bounds memory to ~chunk x n x 32 bytes


def perceptual_hash(image: Image.Image) -> str:
    """The image's perceptual hash as a hexadecimal string of ``HASH_BITS`` bits."""
    return str(imagehash.phash(image, hash_size=HASH_SIZE))


def _words(hashes: Sequence[str]) -> np.ndarray:
    """(n, 4) unsigned 64-bit words of 256-bit hexadecimal hashes."""
    width = HASH_BITS // 4
    out = np.zeros((len(hashes), _WORDS), dtype=np.uint64)
    for i, h in enumerate(hashes):
        if len(h) != width:
            raise InvalidInputError(
                f"perceptual hash {h!r} has {len(h)} hex digits, expected {width}; the index was"
                " made by an older merge step: rerun merge"
            )
        out[i] = [int(h[k : k + 16], 16) for k in range(0, width, 16)]
    return out


def close_pairs(
    first: Sequence[str], second: Sequence[str], max_distance: int
) -> list[tuple[int, int, int]]:
    """(row in first, row in second, distance) of every pair within ``max_distance`` bits."""
    a, b = _words(first), _words(second)
    found: list[tuple[int, int, int]] = []
    if not len(a) or not len(b):
        return found
    for start in range(0, len(a), _CHUNK):
        block = a[start : start + _CHUNK]
        dist = np.bitwise_count(block[:, None, :] ^ b[None, :, :]).sum(axis=-1, dtype=np.int64)
        rows, cols = np.nonzero(dist <= max_distance)
        found += [
            (int(start + r), int(c), int(dist[r, c])) for r, c in zip(rows, cols, strict=True)
        ]
    return found
