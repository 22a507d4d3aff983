"""Make the raw dataset present: reuse an existing copy, download + verify + extract, or synthesise.

This is the logic behind the local ``download`` rule (it runs on the login node, the only
place with network access on most clusters). Raw data is read-only: nothing here ever writes,
moves or deletes anything inside ``raw_dir``; new data appears there only by an atomic rename
of a fully extracted (or fully generated) temporary sibling folder, so a killed job never leaves
a half-filled folder that a later run would mistake for a complete copy.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib
import logging
import os
import posixpath
import re
import secrets
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from leukopipe import __version__
from leukopipe.data.kaggle import fetch_kaggle, kaggle_link
from leukopipe.plumbing.diskspace import disk_full, free_bytes
from leukopipe.plumbing.errors import InvalidInputError, MissingInputError, UserError
from leukopipe.plumbing.hashing import CHUNK, sha256_file, update_from_file

log = logging.getLogger(__name__)

SOURCES = ("existing", "url", "kaggle", "synthetic")
# data.raw_dir may name a downloaded archive instead of a folder (source: existing)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".tar")

CNMC_HELP = (
    "Obtain C-NMC 2019 from The Cancer Imaging Archive (collection \"C-NMC 2019\", "
    "DOI 10.7937/tcia.2019.dc64i46r, https://doi.org/10.7937/tcia.2019.dc64i46r) or from a "
    "mirror with the C-NMC_Leukemia/ layout, extract it, and point data.raw_dir at the extracted "
    "folder. Alternatively set data.source: url with data.url (and data.sha256) to download an "
    "archive, or data.source: synthetic for the small demo dataset."
)

# HTTP statuses worth retrying: the server or a proxy is temporarily unable to answer.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.I)


class DownloadError(UserError, RuntimeError):
    """The archive could not be obtained (network, server or bad response)."""


class ChecksumError(DownloadError):
    """A file's SHA-256 digest differs from the configured one."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the extraction folder."""


class FolderInTheWayError(UserError, FileExistsError):
    """Something already stands where the raw copy or its extraction must go."""


class RawDataMissingError(UserError, FileNotFoundError):
    """``source: existing`` was configured but the raw-data folder is missing or empty."""


class _TransientError(Exception):
    """A failure worth retrying (connection cut, timeout, 5xx)."""


class _RestartError(Exception):
    """The partial file is unusable for resuming; start again from byte zero at once."""


# --------------------------------------------------------------------------------------------
# download_file
# --------------------------------------------------------------------------------------------


def _normalise_sha256(sha256: str | None) -> str | None:
    """Lower-case a configured digest and reject malformed ones before any network traffic."""
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:") :]
    if not _SHA256_RE.match(value):
        raise InvalidInputError(
            f"sha256 {sha256!r} is not a SHA-256 hex digest (64 hexadecimal characters); "
            "fix data.sha256 in the config or leave it empty to skip verification."
        )
    return value


def _hash_prefix(path: Path, chunk_size: int = CHUNK) -> tuple[Any, int]:
    """Hash an existing (partial) file; returns the running hasher and the bytes hashed."""
    hasher = hashlib.sha256()
    size = update_from_file(hasher, path, chunk_size) if path.exists() else 0
    return hasher, size


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    if not value:
        return None, None
    m = _CONTENT_RANGE_RE.match(value)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in _TRANSIENT_STATUS
    return isinstance(
        exc,
        urllib.error.URLError | TimeoutError | ConnectionError | http.client.HTTPException,
    )


