#!/usr/bin/env python
"""Evaluate step: score one trained experiment on its test manifest.

Writes predictions.parquet (image, subject, true label, probability of ALL, predicted label,
confidence, referred flag), the same for validation, and metrics.json (every metric with its
bootstrap interval, the per-subject accuracy, calibration, the expert-referral operating point
and the subject-level diagnosis thresholds chosen on validation, the train/validation gap at the
best epoch, and the provenance of checkpoint and code). Optionally the same files for 8-fold
dihedral test-time augmentation (same checkpoint) and a Grad-CAM grid of sample test cells.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.evaluate.eval_record import OutputFiles
from leukopipe.evaluate.scoring import (
    EvalSettings,
    EvaluationJob,
    GradcamSettings,
    evaluate_experiment,
)
from leukopipe.plumbing import cli
from leukopipe.plumbing.schema import defaults

GRADCAM = defaults("gradcam")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", required=True, type=Path, help="best.pt of the experiment")
    p.add_argument("--history", type=Path, default=None, help="history.parquet of the experiment")
    p.add_argument("--run-record", type=Path, default=None,
                   help="provenance.json beside the checkpoint: where and when it was trained")
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
        required=True,
        help="probability of ALL from which a cell is called ALL",
    )
    p.add_argument("--bootstrap", type=int, required=True, help="bootstrap resamples for the CIs")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument(
        "--referral-target",
        type=float,
        required=True,
        help="accuracy/sensitivity the accepted validation cells must reach",
    )
    p.add_argument(
        "--referral-criterion",
        choices=("accuracy", "sensitivity"),
        required=True,
        help="what the referral target is about",
    )
    p.add_argument("--batch-size", type=int, required=True, help="inference batch size")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument(
        "--experiment-json",
        required=True,
        help="JSON describing the experiment (name, split, backbone, strategy, seed)",
    )
    p.add_argument("--predictions-out", required=True, type=Path, help="predictions.parquet")
    p.add_argument(
        "--val-predictions-out",
        type=Path,
        default=None,
        help="validation predictions (for ensembles and subject-level thresholds downstream)",
    )
    p.add_argument(
        "--tta-metrics-out",
        type=Path,
        default=None,
        help="also score with 8-fold dihedral TTA and write its metrics.json here",
    )
    p.add_argument("--tta-predictions-out", type=Path, default=None, help="TTA test predictions")
    p.add_argument(
        "--tta-val-predictions-out", type=Path, default=None, help="TTA validation predictions"
    )
    p.add_argument(
        "--gradcam-out", type=Path, default=None, help="PNG grid of Grad-CAM overlays to write"
    )
    p.add_argument(
        "--gradcam-per-group",
        type=int,
        default=GRADCAM["per_group"],
        help="cells per group (ALL/Hem x called right/wrong) in the Grad-CAM grid",
    )
    p.add_argument(
        "--gradcam-stage",
        type=int,
        default=GRADCAM["stage"],
        help="feature stage of the maps (-1: deepest)",
    )
    p.add_argument(
        "--gradcam-alpha", type=float, default=GRADCAM["alpha"], help="opacity of the heat map"
    )
    p.add_argument("--metrics-out", required=True, type=Path, help="metrics.json")
    p.add_argument(
        "--history-out",
        type=Path,
        default=None,
        help="copy of history.parquet beside the metrics, so eval/ alone makes tables",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    gradcam = None
    if args.gradcam_out:
        gradcam = GradcamSettings(
            args.gradcam_out, args.gradcam_per_group, args.gradcam_stage, args.gradcam_alpha
        )
    settings = EvalSettings.from_flags(args, batch_size=args.batch_size)
    evaluate_experiment(
        EvaluationJob(
            checkpoint=args.checkpoint,
            history=args.history,
            run_record=args.run_record,
            test_manifest=args.test_manifest,
            test_pixels=args.test_pixels,
            val_manifest=args.val_manifest,
            val_pixels=args.val_pixels,
            settings=settings,
            experiment=json.loads(args.experiment_json),
            outputs=OutputFiles(args.predictions_out, args.metrics_out, args.val_predictions_out),
            tta_predictions=args.tta_predictions_out,
            tta_val_predictions=args.tta_val_predictions_out,
            tta_metrics=args.tta_metrics_out,
            history_out=args.history_out,
            gradcam=gradcam,
            device=args.device,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
