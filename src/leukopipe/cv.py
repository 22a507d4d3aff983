"""Subject-disjoint k-fold cross-validation: split ids, fold assignment, pooling out of fold.

A cross-validated experiment group (``split: cv``) becomes k ordinary splits ``cv<k>-f<i>``
(i = 0..k-1): test is fold i, validation is carved subject-disjointly from the other folds.
Every per-split step (augment, resize, train, evaluate) then runs unchanged once per fold, and
the comparison pools the folds (every labelled image is tested exactly once).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_CV_ID = re.compile(r"^cv(\d+)-f(\d+)$")


def split_ids(folds: int) -> list[str]:
    """The k split ids of a k-fold cross-validation, e.g. ``cv3-f0, cv3-f1, cv3-f2``."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    return [f"cv{folds}-f{i}" for i in range(folds)]


def parse_split_id(split: str) -> tuple[int, int] | None:
    """(k, fold) of a cross-validation split id, or None for the other modes."""
    m = _CV_ID.match(split)
    if not m:
        return None
    k, fold = int(m.group(1)), int(m.group(2))
    if k < 2 or not 0 <= fold < k:
        raise ValueError(f"split id {split!r}: fold must be in 0..k-1 and k >= 2")
    return k, fold


def family(split: str) -> str:
    """``cv5`` for ``cv5-f3``; any other split is its own family."""
    parsed = parse_split_id(split)
    return f"cv{parsed[0]}" if parsed else split


def assign_folds(index: pd.DataFrame, folds: int, seed: int) -> pd.Series:
    """Fold (0..k-1) of every subject, class-stratified and balanced in images.

    Per class, subjects are shuffled (seeded) and dealt one by one to the fold holding the
    fewest images of that class, so each fold gets at least one subject of each class and the
    image counts stay close. Deterministic from ``seed``: every
    fold's split job recomputes the same assignment.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    rng = np.random.default_rng(seed)
    sizes = index.groupby("subject").size()
    subject_class = index.groupby("subject")["label"].agg(lambda s: int(s.mode().iloc[0]))
    out: dict[str, int] = {}
    for label in sorted(subject_class.unique()):
        subjects = np.array(sorted(subject_class.index[subject_class == label]))
        if len(subjects) < folds:
            raise ValueError(
                f"class {label} has {len(subjects)} subject(s) but {folds}-fold cross-validation"
                f" needs at least {folds} per class (lower split.folds)"
            )
        # random order (not largest first) so that the seed, not the sizes, decides the folds
        order = subjects[rng.permutation(len(subjects))]
        load = np.zeros(folds, dtype=np.int64)
        count = np.zeros(folds, dtype=np.int64)
        for s in order:
            f = int(np.lexsort((np.arange(folds), count, load))[0])
            out[str(s)] = f
            load[f] += int(sizes[s])
            count[f] += 1
    return pd.Series(out, name="fold").sort_index()