class _Download:
    """State of one download: the .part file and a hasher kept in step with its content."""

    def __init__(self, url: str, part: Path, *, chunk_size: int, timeout: float, progress: bool):
        self.url = url
        self.part = part
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.progress = progress
        self.hasher: Any = None
        self.offset = 0  # bytes in .part that self.hasher has seen
        self.received = 0  # bytes received by the latest attempt

    def _sync_with_disk(self) -> None:
        # The hasher must cover exactly the bytes on disk; after an interrupted write (or on
        # the first attempt, with a .part left by an earlier run) re-hash the prefix.
        size = self.part.stat().st_size if self.part.exists() else 0
        if self.hasher is None or size != self.offset:
            if size:
                log.info("Resuming %s: hashing the %d bytes already downloaded", self.part, size)
            self.hasher, self.offset = _hash_prefix(self.part, self.chunk_size)

    def _reset(self) -> None:
        self.part.write_bytes(b"")
        self.hasher, self.offset = hashlib.sha256(), 0

    def attempt(self) -> None:
        """One request to complete the .part file. Raises _TransientError or _RestartError."""
        self.received = 0
        self._sync_with_disk()
        headers = {"User-Agent": f"leukopipe/{__version__}", "Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
        request = urllib.request.Request(self.url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 416 and self.offset:
                    _, total = _parse_content_range(exc.headers.get("Content-Range"))
                    if total is None or total == self.offset:
                        return  # the .part already holds the whole file; checksum decides
                    log.warning(
                        "%s: server says the file has %d bytes but %s holds %d; restarting",
                        self.url, total, self.part, self.offset,
                    )
                    self._reset()
                    raise _RestartError from exc
                if exc.code in _TRANSIENT_STATUS:
                    raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
                raise DownloadError(
                    f"Downloading {self.url} failed with HTTP {exc.code} {exc.reason}. "
                    "Check data.url (is it a direct link to the archive, still valid, and "
                    "readable without logging in?)."
                ) from exc
        except Exception as exc:
            if _is_transient(exc):
                raise _TransientError(str(exc)) from exc
            raise
        with response:
            self._stream(response)

    def _stream(self, response: Any) -> None:
        status = getattr(response, "status", None) or 200  # file:// answers without a status
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            start, _ = _parse_content_range(response.headers.get("Content-Range"))
            if start != self.offset:
                log.warning(
                    "%s: asked for bytes from %d, server sent a range starting at %s; restarting",
                    self.url, self.offset, start,
                )
                self._reset()
                raise _RestartError
            mode = "ab"
        else:
            if self.offset:
                log.warning(
                    "%s: server ignored the resume request (HTTP %d); restarting from zero",
                    self.url, status,
                )
            self.hasher, self.offset = hashlib.sha256(), 0
            mode = "wb"
        expected_end = self.offset + length if length is not None else None
        with (
            self.part.open(mode) as f,
            tqdm(
                total=expected_end, initial=self.offset, unit="B", unit_scale=True,
                unit_divisor=1024, desc=self.part.name.removesuffix(".part"), file=sys.stderr,
                disable=not (self.progress and sys.stderr.isatty()), dynamic_ncols=True,
            ) as bar,
        ):
            try:
                while chunk := response.read(self.chunk_size):
                    f.write(chunk)
                    self.hasher.update(chunk)
                    self.offset += len(chunk)
                    self.received += len(chunk)
                    bar.update(len(chunk))
            except Exception as exc:
                if _is_transient(exc):
                    raise _TransientError(f"{exc!r} after {self.received} bytes") from exc
                raise
            f.flush()
            os.fsync(f.fileno())
        # http.client returns b"" (no exception) when the connection drops early, so a short
        # body is only visible by comparing with Content-Length.
        if expected_end is not None and self.offset != expected_end:
            raise _TransientError(
                f"connection closed after {self.offset} of {expected_end} bytes"
            )


def download_file(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    retries: int = 3,
    timeout: float = 60,
    backoff: float = 2.0,
) -> Path:
    """Download ``url`` to ``dest`` resumably and verify its SHA-256; returns ``dest``.

    Bytes go to ``<dest>.part`` (resumed with an HTTP Range request on the next call or retry);
    only a complete file whose digest matches ``sha256`` is renamed onto ``dest``. A mismatching
    file is moved to ``<dest>.bad`` and ChecksumError is raised. ``retries`` counts consecutive
    failed attempts (an attempt that received data resets the count); the wait between them
    is ``backoff * 2**k`` seconds.
    """
    return _download(
        url, dest, sha256, progress=progress, chunk_size=chunk_size, retries=retries,
        timeout=timeout, backoff=backoff,
    )[0]


def _download(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    retries: int = 3,
    timeout: float = 60,
    backoff: float = 2.0,
) -> tuple[Path, str]:
    """download_file, also returning the file's actual SHA-256 (hashed once, while streaming)."""
    dest = Path(dest)
    expected = _normalise_sha256(sha256)
    if dest.exists():
        actual = sha256_file(dest, chunk_size)
        if expected is None:
            log.warning(
                "%s already exists and no sha256 is configured: using it unverified. Its sha256 "
                "is %s; record it as data.sha256.", dest, actual,
            )
            return dest, actual
        if actual == expected:
            log.info("%s already present with the expected sha256", dest)
            return dest, actual
        raise ChecksumError(
            f"{dest} already exists but its sha256 is {actual}, expected {expected}. "
            f"If the configured data.sha256 is right the file is corrupt: delete {dest} and rerun "
            "to download it again. If you trust the file, set data.sha256 to its digest."
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    job = _Download(url, part, chunk_size=chunk_size, timeout=timeout, progress=progress)
    failures = 0
    restarts = 0
    while True:
        try:
            job.attempt()
            break
        except _RestartError:
            restarts += 1
            if restarts > 3:
                raise DownloadError(
                    f"{url}: the server keeps answering resume requests inconsistently; "
                    f"delete {part} and rerun."
                ) from None
        except _TransientError as exc:
            # An attempt that made progress is not a failure of the same kind: a flaky link
            # that always cuts after a few GB must still finish a 10 GB archive.
            failures = 1 if job.received else failures + 1
            if failures > retries:
                kept = part.stat().st_size if part.exists() else 0
                where = (
                    f"The {kept} bytes received are kept in {part}; rerun to resume."
                    if kept else "Nothing was received; check the URL and the network, then rerun."
                )
                raise DownloadError(
                    f"Could not download {url}: {exc} ({failures} attempts in a row failed). "
                    f"{where}"
                ) from exc
            delay = backoff * 2 ** max(failures - 1, 0)
            log.warning("Download of %s interrupted (%s); retrying in %.1f s", url, exc, delay)
            time.sleep(delay)

    actual = job.hasher.hexdigest()
    if expected is not None and actual != expected:
        bad = dest.with_name(dest.name + ".bad")
        os.replace(part, bad)
        raise ChecksumError(
            f"Checksum mismatch for {url}: expected sha256 {expected}, got {actual}. "
            f"The download was moved to {bad} and nothing was written to {dest}. The transfer "
            "may have been corrupted or the URL serves a different file: delete "
            f"{bad} and rerun to download again, or, if you trust this file, set data.sha256 "
            "to the actual digest."
        )
    if expected is None:
        log.warning(
            "No sha256 configured: %s cannot be verified (C-NMC publishes no checksums). Its "
            "sha256 is %s; record it as data.sha256 so later downloads are checked.",
            dest, actual,
        )
    os.replace(part, dest)
    log.info("Downloaded %s (%d bytes, sha256 %s)", dest, job.offset, actual)
    return dest, actual


# --------------------------------------------------------------------------------------------
# extract_archive
# --------------------------------------------------------------------------------------------


def _is_non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _check_member(archive: Path, name: str) -> None:
    """Refuse absolute names and ``..`` components (they would escape the extraction folder)."""
    normal = name.replace("\\", "/")
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path; refusing to extract. The archive "
            "is malformed or malicious: obtain a clean copy."
        )
    if ".." in PurePosixPath(normal).parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} contains '..' (path traversal); refusing to extract. "
            "The archive is malformed or malicious: obtain a clean copy."
        )


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    _check_member(archive, member.name)
    if member.ischr() or member.isblk() or member.isfifo():
        raise UnsafeArchiveError(
            f"{archive}: member {member.name!r} is a device or FIFO; refusing to extract."
        )
    if member.issym() or member.islnk():
        # Symlink targets are relative to the link's folder, hard-link targets to the root.
        base = posixpath.dirname(member.name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname.replace("\\", "/")))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise UnsafeArchiveError(
                f"{archive}: member {member.name!r} links to {member.linkname!r}, outside the "
                "archive; refusing to extract."
            )


