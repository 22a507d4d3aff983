"""Atomic file output: write to a temporary sibling, then rename over the target.

A job killed half-way never leaves a truncated file under its final name, so Snakemake
and readers either see the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    The temporary name keeps the target's suffix (unless ``suffix`` is given) so that
    libraries choosing a format by extension (numpy, pandas, PIL) behave the same.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the temp name ends with the target's suffix: np.save and PIL pick formats by extension
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.tmp.",
        suffix=suffix if suffix is not None else target.suffix,
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes owner-only files; outputs get the usual umask-based mode (shared projects)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable diffs between runs)."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(target: str | os.PathLike[str], df: Any) -> None:
    """Atomically write a pandas DataFrame as parquet (no index column)."""
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)
