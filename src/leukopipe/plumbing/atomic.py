"""Atomic file output: write to a temporary sibling, then rename over the target.

A job killed half-way never leaves a truncated file under its final name, so Snakemake
and readers either see the old file or the complete new one. What a killed job does leave is its
temp file (``.<name>.tmp.*``, as large as the output: ~3 GB for a pixel store); the next writer
of the same output deletes it. An output has one writer at a time (Snakemake locks the working
directory, and a step writes each of its outputs from one process), so a temp file of the output
that is already there when a writer starts is a leftover.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leukopipe.plumbing.diskspace import SPACE_ERRNOS
from leukopipe.plumbing.os_errors import output_error

log = logging.getLogger(__name__)

# Temp files seen in each folder when this process first wrote there. Listed once per folder:
# a writer of thousands of files (the synthetic data set) would otherwise list its folder again
# for every file. Later temp files are this process's own, and atomic_path removes those itself.
_LEFTOVERS: dict[Path, set[str]] = {}


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp."


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files that killed writers of ``target`` left beside it; return them.

    Call it when a step starts (before the first write) for outputs whose leftovers are large;
    :func:`atomic_path` calls it for every output it writes.
    """
    target = Path(target)
    prefix = _temp_prefix(target)
    try:
        names = [e.name for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except FileNotFoundError:
        return []
    return _remove(target.parent, names)


def _remove(folder: Path, names: list[str]) -> list[Path]:
    removed = []
    for name in names:
        path = folder / name
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
            log.info("removed %s, left by an earlier run that was killed", path)
    return removed


def _remove_leftovers(target: Path) -> None:
    folder = target.parent.resolve()
    if folder not in _LEFTOVERS:
        _LEFTOVERS[folder] = {e.name for e in os.scandir(folder) if ".tmp." in e.name}
    prefix = _temp_prefix(target)
    mine = sorted(n for n in _LEFTOVERS[folder] if n.startswith(prefix))
    _LEFTOVERS[folder].difference_update(mine)
    _remove(folder, mine)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    The temporary name keeps the target's suffix (unless ``suffix`` is given) so that
    libraries choosing a format by extension (numpy, pandas, PIL) behave the same.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(target)
        # the temp name ends with the target's suffix: np.save and PIL pick formats by extension
        fd, tmp = tempfile.mkstemp(
            prefix=_temp_prefix(target),
            suffix=suffix if suffix is not None else target.suffix,
            dir=target.parent,
        )
    except OSError as exc:
        error = output_error(exc, target)
        if error is None:
            raise
        raise error from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp makes owner-only files; outputs get the usual umask-based mode (shared projects)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as exc:
        # described before the temp file goes: the free space then is what the write found
        error = None
        if isinstance(exc, OSError) and _about_output(exc, tmp_path, target):
            error = output_error(exc, target)
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if error is None:
            raise
        raise error from exc


def _about_output(exc: OSError, tmp: Path, target: Path) -> bool:
    """Whether ``exc`` came from writing this output (not from reading an input in the block)."""
    if exc.filename is None:
        # write() and fallocate() name no file; only writes fail for lack of space
        return exc.errno in SPACE_ERRNOS
    return os.fsdecode(exc.filename) in (str(tmp), str(target))


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
