"""Archive debris: files and folders that operating systems and tools add to a copy.

A copy unzipped on a Mac (or zipped on one) carries ``__MACOSX/`` folders and AppleDouble
``._*`` files; Finder adds ``.DS_Store``, Windows Explorer ``Thumbs.db`` and ``desktop.ini``,
Jupyter ``.ipynb_checkpoints/``. None of them is data: layout detection looks through them,
merge never counts them, and the merge summary says what it skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEBRIS_FOLDERS = frozenset({"__MACOSX", ".ipynb_checkpoints"})
DEBRIS_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
APPLEDOUBLE_PREFIX = "._"


def debris_kind(name: str, is_dir: bool) -> str | None:
    """The kind of debris a file or folder name is (its own name, e.g. ``._*``), or None."""
    if is_dir:
        return name if name in DEBRIS_FOLDERS else None
    if name in DEBRIS_FILES:
        return name
    # Windows keeps the case of these but compares without it
    if name.lower() in {n.lower() for n in DEBRIS_FILES}:
        return name
    if name.startswith(APPLEDOUBLE_PREFIX):
        return "._*"
    return None


def is_debris(path: Path) -> bool:
    """True when ``path`` itself is debris (not when it merely lies inside a debris folder)."""
    return debris_kind(path.name, path.is_dir()) is not None


def without_debris(paths: Iterable[Path]) -> list[Path]:
    """``paths`` less the debris among them, in their order."""
    return [p for p in paths if not is_debris(p)]


def find_debris(root: Path) -> dict[str, Any]:
    """Every piece of debris under ``root``: counts and bytes per kind, and the top paths.

    A debris folder is counted once, with the bytes of everything inside it; it is not entered.
    """
    kinds: dict[str, dict[str, int]] = {}
    paths: list[str] = []
    for folder, dirnames, filenames in os.walk(root):
        base = Path(folder)
        for name in list(dirnames):
            kind = debris_kind(name, True)
            if kind is not None:
                dirnames.remove(name)
                _add(kinds, kind, _tree_bytes(base / name))
                paths.append((base / name).relative_to(root).as_posix() + "/")
        for name in filenames:
            kind = debris_kind(name, False)
            if kind is not None:
                _add(kinds, kind, (base / name).lstat().st_size)
                paths.append((base / name).relative_to(root).as_posix())
    return {
        "count": sum(k["count"] for k in kinds.values()),
        "bytes": sum(k["bytes"] for k in kinds.values()),
        "per_kind": dict(sorted(kinds.items())),
        "paths": sorted(paths),
    }


def _add(kinds: dict[str, dict[str, int]], kind: str, nbytes: int) -> None:
    entry = kinds.setdefault(kind, {"count": 0, "bytes": 0})
    entry["count"] += 1
    entry["bytes"] += nbytes


def _tree_bytes(folder: Path) -> int:
    return sum(
        (Path(d) / f).lstat().st_size for d, _, files in os.walk(folder) for f in files
    )
