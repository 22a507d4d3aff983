#!/usr/bin/env python
"""Fetch weights step: download a backbone's ImageNet weights to a local .safetensors file.

Run where there is internet (login node); compute nodes then train from the file offline.
Skips the download when the file already exists.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import cli
from leukopipe.train.weights import fetch_step


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument("--backbone", required=True, help="timm model name, e.g. resnet50")
    p.add_argument("--out", type=Path, default=None,
                   help="weights file to write (default: resources/weights/<backbone>.safetensors)"
                   "; a .json with timm's pretrained config is written next to it")
    p.add_argument("--force", action="store_true", help="download again even if the file exists")
    p.add_argument("--record-out", type=Path, default=None,
                   help="also write a JSON record of the file (sha256, timm tag) here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    fetch_step(**vars(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
