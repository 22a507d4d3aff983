#!/usr/bin/env python
"""Write a synthetic C-NMC 2019 look-alike dataset (exact on-disk layout) into a folder.

Example:
    python scripts/make_synthetic.py data/raw/synthetic --layout B --nested --image-size 224
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from leukopipe.data.synthetic import SyntheticSpec, make_synthetic_step
from leukopipe.plumbing import cli

_HELP = {
    "seed": "random seed; the same settings always give byte-identical files",
    "layout": "A = archive package (C-NMC_training_data/ ...), "
              "B = mirror (C-NMC_Leukemia/training_data/ ...)",
    "nested": "add one extra level: a folder containing a folder of the same name",
    "labels_csv_up": "layout A only: put the prelim labels CSV one level above the prelim folder",
    "train_all_subjects": "ALL donors spread over the three training folds (>= 3)",
    "train_hem_subjects": "Hem donors spread over the three training folds (>= 3)",
    "prelim_all_subjects": "further, unseen ALL donors in the labelled preliminary test",
    "prelim_hem_subjects": "further, unseen Hem donors in the labelled preliminary test",
    "cells_per_subject": "inclusive range LO HI of images per donor, drawn per donor",
    "final_images": "number of unlabelled final-phase test images",
    "image_size": "side of the square images in pixels (the real data: 450)",
    "lowercase_h_fraction": "share of Hem donors whose file names use a lowercase 'h'",
    "class_signal": "strength of the ALL-versus-Hem morphology (0 = none, 1 = default)",
    "subject_signal": "strength of the per-donor staining signature (0 = none, 1 = default)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path,
                        help="output folder: must be new, empty, or hold this same dataset")
    defaults = SyntheticSpec()
    for field in dataclasses.fields(SyntheticSpec):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        helptext = f"{_HELP[field.name]} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=helptext)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs=2, metavar=("LO", "HI"), default=default,
                                help=helptext)
        elif field.name == "layout":
            parser.add_argument(flag, choices=("A", "B"), default=default, help=helptext)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=helptext)
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel rendering processes; the output does not depend on it "
                             "(default: 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    make_synthetic_step(vars(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
