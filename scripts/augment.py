#!/usr/bin/env python
"""Augment step: balance the training part to --target-per-class images per class, or not at all.

Applies the study's nine transforms (in order, with the configured parameters) to generate
extra samples, records for every generated row its source image, seed and drawn parameters
(train_balanced.parquet), and materialises all training pixels at --image-size into a uint8
store that training reads without decoding. With --target-per-class none nothing is generated:
the store holds the resized originals, each class as many as the split gives it.

The store's disk space is reserved before any image is read (a full disk stops the step at once,
naming the folder), each source image must still match the sha256 of the index, and SIGTERM
stops the workers and exits 143 without leaving a half-written file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.augment.plan import AugmentRequest, augment_step
from leukopipe.plumbing import cli


def _target(text: str) -> int | None:
    """``N`` images per class, or ``none``: no balancing."""
    return None if text.lower() == "none" else int(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument(
        "--train-manifest", required=True, type=Path, help="train.parquet from the split step"
    )
    p.add_argument(
        "--raw-dir", required=True, type=Path, help="raw folder the manifest paths start from"
    )
    p.add_argument("--image-size", type=int, required=True, help="side of the stored images, px")
    p.add_argument(
        "--target-per-class",
        type=_target,
        required=True,
        metavar="N|none",
        help="images per class after balancing, originals included; none: no augmentation and no"
        " balancing (the resized originals)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed from which every sample's seed derives (needed when balancing)",
    )
    p.add_argument(
        "--transforms-json",
        default=None,
        help="JSON object with the nine transforms' parameters (needed when balancing)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes generating samples")
    p.add_argument(
        "--manifest-out", required=True, type=Path, help="train_balanced.parquet to write"
    )
    p.add_argument("--pixels-out", required=True, type=Path, help="uint8 .npy pixel store to write")
    p.add_argument(
        "--stats-out", type=Path, default=None, help="optional JSON with counts and throughput"
    )
    args = p.parse_args(argv)
    if args.target_per_class is not None and (args.seed is None or args.transforms_json is None):
        p.error("balancing (--target-per-class N) needs --seed and --transforms-json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    augment_step(AugmentRequest(**vars(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
