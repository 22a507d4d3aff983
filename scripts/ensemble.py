#!/usr/bin/env python
"""Ensemble step: soft-voting over trained experiments, from their stored predictions.

Averages the members' probabilities of ALL on test and validation and writes the same files as
the evaluate step (predictions.parquet, val_predictions.parquet, metrics.json with bootstrap
intervals, referral and subject-level diagnosis chosen on validation). No model is loaded.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.evaluate.ensemble import load_member_predictions, soft_vote
from leukopipe.evaluate.eval_record import build_record
from leukopipe.plumbing import atomic, cli
from leukopipe.plumbing.provenance import provenance

log = logging.getLogger("ensemble")


def main(argv: Sequence[str] | None = None) -> int:
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
    args = p.parse_args(argv)

    test = soft_vote(load_member_predictions(args.members, "predictions.parquet"))
    val = soft_vote(load_member_predictions(args.members, "val_predictions.parquet"))
    pred, val_pred, record = build_record(
        test,
        test["prob_all"].to_numpy(),
        val,
        val["prob_all"].to_numpy(),
        threshold=args.threshold,
        n_boot=args.bootstrap,
        seed=args.seed,
        referral_target=args.referral_target,
        referral_criterion=args.referral_criterion,
    )
    record["experiment"] = {**json.loads(args.experiment_json), "variant": "ensemble"}
    record["members"] = [str(m) for m in args.members]
    record["files"] = {
        "predictions": args.predictions_out.name,
        "val_predictions": args.val_predictions_out.name,
    }
    record["provenance"] = provenance()
    atomic.write_parquet(args.predictions_out, pred)
    atomic.write_parquet(args.val_predictions_out, val_pred)
    atomic.write_json(args.metrics_out, record)
    m = record["metrics"]
    log.info(
        "soft vote of %d: test n=%d accuracy %.4f AUC %s",
        len(args.members),
        record["n_test"],
        m["accuracy"],
        m["roc_auc"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
