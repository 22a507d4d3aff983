"""The test protocol of every result row, in words a reviewer cannot misread, and the leakage
counts behind them, from each split's ``audit.json``.

An image-level row reads ``image-level (leaky: 47 of 48 test subjects also in training)``; a
subject-disjoint one ``subject-disjoint (...: 28 test subjects, none in training)``. The counts
are the split step's, never recomputed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from leukopipe.data.split_modes import SPLIT_MODES, family, mode_name, parse_split_id
from leukopipe.plumbing.errors import UserError
from leukopipe.plumbing.readers import read_json

# rows.parquet columns taken from the audits (summed over the folds of a pooled row)
COUNT_COLUMNS = (
    "test_subjects",
    "test_subjects_in_training",
    "test_images_from_training_subjects",
    "identical_test_images_in_training",
    "near_duplicate_test_images",
    "train_images",
    "train_all",
    "train_hem",
    "val_images",
)


class AuditMissingError(UserError, ValueError):
    """A result row's split has no audit.json among the files given."""


def load_audits(paths: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """The split audits, keyed by split id (``image``, ``official``, ``cv5-f0``, ...)."""
    audits = {}
    for p in paths:
        audit = read_json(p)
        audits[str(audit["mode"])] = audit
    return audits


def split_kind(split: str) -> str:
    """The split mode of a row's split (``cv`` for any cross-validation fold or family)."""
    return mode_name(split)


def _counts(audit: dict[str, Any]) -> dict[str, int]:
    train = audit["splits"]["train"]
    return {
        "test_subjects": int(audit["splits"]["test"]["n_subjects"]),
        "test_subjects_in_training": int(audit["n_shared_subjects"]["train|test"]),
        "test_images_from_training_subjects": int(audit["test_images_from_training_subjects"]),
        "identical_test_images_in_training": int(audit["identical_images_shared"]["train|test"]),
        "near_duplicate_test_images": int(audit["near_duplicates"]["images"]["train|test"]),
        "train_images": int(train["n_images"]),
        "train_all": int(train["per_class"].get("all", 0)),
        "train_hem": int(train["per_class"].get("hem", 0)),
        "val_images": int(audit["splits"]["val"]["n_images"]),
    }


def _audits_of(split: str, audits: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The audit of a split, or of every fold of a pooled cross-validation row (``cv5``)."""
    if split in audits:
        return [audits[split]]
    folds = [a for s, a in sorted(audits.items()) if parse_split_id(s) and family(s) == split]
    if not folds:
        raise AuditMissingError(
            f"no audit.json for split {split!r} among the {len(audits)} given"
            f" ({', '.join(sorted(audits)) or 'none'}); pass splits/<split>/audit.json of"
            " every split the results were tested on"
        )
    return folds


def with_audits(rows: pd.DataFrame, audits: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """``rows`` plus the audit counts of each row's test set and its protocol in words."""
    out = rows.copy()
    per_row = []
    for split in out["split"]:
        found = _audits_of(str(split), audits)
        summed = {k: sum(_counts(a)[k] for a in found) for k in COUNT_COLUMNS}
        parameters = found[0].get("parameters", {})
        summed["near_duplicate_max_distance"] = found[0]["near_duplicates"]["max_distance"]
        summed["test_fraction"] = parameters.get("test_fraction")
        summed["val_fraction"] = parameters.get("val_fraction")
        per_row.append(summed)
    extra = pd.DataFrame(per_row, index=out.index)
    for col in extra:
        out[col] = extra[col]
    out["split_kind"] = [split_kind(str(s)) for s in out["split"]]
    out["protocol"] = [
        describe(
            r.split_kind,
            r.test_subjects_in_training,
            r.test_subjects,
            r.near_duplicate_test_images,
            r.near_duplicate_max_distance,
        )
        for r in out.itertuples()
    ]
    return out


def describe(
    kind: str, in_training: int, subjects: int, near_duplicates: int, max_distance: int
) -> str:
    """One test protocol in words, with the audit's counts."""
    if in_training:
        text = f"leaky: {in_training} of {subjects} test subjects also in training"
    else:
        detail = SPLIT_MODES[kind].test_set
        text = f"{detail + ': ' if detail else ''}{subjects} test subjects, none in training"
    if near_duplicates:
        text += (
            f"; {near_duplicates} test images near-duplicates of training images"
            f" (<= {max_distance} bits)"
        )
    return f"{'subject-disjoint' if SPLIT_MODES[kind].subject_disjoint else 'image-level'} ({text})"


def group_protocol(group: pd.DataFrame) -> str:
    """The protocol of rows summarised together (seeds of one split, or the folds of a
    cross-validation): counts of each distinct test set summed once."""
    tests = group.drop_duplicates("split")
    kinds = set(tests["split_kind"])
    if len(kinds) != 1:
        raise ValueError(f"rows of different protocols summarised together: {sorted(kinds)}")
    return describe(
        kinds.pop(),
        int(tests["test_subjects_in_training"].sum()),
        int(tests["test_subjects"].sum()),
        int(tests["near_duplicate_test_images"].sum()),
        int(tests["near_duplicate_max_distance"].iloc[0]),
    )
