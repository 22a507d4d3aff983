"""Subject-disjoint k-fold cross-validation: which subjects form each fold.

A cross-validated experiment group (``split: cv``) becomes k ordinary splits ``cv<k>-f<i>``
(i = 0..k-1): test is fold i, validation is carved subject-disjointly from the other folds.
Every per-split step (augment, resize, train, evaluate) then runs unchanged once per fold, and
the comparison pools the folds (every labelled image is tested exactly once).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leukopipe.plumbing.errors import InvalidInputError


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
            raise InvalidInputError(
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
