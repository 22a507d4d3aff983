#!/usr/bin/env python
"""Pool folds step: one cross-validated model (or ensemble) scored out of fold.

Reads every fold's stored predictions and metrics.json (nothing is re-scored), concatenates
the folds' test sets (each labelled image once) and writes the pooled predictions.parquet and
metrics.json: metrics with subject-bootstrap intervals over the whole set, referral and
subject-level calls with each fold's own validation-chosen thresholds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.evaluate.eval_record import OutputFiles
from leukopipe.evaluate.pooled_folds import run_pool
from leukopipe.plumbing import cli


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--member-predictions", nargs="+", required=True, type=Path,
                   help="each fold's predictions (test set), one per fold")
    p.add_argument("--member-metrics", nargs="+", required=True, type=Path,
                   help="each fold's metrics.json, in the same order")
    p.add_argument("--threshold", type=float, required=True,
                   help="probability of ALL from which a cell is called ALL")
    p.add_argument("--bootstrap", type=int, required=True, help="bootstrap resamples for the CIs")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--predictions-out", required=True, type=Path, help="pooled predictions")
    p.add_argument("--metrics-out", required=True, type=Path, help="pooled metrics.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_pool(
        args.member_predictions,
        args.member_metrics,
        OutputFiles(args.predictions_out, args.metrics_out),
        threshold=args.threshold,
        n_boot=args.bootstrap,
        seed=args.seed,
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
