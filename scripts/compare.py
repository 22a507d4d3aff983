#!/usr/bin/env python
"""Compare step: comparison tables and figures from stored evaluation results (no training).

Reads metrics.json files (with predictions.parquet and history.parquet beside each) and the
split audits (audit.json: each test set's protocol and leakage counts) and the weights records
(weights/<backbone>.json: the timm tag each pretrained run started from), and writes
tables/comparison.{md,csv,tex} plus rows.parquet and figures/*.png. Cross-validated models come
with their out-of-fold pools (the pool_folds step's metrics.json); nothing is computed here but
tables and figures. A copied results/<run>/eval/ tree, results/<run>/splits/*/audit.json and
results/<run>/weights/*.json are all it needs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.plumbing import cli
from leukopipe.report.compare_step import compare_step


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The step's flags."""
    p = cli.parser(__doc__)
    p.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        type=Path,
        help="metrics.json files; predictions.parquet and history.parquet sit beside each",
    )
    p.add_argument(
        "--audits",
        nargs="+",
        required=True,
        type=Path,
        help="splits/<split>/audit.json of every split the results were tested on",
    )
    p.add_argument(
        "--tables-dir", required=True, type=Path, help="folder for comparison.{md,csv,tex}"
    )
    p.add_argument("--figures-dir", required=True, type=Path, help="folder for the PNG figures")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    compare_step(**vars(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
