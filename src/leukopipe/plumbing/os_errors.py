"""Operating-system errors the user can fix, said in one line that names the path and what to do.

Only conditions of the machine are translated: a full disk, a used-up quota, a read-only or
forbidden folder, a missing folder, a file where a folder should be. Every other OSError (EBADF,
EINVAL, ...) is a bug in the code and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from leukopipe.plumbing.diskspace import SPACE_ERRNOS, free_bytes
from leukopipe.plumbing.errors import UserError

ADVICE: dict[int, str] = {
    errno.ENOSPC: "free space there or point the results folder at a larger disk, then rerun",
    errno.EDQUOT: "free space or ask for a larger quota, then rerun",
    errno.EROFS: "point the results folder at a writable file system, then rerun",
    errno.EACCES: "check its owner and permissions (ls -ld), then rerun",
    errno.EPERM: "check its owner and permissions (ls -ld), then rerun",
    # a file stands where a folder of the path should be (mkdir says EEXIST, open ENOTDIR)
    errno.ENOTDIR: "a file stands where a folder of the path should be: move it or fix the path",
    errno.EEXIST: "a file stands where a folder of the path should be: move it or fix the path",
}


class OutputError(UserError):
    """An output could not be written for a reason of the machine (full, read-only, forbidden)."""


def _nearest_folder(path: Path) -> Path | None:
    for folder in (path, *path.parents):
        if folder.is_dir():
            return folder
    return None


def describe(
    exc: OSError, path: str | os.PathLike[str] | None = None, writing: bool = False
) -> str | None:
    """One line for a user-fixable ``exc`` about ``path`` (default: the error's own file name).

    None when the error is not one the user can fix: the caller lets it keep its traceback.
    """
    name = path if path is not None else exc.filename
    where = Path(os.fsdecode(name)) if isinstance(name, str | bytes | os.PathLike) else None
    reason = exc.strerror or os.strerror(exc.errno or 0)
    if exc.errno == errno.ENOENT and where is not None:
        if not where.parent.is_dir():
            return f"{where}: its folder {where.parent} does not exist; create it or fix the path"
        return f"{where}: {reason}"
    advice = ADVICE.get(exc.errno or 0)
    if advice is None:
        return None
    if where is None:
        return f"{reason}; {advice}"
    if exc.errno in SPACE_ERRNOS:
        folder = _nearest_folder(where.parent)
        if folder is not None:
            reason = f"{reason} ({free_bytes(folder)} bytes free in {folder})"
    return f"{'cannot write ' if writing else ''}{where}: {reason}; {advice}"


def output_error(exc: OSError, target: str | os.PathLike[str]) -> OutputError | None:
    """An :class:`OutputError` naming ``target`` for a user-fixable error writing it, else None."""
    if exc.errno == errno.ENOENT:
        return None  # a vanished temp file or folder is not a condition of the machine
    message = describe(exc, target, writing=True)
    return OutputError(message) if message is not None else None