def _extract_into(archive: Path, folder: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:  # check every member before writing any
                _check_member(archive, info.filename)
            zf.extractall(folder)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for member in members:
                _check_tar_member(archive, member)
            tf.extractall(folder, members=members, filter="data")
    else:
        raise DownloadError(
            f"{archive} is neither a zip nor a tar archive (.zip, .tar, .tar.gz, .tgz). If it "
            "is small it may be an HTML error or login page: check data.url, delete the file "
            "and rerun."
        )
    if not members:
        raise DownloadError(f"{archive} is an empty archive: check data.url and the file.")


def extract_archive(archive: Path, dest_dir: Path) -> Path:
    """Extract a .zip/.tar/.tar.gz/.tgz into ``dest_dir`` atomically; returns ``dest_dir``.

    Every member is checked before anything is written (absolute paths, ``..`` and links
    leaving the archive are refused, naming the member). Extraction goes to a temporary
    sibling folder that is renamed onto ``dest_dir`` only when complete. An existing,
    non-empty ``dest_dir`` is never overwritten.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not archive.is_file():
        raise MissingInputError(f"Archive {archive} does not exist; download it first.")
    if dest_dir.exists() and not dest_dir.is_dir():
        raise FolderInTheWayError(f"{dest_dir} exists and is not a folder; move it away.")
    if _is_non_empty_dir(dest_dir):
        raise FolderInTheWayError(
            f"Refusing to extract {archive} into {dest_dir}: the folder exists and is not "
            "empty. Use it as is (data.source: existing) or move it away and rerun."
        )
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    # os.mkdir (not mkdtemp) so the folder gets the umask's permissions: the raw data is often
    # shared with a group, and mkdtemp's 0700 would survive the rename.
    tmp = dest_dir.parent / f".{dest_dir.name}.{secrets.token_hex(4)}.extracting"
    os.mkdir(tmp)
    try:
        _extract_into(archive, tmp)
        try:
            os.rename(tmp, dest_dir)  # POSIX: atomically replaces a missing or empty folder
        except OSError as exc:
            raise FolderInTheWayError(
                f"Could not move the extracted {archive} into place at {dest_dir} ({exc}); "
                "another process may have filled it. Check the folder and rerun."
            ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("Extracted %s into %s", archive, dest_dir)
    return dest_dir


# --------------------------------------------------------------------------------------------
# ensure_raw
# --------------------------------------------------------------------------------------------


def _archive_name(url: str) -> str:
    """The file name an archive gets locally: the last component of the URL path."""
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise InvalidInputError(
            f"Cannot derive an archive file name from data.url {url!r}: its path must end in a "
            "file name such as C-NMC_2019.zip."
        )
    return name


def archive_stem(path: str | os.PathLike[str]) -> str | None:
    """The name of ``path`` without its archive suffix, or None when it is no archive name."""
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def raw_folder(data: dict[str, Any]) -> Path:
    """The folder holding the raw copy for the ``data`` settings: ``raw_dir``, or, when
    ``raw_dir`` names an archive file, the folder it is extracted into under ``archive_dir``;
    for source: kaggle, the fixed link under ``kaggle.cache_dir``."""
    if data["source"] == "kaggle":
        return kaggle_link(data["kaggle"])
    stem = archive_stem(data["raw_dir"])
    if stem is None:
        return Path(data["raw_dir"])
    return Path(data["archive_dir"]) / stem


def _unpacked_bytes(archive: Path) -> int:
    """Bytes the archive's members take once extracted (what extraction needs on disk)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return sum(info.file_size for info in zf.infolist())
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            return sum(m.size for m in tf.getmembers() if m.isfile())
    return 0  # extract_archive names the file that is no archive


def extract_raw_archive(archive: Path, dest: Path) -> Path:
    """Extract the user's archive ``archive`` once into ``dest`` (reused when it is there).

    The free space beside ``dest`` is checked first; extraction is atomic and refuses members
    that would leave the folder (``extract_archive``). The archive itself is only read.
    """
    if not archive.is_file():
        state = "is a folder, not an archive" if archive.is_dir() else "does not exist"
        raise RawDataMissingError(
            f"data.raw_dir = {str(archive)!r} {state}; expected a .zip, .tar.gz, .tgz or .tar"
            f" file. {CNMC_HELP}"
        )
    if _is_non_empty_dir(dest):
        log.info("Using %s, extracted from %s earlier", dest, archive)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    needed = _unpacked_bytes(archive)
    free = free_bytes(dest.parent)
    if needed > free:
        raise disk_full(dest.parent, needed, free, f"extracting {archive.name}")
    log.info("Extracting %s (%d bytes unpacked) into %s", archive, needed, dest)
    return extract_archive(archive, dest)


def _tree_stats(root: Path) -> tuple[int, int]:
    """(number of regular files, total bytes) under ``root``, following symlinked folders once."""
    files = size = 0
    seen: set[tuple[int, int]] = set()
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop: do not descend again
            dirnames[:] = []
            continue
        seen.add(key)
        for name in filenames:
            try:
                st = os.stat(os.path.join(folder, name))
            except FileNotFoundError:  # dangling symlink
                continue
            files += 1
            size += st.st_size
    return files, size


def _ensure_synthetic(raw_dir: Path, synthetic: dict[str, Any] | None) -> None:
    # Imported lazily: the synthetic generator is only needed for demo runs.
    synth = importlib.import_module("leukopipe.data.synthetic")
    settings = dict(synthetic or {})
    workers = int(settings.pop("workers", 1))  # how to render, not what: not part of the spec
    spec = synth.spec_from_dict(settings)
    if raw_dir.exists() and not raw_dir.is_dir():
        raise FolderInTheWayError(f"{raw_dir} exists and is not a folder; move it away.")
    if _is_non_empty_dir(raw_dir):
        # generate() only reads a complete folder made with the same spec, and raises (changing
        # nothing) when the spec differs, so stale demo data is caught rather than reused.
        synth.generate(raw_dir, spec, workers=workers)
        return
    # Generate beside the target and rename, so an interrupted run leaves no partial dataset
    # that a later run would have to clean up by hand.
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = raw_dir.parent / f".{raw_dir.name}.{secrets.token_hex(4)}.generating"
    os.mkdir(tmp)
    try:
        synth.generate(tmp, spec, workers=workers)
        os.rename(tmp, raw_dir)  # POSIX: atomically replaces a missing or empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_raw(
    source: str,
    raw_dir: Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    archive_dir: Path,
    synthetic: dict[str, Any] | None = None,
    progress: bool = True,
    raw_archive: Path | None = None,
    kaggle: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Make the raw dataset present under ``raw_dir`` and describe it (JSON-able dict).

    ``source``: ``existing`` (the folder must already hold the data), ``url`` (reuse a
    non-empty ``raw_dir``, else download the archive into ``archive_dir`` and extract it) or
    ``synthetic`` (generate the demo dataset with ``leukopipe.data.synthetic``; an existing folder
    is reused only if it was generated from the same spec). With ``raw_archive`` (source
    ``existing``: data.raw_dir names an archive file) the archive is extracted once into
    ``raw_dir``, its folder under ``archive_dir``. ``kaggle`` ({handle, version, cache_dir}:
    source ``kaggle``) fetches the dataset with kagglehub; ``raw_dir`` is then its fixed link.
    Returns {source, raw_dir, url, sha256, archive, files, bytes, synthetic, kaggle}; ``sha256`` is
    the archive's actual digest when this call downloaded or verified it, else None.
    """
    if source not in SOURCES:
        raise InvalidInputError(f"data.source is {source!r}; expected one of {', '.join(SOURCES)}.")
    raw_dir = Path(raw_dir)
    archive: Path | None = None
    actual_sha: str | None = None
    fetched: dict[str, Any] | None = None

    if source == "synthetic":
        _ensure_synthetic(raw_dir, synthetic)
    elif source == "kaggle":
        settings = kaggle or {}
        fetched = fetch_kaggle(settings["handle"], settings.get("version"), settings["cache_dir"])
        if Path(fetched["link"]) != raw_dir:
            raise InvalidInputError(f"--raw-dir {raw_dir} is not the Kaggle link {fetched['link']}")
    elif raw_archive is not None:
        archive = Path(raw_archive)
        extract_raw_archive(archive, raw_dir)
    elif _is_non_empty_dir(raw_dir):
        log.info("Using the existing raw data in %s (it is never modified)", raw_dir)
    elif source == "existing":
        state = "is not a folder" if raw_dir.exists() and not raw_dir.is_dir() else (
            "is empty" if raw_dir.exists() else "does not exist"
        )
        raise RawDataMissingError(f"Raw data folder {raw_dir} {state}. {CNMC_HELP}")
    else:  # "url"
        if not url:
            raise InvalidInputError(
                "data.source is 'url' but data.url is not set; set it in the config."
            )
        archive = Path(archive_dir) / _archive_name(url)
        _, actual_sha = _download(url, archive, sha256, progress=progress)
        extract_archive(archive, raw_dir)

    files, size = _tree_stats(raw_dir)
    if files == 0:
        raise RawDataMissingError(f"Raw data folder {raw_dir} holds no files. {CNMC_HELP}")
    return {
        "source": source,
        "raw_dir": str(raw_dir),
        "url": url,
        "sha256": actual_sha,
        "archive": str(archive) if archive is not None else None,
        "files": files,
        "bytes": size,
        "synthetic": synthetic if source == "synthetic" else None,
        "kaggle": fetched,
    }
