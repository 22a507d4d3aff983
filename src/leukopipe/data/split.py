"""Split step: train / validation / test manifests and a leakage audit.

Modes:
- ``image``: stratified by class at image level (Study A's 90/10). Cells of one patient land
  on both sides, which is what the study did and what the audit makes visible.
- ``patient``: subject-disjoint, each class's subjects shared out so the image counts come
  as close to the fractions as whole subjects allow.
- ``official``: training folds versus the labelled preliminary test (its subjects are unseen).
- ``cv<k>-f<i>``: fold i of a subject-disjoint, class-stratified k-fold cross-validation over
  every labelled image (``leukopipe.data.folds``); test is fold i.
Validation is always carved from the training part, never from test; it is subject-disjoint
from training in the patient-level modes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.data.folds import assign_folds
from leukopipe.data.near_duplicates import HASH_BITS, HASH_NAME, close_pairs
from leukopipe.data.split_modes import mode_of, parse_split_id
from leukopipe.plumbing import atomic
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.provenance import provenance
from leukopipe.plumbing.readers import read_parquet

SPLITS = ("train", "val", "test")
MAX_LISTED_PAIRS = 50  # near-duplicate pairs listed per pair of splits (all are counted)


def check_mode(mode: str) -> str:
    """``mode`` itself when it is a split id of a known mode (``image``, ``cv<k>-f<i>``, ...)."""
    mode_of(mode)
    return mode


def _stratified_images(
    df: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> tuple[pd.Index, pd.Index]:
    """Row labels of (rest, held-out): per class, round(n_c * fraction) images held out."""
    held = []
    for _, group in df.groupby("label", sort=True):
        k = round(len(group) * fraction)
        held.extend(group.index[rng.permutation(len(group))[:k]])
    held_idx = pd.Index(sorted(held))
    return df.index.difference(held_idx), held_idx


def _subject_disjoint(
    df: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> tuple[pd.Index, pd.Index]:
    """Row labels of (rest, held-out), holding out whole subjects per class."""
    held_subjects: list[str] = []
    subject_class = df.groupby("subject")["label"].agg(lambda s: int(s.mode().iloc[0]))
    sizes = df.groupby("subject").size()
    for label in sorted(subject_class.unique()):
        subjects = np.array(sorted(subject_class.index[subject_class == label]))
        if len(subjects) < 2:
            raise InvalidInputError(
                f"class {label} has {len(subjects)} subject(s): a subject-disjoint split needs at"
                " least 2 per class (use split mode 'image' for such a small dataset)"
            )
        order = subjects[rng.permutation(len(subjects))]
        target = fraction * sizes[order].sum()
        chosen, total = [], 0
        for s in order:
            if len(chosen) == len(order) - 1:
                break  # keep at least one subject of the class on the other side
            n = int(sizes[s])
            if abs(total + n - target) < abs(total - target) or not chosen:
                chosen.append(s)
                total += n
        held_subjects += chosen
    held = df.index[df["subject"].isin(held_subjects)]
    return df.index.difference(held), held


# Row labels of (train, val, test) for one split id; rng is seeded once per split.
Maker = Callable[
    [pd.DataFrame, str, float, float, int, np.random.Generator],
    tuple[pd.Index, pd.Index, pd.Index],
]


def _image(df: pd.DataFrame, split: str, test_fraction: float, val_fraction: float, seed: int,
           rng: np.random.Generator) -> tuple[pd.Index, pd.Index, pd.Index]:
    pool, test = _stratified_images(df, test_fraction, rng)
    train, val = _stratified_images(df.loc[pool], val_fraction, rng)
    return train, val, test


def _patient(df: pd.DataFrame, split: str, test_fraction: float, val_fraction: float, seed: int,
             rng: np.random.Generator) -> tuple[pd.Index, pd.Index, pd.Index]:
    pool, test = _subject_disjoint(df, test_fraction, rng)
    train, val = _subject_disjoint(df.loc[pool], val_fraction, rng)
    return train, val, test


def _official(df: pd.DataFrame, split: str, test_fraction: float, val_fraction: float, seed: int,
              rng: np.random.Generator) -> tuple[pd.Index, pd.Index, pd.Index]:
    is_test = df["subset"] == "prelim"
    if not is_test.any():
        raise InvalidInputError(
            "split mode 'official' needs the preliminary test (subset 'prelim')"
        )
    test = df.index[is_test]
    train, val = _subject_disjoint(df.loc[~is_test], val_fraction, rng)
    return train, val, test


def _cv_fold(df: pd.DataFrame, split: str, test_fraction: float, val_fraction: float, seed: int,
             rng: np.random.Generator) -> tuple[pd.Index, pd.Index, pd.Index]:
    k, fold = parse_split_id(split)
    in_test = df["subject"].map(assign_folds(df, k, seed)) == fold
    test = df.index[in_test]
    train, val = _subject_disjoint(df.loc[~in_test], val_fraction, rng)
    return train, val, test


# The implementation of each mode of the registry (leukopipe.data.split_modes.SPLIT_MODES).
MAKERS: dict[str, Maker] = {
    "image": _image,
    "patient": _patient,
    "official": _official,
    "cv": _cv_fold,
}


def make_splits(
    index: pd.DataFrame, mode: str, test_fraction: float, val_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Split the merged index into train / val / test manifests (deterministic from seed).

    ``mode`` is a split id: a mode's name, or ``cv<k>-f<i>`` for one fold of a k-fold mode.
    """
    maker = MAKERS[mode_of(mode).name]
    rng = np.random.default_rng(seed)
    df = index.reset_index(drop=True)
    train, val, test = maker(df, mode, test_fraction, val_fraction, seed, rng)
    out = {}
    for name, rows in zip(SPLITS, (train, val, test), strict=True):
        part = df.loc[sorted(rows)].copy()
        part["split"] = name
        out[name] = part.reset_index(drop=True)
    return out


