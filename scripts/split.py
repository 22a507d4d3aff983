#!/usr/bin/env python
"""Split step: train / val / test manifests plus a leakage audit (audit.json).

Modes: image (stratified by class at image level, the Ahmed study), patient (subject-disjoint,
class-stratified), official (training folds vs the labelled preliminary test), cv<k>-f<i>
(fold i of a subject-disjoint, class-stratified k-fold cross-validation: test = fold i).
Validation is carved from the training part and never from test. The audit counts subjects,
byte-identical images and near-duplicate images (perceptual hash) shared between splits.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from leukopipe.data.folds import assign_folds
from leukopipe.data.split import SPLITS, audit, check_mode, make_splits
from leukopipe.data.split_modes import SPLIT_MODES, parse_split_id
from leukopipe.plumbing import atomic, cli
from leukopipe.plumbing.provenance import provenance
from leukopipe.plumbing.readers import read_parquet

log = logging.getLogger("split")


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--index", required=True, type=Path, help="index.parquet from the merge step")
    p.add_argument(
        "--mode",
        required=True,
        type=check_mode,
        help="split id: " + ", ".join(m.id_form for m in SPLIT_MODES.values())
        + " (<k>-f<i>: fold i of a k-fold mode)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        required=True,
        help="share of labelled images held out for test (ignored by mode official)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        required=True,
        help="share of the training part carved out for validation",
    )
    p.add_argument("--seed", type=int, required=True, help="seed of the random assignment")
    p.add_argument(
        "--near-duplicate-max-distance",
        type=int,
        required=True,
        help="images in two splits whose perceptual hashes differ in at most this many bits"
        " (of 256) are reported as near-duplicates in audit.json",
    )
    p.add_argument(
        "--out-dir",
        required=True,
        type=Path,
        help="folder receiving train.parquet, val.parquet, test.parquet, audit.json",
    )
    args = p.parse_args(argv)

    index = read_parquet(args.index)
    splits = make_splits(index, args.mode, args.test_fraction, args.val_fraction, args.seed)
    report = audit(splits, args.mode, args.near_duplicate_max_distance)
    report["parameters"] = {
        "test_fraction": args.test_fraction,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "near_duplicate_max_distance": args.near_duplicate_max_distance,
    }
    if cv := parse_split_id(args.mode):
        folds = assign_folds(index, cv[0], args.seed)
        report["cv"] = {
            "folds": cv[0],
            "fold": cv[1],
            "subjects_per_fold": {
                str(f): sorted(folds.index[folds == f].tolist()) for f in range(cv[0])
            },
        }
    report["provenance"] = provenance()
    for name in SPLITS:
        atomic.write_parquet(args.out_dir / f"{name}.parquet", splits[name])
    atomic.write_json(args.out_dir / "audit.json", report)
    for name in SPLITS:
        s = report["splits"][name]
        log.info(
            "%-5s %5d images %s, %d subjects", name, s["n_images"], s["per_class"], s["n_subjects"]
        )
    log.info("subjects shared: %s", report["n_shared_subjects"])
    log.info(
        "near-duplicate images (<= %d bits): %s",
        args.near_duplicate_max_distance,
        report["near_duplicates"]["images"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
