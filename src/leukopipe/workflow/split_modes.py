"""The vocabulary of split modes: which exist, and how a cross-validation fold's split is named.

It is configuration vocabulary (the config validator, the rules, the split step and the tables
all speak it), so it lives here, below every stage; ``leukopipe.data.split`` implements it.
"""

from __future__ import annotations

import re

_CV_ID = re.compile(r"^cv(\d+)-f(\d+)$")
# split modes that are one split each; "cv" expands to one split per fold
SINGLE_SPLIT_MODES = ("image", "patient", "official")


def split_wildcard_pattern() -> str:
    """Regular expression of every split id, for the rules' wildcard constraints."""
    return "|".join([*SINGLE_SPLIT_MODES, r"cv\d+-f\d+"])


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
