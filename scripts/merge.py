#!/usr/bin/env python
"""Merge step: index every labelled C-NMC image (training folds + preliminary test).

Reads the raw-data description written by the download step, decodes and hashes each image,
and writes index.parquet and summary.json. Stops with a list of every bad file otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.data.merge import merge_step
from leukopipe.plumbing import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument(
        "--raw-json",
        required=True,
        type=Path,
        help="raw.json written by the download step (the copy is ready)",
    )
    p.add_argument(
        "--raw-dir",
        required=True,
        type=Path,
        help="folder holding the raw copy now; index paths are relative to it",
    )
    p.add_argument(
        "--expected-size",
        type=int,
        required=True,
        help="width and height every image must have; 0 accepts any size",
    )
    p.add_argument("--workers", type=int, default=1, help="processes decoding and hashing images")
    p.add_argument("--index-out", required=True, type=Path, help="index.parquet to write")
    p.add_argument("--summary-out", required=True, type=Path, help="summary.json to write")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    merge_step(**vars(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
