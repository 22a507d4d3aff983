#!/usr/bin/env python
"""Predict: classify new cell images with a trained best.pt and flag cells for expert review.

Writes a CSV with, per image: probability of ALL, predicted class (all/hem), confidence and a
refer-to-expert flag (confidence below the threshold chosen on validation by the evaluate step,
read from its metrics.json, which must record this very checkpoint, or given with
--refer-below). Finding no image is an error. An unreadable image, or one the merge step would
refuse (not 8-bit RGB, not square, too small), stops the run, naming it; with --keep-going it
gets an error column entry and the rest are still scored (exit 1 when none could be). For a
single image, --gradcam-out also saves its Grad-CAM map (the regions behind the call) as a PNG.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.evaluate.predict import PredictJob, predict_images
from leukopipe.plumbing import cli


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", required=True, type=Path, help="a trained best.pt")
    p.add_argument(
        "--images",
        required=True,
        type=Path,
        help="one image, a folder of images (searched recursively) or a CSV with a column of paths",
    )
    p.add_argument("--column", default="path", help="the CSV column holding image paths")
    p.add_argument(
        "--metrics",
        type=Path,
        default=None,
        help="metrics.json of the same experiment: its validation-chosen referral threshold "
        "(refused when it records another checkpoint or backbone)",
    )
    p.add_argument(
        "--refer-below",
        type=float,
        default=None,
        help="refer cells whose confidence is below this (overrides --metrics)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="probability of ALL from which a cell is called ALL",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="record unreadable images in the error column and continue",
    )
    p.add_argument(
        "--gradcam-out",
        type=Path,
        default=None,
        help="also write a Grad-CAM figure (PNG) of the called class; needs a single image",
    )
    p.add_argument(
        "--gradcam-stage", type=int, default=-1, help="feature stage of the map (-1: deepest)"
    )
    p.add_argument("--gradcam-alpha", type=float, default=0.45, help="opacity of the heat map")
    p.add_argument("--out", required=True, type=Path, help="CSV file to write")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    predict_images(
        PredictJob(
            checkpoint=args.checkpoint,
            images=args.images,
            out=args.out,
            column=args.column,
            metrics=args.metrics,
            refer_below=args.refer_below,
            threshold=args.threshold,
            batch_size=args.batch_size,
            device=args.device,
            keep_going=args.keep_going,
            gradcam_out=args.gradcam_out,
            gradcam_stage=args.gradcam_stage,
            gradcam_alpha=args.gradcam_alpha,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
