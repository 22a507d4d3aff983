"""Knowing the raw data by content, not by location.

The workflow reruns merge (and so everything after it) when the raw copy's content changes, and
never because the same copy now lives somewhere else. The content is the sha256 of every file
under the raw folder with its path relative to that folder. Hashing ~10 GB at every workflow start
would be slow, so file hashes are cached the way git caches them, by (size, mtime, inode,
ctime): an untouched copy hashes nothing; a moved, copied or touched one is hashed once (and,
its content unchanged, reruns nothing); an edited file is hashed again, even when its size and
mtime were put back (``os.utime`` cannot set the ctime).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from leukopipe.data.debris import debris_kind
from leukopipe.data.download import archive_stem, raw_folder
from leukopipe.data.raw_layout import RawDataError
from leukopipe.plumbing.atomic import write_json
from leukopipe.plumbing.errors import UserError
from leukopipe.plumbing.hashing import sha256_file

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # entries: size, mtime_ns, sha256, inode, ctime_ns
# the hash cache sits beside raw.json in results/<run>/data/
CACHE_NAME = "raw_hashes.json"


def _walk(root: Path) -> list[tuple[str, os.stat_result]]:
    """(relative path, stat) of every regular file under ``root``, hidden files and archive debris
    skipped (a copy unzipped on a Mac is the same data as one unzipped elsewhere)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and debris_kind(d, True) is None
        )
        for name in sorted(filenames):
            if name.startswith(".") or debris_kind(name, False) is not None:
                continue
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError as exc:  # a link that points nowhere or at itself (ELOOP)
                raise RawDataError(
                    f"{path}: cannot be read ({exc.strerror}): a broken or looping symbolic "
                    "link? Fix or remove it in the raw folder (leukopipe never changes it), "
                    "or point data.raw_dir at an intact copy"
                ) from exc
            out.append((path.relative_to(root).as_posix(), st))
    return out


def _read_cache(cache: Path) -> dict[str, list[Any]]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if data.get("format") == CACHE_FORMAT else {}


def _unchanged(entry: list[Any], st: os.stat_result) -> bool:
    return entry[:2] == [st.st_size, st.st_mtime_ns] and entry[3:] == [st.st_ino, st.st_ctime_ns]


def content_digest(root: str | os.PathLike[str], cache: str | os.PathLike[str]) -> str:
    """sha256 over (relative path, size, sha256) of every file under ``root``.

    ``cache`` (a JSON file outside ``root``: nothing under the raw folder is ever written) keeps
    each file's hash with the size, mtime, inode and ctime it had, so unchanged files are not read
    again.
    """
    root, cache = Path(root), Path(cache)
    if not root.is_dir():
        raise UserError(
            f"data.raw_dir = {str(root)!r} is not a folder; point it at the extracted C-NMC copy"
            " (README: 'The real C-NMC 2019 data')"
        )
    known = _read_cache(cache)
    files: dict[str, list[Any]] = {}
    to_hash = []
    for rel, st in _walk(root):
        entry = known.get(rel)
        if entry is not None and _unchanged(entry, st):
            files[rel] = entry
        else:
            to_hash.append((rel, st))
    if to_hash:
        size = sum(st.st_size for _, st in to_hash)
        log.info("hashing %d raw file(s), %.1f MB, under %s", len(to_hash), size / 1e6, root)
        for rel, st in to_hash:
            files[rel] = [st.st_size, st.st_mtime_ns, sha256_file(root / rel), st.st_ino,
                          st.st_ctime_ns]
    if files != known:
        write_json(cache, {"format": CACHE_FORMAT, "files": files})
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\t{files[rel][0]}\t{files[rel][2]}\n".encode())
    return digest.hexdigest()


def source_identity(data: dict[str, Any]) -> str:
    """What determines the data before any file exists: the generator's settings, the archive's
    checksum (or, without one, its URL), the Kaggle handle and version (``latest`` until one is
    pinned), or, for an existing copy, nothing but its content."""
    source = data["source"]
    if source == "synthetic":
        return "synthetic:" + json.dumps(data["synthetic"], sort_keys=True)
    if source == "url":
        return "url:" + (data["sha256"] or data["url"])
    if source == "kaggle":
        kaggle = data["kaggle"]
        return f"kaggle:{kaggle['handle']}:{kaggle['version'] or 'latest'}"
    return "existing"


def archive_digest(archive: Path, cache: Path) -> str:
    """sha256 of an archive file, cached (beside ``cache``) by its size and mtime."""
    record = cache.with_name("raw_archive_hash.json")
    st = archive.stat()
    key = [str(archive.resolve()), st.st_size, st.st_mtime_ns]
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
        if known["key"] == key:
            return str(known["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log.info("hashing the raw archive %s (%.1f MB)", archive, st.st_size / 1e6)
    digest = sha256_file(archive)
    write_json(record, {"key": key, "sha256": digest})
    return digest


def download_identity(data: dict[str, Any], cache: Path) -> str:
    """The rerun trigger of the download step: the source, and an existing copy's content
    (an archive file named by raw_dir: its sha256, so the same archive elsewhere reruns nothing)."""
    identity = source_identity(data)
    if data["source"] == "existing" and archive_stem(data["raw_dir"]):
        archive = Path(data["raw_dir"])
        if not archive.is_file():
            return f"{identity}:missing"  # the download step then says what to do, in one line
        return f"{identity}:archive:{archive_digest(archive, cache)}"
    if data["source"] == "existing":
        if not Path(data["raw_dir"]).is_dir():
            return f"{identity}:missing"  # the download step then says what to do, in one line
        return f"{identity}:{content_digest(data['raw_dir'], cache)}"
    return identity


def merge_identity(data: dict[str, Any], raw_record: Path, cache: Path) -> str:
    """The rerun trigger of merge: equal exactly when the raw content is.

    An existing copy is its content digest. Data the download step makes (generated or
    extracted) are known by their source until the step has run; from then on a copy whose
    content no longer matches the digest download recorded in ``raw_record`` counts as changed
    (download itself does not rerun over it: the edited copy is the user's data now).
    """
    identity = download_identity(data, cache)
    raw_dir = raw_folder(data)
    made_here = data["source"] != "existing" or archive_stem(data["raw_dir"]) is not None
    if made_here and raw_record.is_file() and raw_dir.is_dir():
        recorded = json.loads(raw_record.read_text(encoding="utf-8")).get("content_digest")
        current = content_digest(raw_dir, cache)
        if recorded and current != recorded:
            return f"{identity}:modified:{current}"
    return identity
