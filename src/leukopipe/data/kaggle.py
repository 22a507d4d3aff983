"""data.source: kaggle: fetch a Kaggle dataset with kagglehub into a cache folder of our choosing.

kagglehub keeps each dataset version at ``<cache_dir>/datasets/<owner>/<dataset>/versions/<n>/``
and resumes an interrupted archive download (HTTP Range) on the next call. Which version that is
only becomes known when Kaggle answers, yet every later step must know the raw folder when the
workflow starts; so the download step owns one fixed path, ``<cache_dir>/current/<owner>/
<dataset>``, a symbolic link it points (atomically) at the version folder it fetched, and records
what it fetched beside it (``<dataset>.json``: handle, version, file count, sha256 of the file
list). A pinned version whose folder still matches the record is used without asking Kaggle.
Nothing inside a version folder is written here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from leukopipe.plumbing.atomic import write_json
from leukopipe.plumbing.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_HANDLE = "andrewmvd/leukemia-classification"
CREDENTIALS_HELP = (
    "set KAGGLE_USERNAME and KAGGLE_KEY, or put your API token file kaggle.json into "
    "~/.kaggle/ (or $KAGGLE_CONFIG_DIR)"
)


class KaggleError(UserError, RuntimeError):
    """Kaggle could not deliver the dataset (credentials, handle, network, damaged cache)."""


def _split_handle(handle: str) -> tuple[str, str]:
    owner, _, dataset = handle.partition("/")
    if not owner or not dataset or "/" in dataset:
        raise KaggleError(
            f"data.kaggle.handle = {handle!r} is not a dataset handle; expected <owner>/<dataset>,"
            f" e.g. {DEFAULT_HANDLE}"
        )
    return owner, dataset


def kaggle_link(kaggle: dict[str, Any]) -> Path:
    """The fixed raw folder of source: kaggle (a link the download step points at a version)."""
    owner, dataset = _split_handle(kaggle["handle"])
    return Path(kaggle["cache_dir"]) / "current" / owner / dataset


def _record_path(link: Path) -> Path:
    return link.with_name(link.name + ".json")


def file_list(folder: Path) -> tuple[int, str]:
    """(file count, sha256 over the sorted 'relative path<TAB>size' lines) of ``folder``."""
    lines = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            lines.append(f"{path.relative_to(folder).as_posix()}\t{path.stat().st_size}\n")
    lines.sort()
    return len(lines), hashlib.sha256("".join(lines).encode()).hexdigest()


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _point_link(link: Path, target: Path) -> None:
    """Make ``link`` a relative symbolic link to ``target``, replacing an older link atomically."""
    if link.exists() and not link.is_symlink():
        raise KaggleError(
            f"{link} exists and is not the link the download step manages; move it away and rerun"
        )
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.link")
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


def _fetch(handle: str, version: int | None, cache_dir: Path) -> Path:
    """Ask kagglehub for the dataset version (latest when None); returns its folder."""
    # kagglehub reads its cache folder from the environment at every call
    os.environ["KAGGLEHUB_CACHE"] = str(cache_dir.resolve())
    import kagglehub  # imported here: only this source needs it (and it pulls in requests)
    import requests
    from kagglehub.config import get_kaggle_credentials
    from kagglehub.exceptions import DataCorruptionError, UnauthenticatedError

    versioned = f"{handle}/versions/{version}" if version is not None else handle
    try:
        return Path(kagglehub.dataset_download(versioned))
    except UnauthenticatedError as exc:
        raise KaggleError(
            f"Kaggle asks for credentials to download {handle}: {CREDENTIALS_HELP}"
        ) from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            if get_kaggle_credentials() is None:
                raise KaggleError(
                    f"Kaggle refused {handle} without credentials (HTTP {status}): "
                    f"{CREDENTIALS_HELP}"
                ) from exc
            raise KaggleError(
                f"Kaggle refused the credentials for {handle} (HTTP {status}): check "
                "KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json, and accept the dataset's "
                "terms on its Kaggle page"
            ) from exc
        if status == 404:
            what = f"version {version} of " if version is not None else ""
            raise KaggleError(
                f"Kaggle has no {what}{handle} (HTTP 404): check data.kaggle.handle"
                f"{' and data.kaggle.version' if version is not None else ''}"
            ) from exc
        raise KaggleError(f"Kaggle answered HTTP {status} for {handle}; rerun later") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise KaggleError(
            f"Could not reach Kaggle for {handle} ({type(exc).__name__}); the part already "
            f"downloaded stays under {cache_dir} and the next run resumes it"
        ) from exc
    except DataCorruptionError as exc:
        raise KaggleError(
            f"The archive of {handle} arrived damaged (checksum mismatch; kagglehub deleted it); "
            "rerun to download it again"
        ) from exc


def fetch_kaggle(handle: str, version: int | None, cache_dir: Path) -> dict[str, Any]:
    """Make the dataset present under ``cache_dir`` and point the fixed link at it.

    Returns the record {handle, version, files, file_list_sha256, folder, link}. A second call
    for the same version downloads nothing: a pinned version whose folder matches the record
    is used as is, and kagglehub itself reuses a completed version folder.
    """
    cache_dir = Path(cache_dir)
    link = kaggle_link({"handle": handle, "cache_dir": cache_dir})
    record_path = _record_path(link)
    known = _read_record(record_path)
    if (
        version is not None
        and known is not None
        and (known.get("handle"), known.get("version")) == (handle, version)
        and link.is_dir()
        and file_list(link) == (known["files"], known["file_list_sha256"])
    ):
        log.info("Kaggle %s version %d already fetched into %s", handle, version, link.resolve())
        return known

    folder = _fetch(handle, version, cache_dir)
    if folder.parent.name != "versions" or not folder.name.isdigit():
        raise KaggleError(f"kagglehub returned {folder}, not a versions/<n> folder of {handle}")
    got = int(folder.name)
    files, digest = file_list(folder)
    if files == 0:
        raise KaggleError(f"Kaggle's {handle} version {got} holds no files ({folder})")
    if known is not None and (known.get("handle"), known.get("version")) == (handle, got) and (
        (known["files"], known["file_list_sha256"]) != (files, digest)
    ):
        raise KaggleError(
            f"{folder} no longer holds what was downloaded ({known['files']} files recorded, "
            f"{files} now); delete that folder and rerun to download it again"
        )
    _point_link(link, folder)
    record = {
        "handle": handle,
        "version": got,
        "files": files,
        "file_list_sha256": digest,
        "folder": str(folder),
        "link": str(link),
    }
    write_json(record_path, record)
    log.info("Kaggle %s version %d: %d files in %s (via %s)", handle, got, files, folder, link)
    return record
