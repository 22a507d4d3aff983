"""The download step as one call: make the raw copy present and write raw.json describing it.

Its own module because ``raw_identity`` (the content digest) imports ``download``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from leukopipe.data.download import ensure_raw
from leukopipe.data.raw_identity import CACHE_NAME, content_digest
from leukopipe.data.raw_layout import locate
from leukopipe.plumbing import atomic
from leukopipe.plumbing.provenance import provenance

# the step's log lines keep the name they had when the script logged them
_step_log = logging.getLogger("download")


@dataclass(frozen=True)
class DownloadRequest:
    """What the download step is asked for (the script's flags, by the same names)."""

    source: str
    raw_dir: Path
    archive_dir: Path
    synthetic_json: str
    out: Path
    raw_archive: Path | None = None
    url: str | None = None
    sha256: str | None = None
    workers: int = 1
    kaggle_handle: str | None = None
    kaggle_version: int | None = None
    kaggle_cache_dir: Path | None = None
    no_progress: bool = False


def download_step(req: DownloadRequest) -> None:
    """Make the raw data present under ``req.raw_dir`` (nothing inside it is modified) and write
    ``req.out``: where the copy is, its layout, its content digest and provenance."""
    info = ensure_raw(
        req.source,
        req.raw_dir,
        url=req.url or None,
        sha256=req.sha256 or None,
        archive_dir=req.archive_dir,
        synthetic={**json.loads(req.synthetic_json), "workers": req.workers},
        progress=not req.no_progress,
        raw_archive=req.raw_archive,
        kaggle={
            "handle": req.kaggle_handle,
            "version": req.kaggle_version,
            "cache_dir": req.kaggle_cache_dir,
        },
    )
    layout = locate(req.raw_dir)
    record = {
        **info,
        # what the data are: merge reruns when the copy no longer matches this digest
        "content_digest": content_digest(req.raw_dir, req.out.parent / CACHE_NAME),
        "layout": layout.describe(),
        # where the copy was at this step: provenance only (steps get the location at run time)
        "raw_dir": str(req.raw_dir),
        "provenance": provenance(),
    }
    atomic.write_json(req.out, record)
    _step_log.info(
        "raw data ready at %s (layout %s, %d fold(s))",
        layout.root,
        layout.layout,
        len(layout.folds),
    )
