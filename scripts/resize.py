#!/usr/bin/env python
"""Resize step: materialise a validation or test manifest's pixels (resize only, never augmented).

Writes a copy of the manifest with a store_row column and the uint8 pixel store it points to.
As in the augment step, the store's disk space is reserved first, each image must still match
the sha256 of the index, and SIGTERM exits 143 without leaving a half-written file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.augment.plan import resize_step
from leukopipe.plumbing import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument("--manifest", required=True, type=Path, help="val.parquet or test.parquet")
    p.add_argument(
        "--raw-dir", required=True, type=Path, help="raw folder the manifest paths start from"
    )
    p.add_argument("--image-size", type=int, required=True, help="side of the stored images, px")
    p.add_argument("--workers", type=int, default=1, help="processes decoding images")
    p.add_argument("--manifest-out", required=True, type=Path, help="manifest copy to write")
    p.add_argument("--pixels-out", required=True, type=Path, help="uint8 .npy pixel store to write")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    resize_step(**vars(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
