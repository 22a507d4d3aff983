#!/usr/bin/env python
"""Evaluate step: score one trained experiment on its test manifest.

Writes predictions.parquet (image, subject, true label, probability of ALL, predicted label,
confidence, referred flag) and metrics.json (every metric with its bootstrap interval, the
per-subject accuracy, calibration, the expert-referral operating point chosen on validation,
the train/validation gap at the best epoch, and the provenance of checkpoint and code).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from leukopipe import atomic, cli
from leukopipe.evaluate import evaluate, file_sha256, train_val_gap
from leukopipe.inference import load_classifier
from leukopipe.provenance import provenance

log = logging.getLogger("evaluate")


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="best.pt of the experiment")
    p.add_argument("--history", type=Path, default=None, help="history.parquet of the experiment")
    p.add_argument(
        "--test-manifest", required=True, type=Path, help="test manifest (with store_row)"
    )
    p.add_argument("--test-pixels", required=True, type=Path, help="test pixel store (.npy)")
    p.add_argument(
        "--val-manifest",
        required=True,
        type=Path,
        help="validation manifest, used only to choose the referral threshold",
    )
    p.add_argument("--val-pixels", required=True, type=Path, help="validation pixel store (.npy)")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="probability of ALL from which a cell is called ALL",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument(
        "--referral-target",
        type=float,
        default=0.95,
        help="accuracy/sensitivity the accepted validation cells must reach",
    )
    p.add_argument(
        "--referral-criterion",
        choices=("accuracy", "sensitivity"),
        default="accuracy",
        help="what the referral target is about",
    )
    p.add_argument("--batch-size", type=int, default=512, help="inference batch size")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument(
        "--experiment-json",
        default="{}",
        help="JSON describing the experiment (name, split, backbone, strategy, seed)",
    )
    p.add_argument("--predictions-out", required=True, type=Path, help="predictions.parquet")
    p.add_argument("--metrics-out", required=True, type=Path, help="metrics.json")
    p.add_argument(
        "--history-out",
        type=Path,
        default=None,
        help="copy of history.parquet beside the metrics, so eval/ alone makes tables",
    )
    args = p.parse_args(argv)

    clf = load_classifier(args.checkpoint, args.device)
    test = pd.read_parquet(args.test_manifest)
    val = pd.read_parquet(args.val_manifest)
    predictions, record = evaluate(
        clf,
        test,
        args.test_pixels,
        val,
        args.val_pixels,
        threshold=args.threshold,
        n_boot=args.bootstrap,
        seed=args.seed,
        referral_target=args.referral_target,
        referral_criterion=args.referral_criterion,
        batch_size=args.batch_size,
    )
    history = pd.read_parquet(args.history) if args.history else pd.DataFrame()
    meta = clf.meta
    record["experiment"] = json.loads(args.experiment_json)
    record["training"] = {
        **train_val_gap(history, meta.get("best_epoch")),
        "backbone": meta["backbone"],
        "strategy": meta.get("strategy"),
        "partial_stages": meta.get("partial_stages"),
        "image_size": meta["image_size"],
        "train_config": meta.get("train_config"),
        "checkpoint_code_version": (meta.get("provenance") or {}).get("code_version"),
    }
    record["checkpoint"] = {"path": str(args.checkpoint), "sha256": file_sha256(args.checkpoint)}
    record["provenance"] = provenance()
    atomic.write_parquet(args.predictions_out, predictions)
    if args.history_out:
        atomic.write_parquet(args.history_out, history)
    atomic.write_json(args.metrics_out, record)
    m = record["metrics"]
    log.info(
        "test n=%d: accuracy %.4f, F1(ALL) %.4f, weighted F1 %.4f, AUC %s",
        record["n_test"],
        m["accuracy"],
        m["f1"],
        m["weighted_f1"],
        m["roc_auc"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
