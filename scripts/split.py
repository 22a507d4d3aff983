#!/usr/bin/env python
"""Split step: train / val / test manifests plus a leakage audit (audit.json).

Modes: image (stratified by class at image level, the Ahmed study), patient (subject-disjoint,
class-stratified), official (training folds vs the labelled preliminary test), cv<k>-f<i>
(fold i of a subject-disjoint, class-stratified k-fold cross-validation: test = fold i).
Validation is carved from the training part and never from test. The audit counts subjects,
byte-identical images and near-duplicate images (perceptual hash) shared between splits.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.data.split import SplitRequest, check_mode, split_step
from leukopipe.data.split_modes import SPLIT_MODES
from leukopipe.plumbing import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument("--index", required=True, type=Path, help="index.parquet from the merge step")
    p.add_argument(
        "--mode",
        required=True,
        type=check_mode,
        help="split id: " + ", ".join(m.id_form for m in SPLIT_MODES.values())
        + " (<k>-f<i>: fold i of a k-fold mode)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        required=True,
        help="share of labelled images held out for test (ignored by mode official)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        required=True,
        help="share of the training part carved out for validation",
    )
    p.add_argument("--seed", type=int, required=True, help="seed of the random assignment")
    p.add_argument(
        "--near-duplicate-max-distance",
        type=int,
        required=True,
        help="images in two splits whose perceptual hashes differ in at most this many bits"
        " (of 256) are reported as near-duplicates in audit.json",
    )
    p.add_argument(
        "--out-dir",
        required=True,
        type=Path,
        help="folder receiving train.parquet, val.parquet, test.parquet, audit.json",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    split_step(SplitRequest(**vars(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
