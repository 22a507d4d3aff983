#!/usr/bin/env python
"""Download step: make the raw C-NMC data present and describe where it is (raw.json).

source=existing uses an extracted copy at --raw-dir; source=url downloads an archive
(sha256-verified, resumable, with a progress bar) and extracts it there; source=kaggle
fetches a Kaggle dataset with kagglehub and points --raw-dir (a link) at it; source=synthetic
generates the synthetic dataset in the C-NMC on-disk layout. The copy is then recognised
(layout A, B or nested) and described in raw.json; nothing inside --raw-dir is modified.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.data.download import SOURCES
from leukopipe.data.download_step import DownloadRequest, download_step
from leukopipe.plumbing import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument(
        "--source",
        required=True,
        choices=SOURCES,
        help="where the raw images come from",
    )
    p.add_argument(
        "--raw-dir",
        required=True,
        type=Path,
        help="folder holding (or receiving) the extracted copy; treated as read-only",
    )
    p.add_argument(
        "--raw-archive",
        type=Path,
        default=None,
        help="archive file to extract once into --raw-dir (source=existing, raw_dir an archive)",
    )
    p.add_argument("--url", default=None, help="archive URL (source=url)")
    p.add_argument(
        "--sha256",
        default=None,
        help="expected sha256 of the archive (source=url); strongly recommended",
    )
    p.add_argument(
        "--archive-dir",
        type=Path,
        required=True,
        help="where a downloaded archive is kept (source=url)",
    )
    p.add_argument(
        "--synthetic-json",
        required=True,
        help="JSON object with the synthetic dataset's settings (source=synthetic)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes rendering the synthetic dataset (source=synthetic)",
    )
    p.add_argument("--kaggle-handle", default=None, help="<owner>/<dataset> (source=kaggle)")
    p.add_argument(
        "--kaggle-version",
        type=int,
        default=None,
        help="dataset version to fetch (source=kaggle; default: the latest)",
    )
    p.add_argument(
        "--kaggle-cache-dir",
        type=Path,
        default=None,
        help="kagglehub's cache folder, holding the version folders and the link (source=kaggle)",
    )
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("--out", required=True, type=Path, help="raw.json to write")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    download_step(DownloadRequest(**vars(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
