#!/usr/bin/env python
"""k-NN probe step: score a frozen experiment's pretrained backbone by its nearest neighbours.

No training: the backbone's pre-logit features of the experiment's training store are the
neighbour bank, k is chosen on validation macro-F1, and the test cells are scored once with it.
Writes predictions.parquet, val_predictions.parquet and metrics.json like the evaluate step
(bootstrap intervals, referral, subject-level diagnosis), named <experiment>.knn.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.evaluate.eval_record import OutputFiles, ScoringSettings
from leukopipe.evaluate.knn import ProbeJob, run_probe
from leukopipe.plumbing import cli


def _weights(value: str) -> Path | None:
    return None if value.lower() == "none" else Path(value)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--experiment-json",
        required=True,
        help="JSON describing the frozen experiment (name, split, backbone, seed, ...)",
    )
    p.add_argument("--image-size", type=int, required=True, help="side of the stores' images")
    p.add_argument(
        "--pretrained-weights",
        type=_weights,
        required=True,
        help="weights file of the backbone, or 'none' (random initialisation from the seed)",
    )
    p.add_argument("--weights-record", type=Path, default=None,
                   help="record of the weights (fetch_weights); the file must match it")
    for part in ("train", "val", "test"):
        p.add_argument(f"--{part}-manifest", required=True, type=Path, help=f"{part} manifest")
        p.add_argument(f"--{part}-pixels", required=True, type=Path, help=f"{part} pixel store")
    p.add_argument("--threshold", type=float, required=True,
                   help="probability of ALL from which a cell is called ALL")
    p.add_argument("--bootstrap", type=int, required=True, help="bootstrap resamples for the CIs")
    p.add_argument("--referral-target", type=float, required=True,
                   help="accuracy/sensitivity the accepted validation cells must reach")
    p.add_argument("--referral-criterion", choices=("accuracy", "sensitivity"), required=True,
                   help="what the referral target is about")
    p.add_argument("--batch-size", type=int, required=True, help="feature batch size")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--predictions-out", required=True, type=Path, help="predictions.parquet")
    p.add_argument("--val-predictions-out", required=True, type=Path, help="validation ones")
    p.add_argument("--metrics-out", required=True, type=Path, help="metrics.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = ScoringSettings.from_flags(args)
    run_probe(
        ProbeJob(
            experiment=json.loads(args.experiment_json),
            image_size=args.image_size,
            weights=args.pretrained_weights,
            weights_record=args.weights_record,
            stores={
                part: (getattr(args, f"{part}_manifest"), getattr(args, f"{part}_pixels"))
                for part in ("train", "val", "test")
            },
            outputs=OutputFiles(args.predictions_out, args.metrics_out, args.val_predictions_out),
            settings=settings,
            batch_size=args.batch_size,
            device=args.device,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
