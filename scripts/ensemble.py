#!/usr/bin/env python
"""Ensemble step: soft-voting over trained experiments, from their stored predictions.

Averages the members' probabilities of ALL on test and validation and writes the same files as
the evaluate step (predictions.parquet, val_predictions.parquet, metrics.json with bootstrap
intervals, referral and subject-level diagnosis chosen on validation). No model is loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.evaluate.ensemble import run_ensemble
from leukopipe.evaluate.eval_record import OutputFiles, ScoringSettings
from leukopipe.plumbing import cli


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument(
        "--members",
        nargs="+",
        required=True,
        type=Path,
        help="eval/<experiment> folders holding predictions.parquet and val_predictions.parquet",
    )
    p.add_argument(
        "--threshold", type=float, required=True, help="probability of ALL from which ALL is called"
    )
    p.add_argument("--bootstrap", type=int, required=True, help="bootstrap resamples for the CIs")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument(
        "--referral-target", type=float, required=True, help="referral target on validation"
    )
    p.add_argument(
        "--referral-criterion",
        choices=("accuracy", "sensitivity"),
        required=True,
        help="what the referral target is about",
    )
    p.add_argument(
        "--experiment-json",
        required=True,
        help="JSON describing the ensemble (name, split, group, members)",
    )
    p.add_argument("--predictions-out", required=True, type=Path, help="predictions.parquet")
    p.add_argument("--val-predictions-out", required=True, type=Path, help="validation ones")
    p.add_argument("--metrics-out", required=True, type=Path, help="metrics.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = ScoringSettings.from_flags(args)
    run_ensemble(
        args.members,
        settings,
        json.loads(args.experiment_json),
        OutputFiles(args.predictions_out, args.metrics_out, args.val_predictions_out),
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
