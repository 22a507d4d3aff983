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

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from leukopipe.evaluate.inference import load_classifier
from leukopipe.evaluate.scoring import evaluate, gradcam_grid, train_val_gap
from leukopipe.plumbing import atomic, cli
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.hashing import sha256_file
from leukopipe.plumbing.provenance import provenance
from leukopipe.plumbing.readers import read_parquet
from leukopipe.plumbing.schema import defaults

log = logging.getLogger("evaluate")
GRADCAM = defaults("gradcam")


def _run_record(path: Path | None) -> dict | None:
    if path is None:
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return {k: record.get(k) for k in ("host", "time_utc", "code_version", "sha256")}


def main(argv: Sequence[str] | None = None) -> int:
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
    args = p.parse_args(argv)

    clf = load_classifier(args.checkpoint, args.device)
    test = read_parquet(args.test_manifest)
    val = read_parquet(args.val_manifest)
    tta = args.tta_metrics_out is not None
    if tta and not (args.tta_predictions_out and args.tta_val_predictions_out):
        raise InvalidInputError(
            "--tta-metrics-out needs --tta-predictions-out and --tta-val-predictions-out"
        )
    variants = evaluate(
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
        tta=tta,
    )
    history = read_parquet(args.history) if args.history else pd.DataFrame()
    meta = clf.meta
    experiment = json.loads(args.experiment_json)
    common = {
        "training": {
            **train_val_gap(history, meta.get("best_epoch")),
            "backbone": meta["backbone"],
            "strategy": meta.get("strategy"),
            "partial_stages": meta.get("partial_stages"),
            "image_size": meta["image_size"],
            "train_config": meta.get("train_config"),
            # the fetch_weights record (timm tag, its pretraining data, sha256); None: no weights
            "weights": (meta.get("extra_meta") or {}).get("weights"),
            "checkpoint_code_version": (meta.get("provenance") or {}).get("code_version"),
            # host and time of the training, which the checkpoint leaves out (identical bytes)
            "run": _run_record(args.run_record),
        },
        "checkpoint": {"path": str(args.checkpoint), "sha256": sha256_file(args.checkpoint)},
        "provenance": provenance(),
    }
    outputs = {
        "plain": (args.predictions_out, args.val_predictions_out, args.metrics_out),
        "tta": (args.tta_predictions_out, args.tta_val_predictions_out, args.tta_metrics_out),
    }
    for variant, (predictions, val_predictions, record) in variants.items():
        pred_out, val_out, metrics_out = outputs[variant]
        name = experiment.get("name", "experiment")
        record["experiment"] = {
            **experiment,
            "name": f"{name}+tta" if variant == "tta" else name,
            "variant": "tta" if variant == "tta" else "single",
        }
        record.update(common)
        record["files"] = {
            "predictions": pred_out.name,
            "val_predictions": val_out.name if val_out else None,
        }
        atomic.write_parquet(pred_out, predictions)
        if val_out:
            atomic.write_parquet(val_out, val_predictions)
        atomic.write_json(metrics_out, record)
    if args.history_out:
        atomic.write_parquet(args.history_out, history)
    if args.gradcam_out:
        gradcam_grid(
            clf,
            variants["plain"][0],
            test,
            args.test_pixels,
            args.gradcam_out,
            per_group=args.gradcam_per_group,
            stage=args.gradcam_stage,
            alpha=args.gradcam_alpha,
            title=f"Grad-CAM on test cells: {experiment.get('name', args.checkpoint.parent.name)}",
        )
    record = variants["plain"][2]
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
