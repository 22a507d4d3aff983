"""Reserve a large output's disk space before writing it, so a full disk fails at once, as one line.

A memory-mapped file is written page by page long after it was created: on a full disk the write
that finds no free block kills the process with SIGBUS (exit 135, or a worker pool that waits
forever for a dead worker), and nothing names the disk. Allocating every block up front
(``posix_fallocate``) turns that into ENOSPC in the parent process, before any work is done.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from leukopipe.plumbing.errors import UserError

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(UserError):
    """Not enough free space in an output folder; the message says how much is needed and free."""


def free_bytes(folder: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged process may still write in ``folder``'s file system."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def human(nbytes: int) -> str:
    """``nbytes`` in binary units, for the reader (the exact number is printed beside it)."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def disk_full(folder: str | os.PathLike[str], needed: int, free: int, what: str) -> DiskFullError:
    """The one-line error for ``what`` needing ``needed`` bytes in ``folder`` with ``free`` left."""
    return DiskFullError(
        f"not enough disk space in {folder} for {what}: it needs {needed} bytes ({human(needed)}), "
        f"{free} bytes ({human(free)}) are free; free space there or point the results folder "
        "at a larger disk, then rerun"
    )


def reserve(path: str | os.PathLike[str], nbytes: int, what: str) -> None:
    """Allocate the first ``nbytes`` of the existing file ``path`` on disk now.

    Raises :class:`DiskFullError` naming the folder, the bytes needed and the bytes free. On a
    file system that cannot preallocate, the free space is compared with ``nbytes`` instead.
    """
    path = Path(path)
    folder = path.parent
    free = free_bytes(folder)  # before: a failed fallocate may keep the blocks it got
    if nbytes <= 0:
        return
    if not hasattr(os, "posix_fallocate"):  # macOS
        if nbytes > free:
            raise disk_full(folder, nbytes, free, what)
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        if exc.errno in SPACE_ERRNOS:
            raise disk_full(folder, nbytes, free, what) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        if nbytes > free:  # cannot preallocate here: the best check left is the free space
            raise disk_full(folder, nbytes, free, what) from exc
    finally:
        os.close(fd)
