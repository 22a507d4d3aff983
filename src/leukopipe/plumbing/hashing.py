"""SHA-256 of files, read in chunks (archives are ~10 GB, checkpoints hundreds of MB)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

CHUNK = 1 << 20


def update_from_file(hasher: Any, path: str | os.PathLike[str], chunk_size: int = CHUNK) -> int:
    """Feed every byte of ``path`` to ``hasher``; return how many bytes were read."""
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            hasher.update(chunk)
            size += len(chunk)
    return size


def sha256_file(path: str | os.PathLike[str], chunk_size: int = CHUNK) -> str:
    """The SHA-256 hex digest of a file."""
    hasher = hashlib.sha256()
    update_from_file(hasher, path, chunk_size)
    return hasher.hexdigest()