def audit(
    splits: dict[str, pd.DataFrame], mode: str, near_duplicate_max_distance: int
) -> dict[str, Any]:
    """Class counts and subjects per split, and everything shared between splits: subjects,
    byte-identical images and near-duplicate images (perceptual hashes within
    ``near_duplicate_max_distance`` bits)."""
    report: dict[str, Any] = {"mode": mode, "splits": {}, "shared_subjects": {}}
    for name, part in splits.items():
        report["splits"][name] = {
            "n_images": len(part),
            "per_class": {
                k: int(v) for k, v in part["class_name"].value_counts().sort_index().items()
            },
            "n_subjects": int(part["subject"].nunique()),
            "subjects": sorted(part["subject"].unique().tolist()),
        }
    shared_content = {}
    for a, b in combinations(splits, 2):
        key = f"{a}|{b}"
        subjects = sorted(set(splits[a]["subject"]) & set(splits[b]["subject"]))
        report["shared_subjects"][key] = subjects
        shared_content[key] = int(splits[b]["sha256"].isin(set(splits[a]["sha256"])).sum())
    report["n_shared_subjects"] = {k: len(v) for k, v in report["shared_subjects"].items()}
    # cells of one patient on both sides of train|test is the leakage the studies differ on
    report["test_images_from_training_subjects"] = int(
        splits["test"]["subject"].isin(set(splits["train"]["subject"])).sum()
    )
    report["identical_images_shared"] = shared_content
    report["near_duplicates"] = near_duplicate_audit(splits, near_duplicate_max_distance)
    report["test_images_near_duplicate_of_training"] = report["near_duplicates"]["images"][
        "train|test"
    ]
    report["subject_disjoint"] = all(v == 0 for v in report["n_shared_subjects"].values())
    if mode_of(mode).subject_disjoint and not report["subject_disjoint"]:
        raise AssertionError(
            f"split mode {mode} produced shared subjects: {report['shared_subjects']}"
        )
    return report


def near_duplicate_audit(splits: dict[str, pd.DataFrame], max_distance: int) -> dict[str, Any]:
    """Pairs of images in two different splits whose perceptual hashes differ in at most
    ``max_distance`` bits (byte-identical copies included, at distance 0).

    ``images[a|b]`` counts the images of split b with a near-duplicate in split a (for
    ``train|test``: test images the model has in effect seen); ``pairs`` lists the closest
    pairs, at most ``MAX_LISTED_PAIRS`` per pair of splits.
    """
    if not 0 <= max_distance <= HASH_BITS:
        raise InvalidInputError(
            f"near-duplicate distance {max_distance} is outside 0..{HASH_BITS} (bits of the hash)"
        )
    out: dict[str, Any] = {
        "hash": HASH_NAME,
        "max_distance": max_distance,
        "n_pairs": {},
        "images": {},
        "pairs": {},
    }
    for a, b in combinations(splits, 2):
        key = f"{a}|{b}"
        first, second = splits[a], splits[b]
        found = sorted(
            close_pairs(first["phash"].tolist(), second["phash"].tolist(), max_distance),
            key=lambda t: (t[2], t[0], t[1]),
        )
        out["n_pairs"][key] = len(found)
        out["images"][key] = len({j for _, j, _ in found})
        out["pairs"][key] = [
            {
                a: str(first["image_id"].iat[i]),
                f"{a}_subject": str(first["subject"].iat[i]),
                b: str(second["image_id"].iat[j]),
                f"{b}_subject": str(second["subject"].iat[j]),
                "distance": d,
            }
            for i, j, d in found[:MAX_LISTED_PAIRS]
        ]
    return out


# the step's log lines keep the name they had when the script logged them
_step_log = logging.getLogger("split")


@dataclass(frozen=True)
class SplitRequest:
    """What the split step is asked for (the script's flags, by the same names)."""

    index: Path
    mode: str
    test_fraction: float
    val_fraction: float
    seed: int
    near_duplicate_max_distance: int
    out_dir: Path


def split_step(req: SplitRequest) -> None:
    """The split step: train/val/test.parquet and audit.json (with the parameters, the folds of
    a cross-validation split and provenance) in ``req.out_dir``; logs the counts."""
    index = read_parquet(req.index)
    splits = make_splits(index, req.mode, req.test_fraction, req.val_fraction, req.seed)
    report = audit(splits, req.mode, req.near_duplicate_max_distance)
    report["parameters"] = {
        "test_fraction": req.test_fraction,
        "val_fraction": req.val_fraction,
        "seed": req.seed,
        "near_duplicate_max_distance": req.near_duplicate_max_distance,
    }
    if cv := parse_split_id(req.mode):
        folds = assign_folds(index, cv[0], req.seed)
        report["cv"] = {
            "folds": cv[0],
            "fold": cv[1],
            "subjects_per_fold": {
                str(f): sorted(folds.index[folds == f].tolist()) for f in range(cv[0])
            },
        }
    report["provenance"] = provenance()
    for name in SPLITS:
        atomic.write_parquet(req.out_dir / f"{name}.parquet", splits[name])
    atomic.write_json(req.out_dir / "audit.json", report)
    for name in SPLITS:
        s = report["splits"][name]
        _step_log.info(
            "%-5s %5d images %s, %d subjects", name, s["n_images"], s["per_class"], s["n_subjects"]
        )
    _step_log.info("subjects shared: %s", report["n_shared_subjects"])
    _step_log.info(
        "near-duplicate images (<= %d bits): %s",
        req.near_duplicate_max_distance,
        report["near_duplicates"]["images"],
    )
