"""The split-mode registry: which modes exist, what each means, and how its splits are named.

It is configuration vocabulary, so it lives here, below every stage: the config validator, the
``split`` rule's wildcard, the split step and the tables' captions all read :data:`SPLIT_MODES`.
Adding a mode means one entry here and its implementation in ``leukopipe.data.split``
(``MAKERS``, keyed by these names); a test checks that the two agree.

A *mode* is what an experiment group names (``split: cv``); a *split id* names one set of
train/val/test manifests (``results/<run>/splits/<split id>/``). A plain mode's only split id is
its name; a k-fold mode has k ids, ``cv<k>-f<i>`` for fold i.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SplitMode:
    """One way of dividing the labelled images into train / validation / test."""

    name: str  # the config value (experiments[].split)
    description: str  # for captions and docs; a k-fold mode's holds "{k}"
    k_fold: bool  # one split per fold (split.folds of them), pooled in the tables
    subject_disjoint: bool  # no subject may appear on two sides (the audit enforces it)
    test_set: str = ""  # where the test images come from, in a table's protocol column

    @property
    def id_pattern(self) -> str:
        """Regular expression of this mode's split ids (no groups: Snakemake wraps it)."""
        return rf"{re.escape(self.name)}\d+-f\d+" if self.k_fold else re.escape(self.name)

    @property
    def id_form(self) -> str:
        """How its split ids look, for messages: ``image`` or ``cv<k>-f<i>``."""
        return f"{self.name}<k>-f<i>" if self.k_fold else self.name

    def split_ids(self, folds: int) -> list[str]:
        """The split ids of this mode: its name, or one id per fold."""
        if not self.k_fold:
            return [self.name]
        if folds < 2:
            raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
        return [f"{self.name}{folds}-f{i}" for i in range(folds)]

    def describe(self, k: int | None = None) -> str:
        return self.description.format(k=k if k is not None else "k")


SPLIT_MODES: dict[str, SplitMode] = {
    m.name: m
    for m in (
        SplitMode(
            "image",
            "image-level stratified split (Study A): one patient's cells in train and test",
            k_fold=False,
            subject_disjoint=False,
        ),
        SplitMode(
            "patient",
            "subject-disjoint split: no test subject is seen in training",
            k_fold=False,
            subject_disjoint=True,
            test_set="random subjects held out",
        ),
        SplitMode(
            "official",
            "official split: training folds vs the labelled preliminary test (unseen subjects)",
            k_fold=False,
            subject_disjoint=True,
            test_set="preliminary test set",
        ),
        SplitMode(
            "cv",
            "subject-disjoint, class-stratified {k}-fold cross-validation over all labelled"
            " images (each fold tested by a model trained on the others)",
            k_fold=True,
            subject_disjoint=True,
            test_set="cross-validation folds",
        ),
    )
}


def split_id_pattern() -> str:
    """One regular expression matching every split id of every mode (the rule's wildcard)."""
    return "|".join(m.id_pattern for m in SPLIT_MODES.values())


# A k-fold mode's split id (cv5-f3) or family (cv5): mode name, k, and the fold if any.
_K_FOLD = re.compile(r"(?P<mode>[A-Za-z_]+?)(?P<k>\d+)(?:-f(?P<fold>\d+))?")


def _k_fold_parts(split: str) -> tuple[SplitMode, int, int | None] | None:
    m = _K_FOLD.fullmatch(split)
    mode = SPLIT_MODES.get(m["mode"]) if m else None
    if mode is None or not mode.k_fold:
        return None
    return mode, int(m["k"]), None if m["fold"] is None else int(m["fold"])


def parse_split_id(split: str) -> tuple[int, int] | None:
    """(k, fold) of a cross-validation split id, or None for the other modes."""
    parts = _k_fold_parts(split)
    if parts is None or parts[2] is None:
        return None
    _, k, fold = parts
    if k < 2 or not 0 <= fold < k:
        raise ValueError(f"split id {split!r}: fold must be in 0..k-1 and k >= 2")
    return k, fold


def mode_name(split: str) -> str:
    """The mode of a split id, of a k-fold family (``cv5``, a pooled row) or of a mode name."""
    parts = _k_fold_parts(split)
    return parts[0].name if parts else mode_of(split).name


def mode_of(split: str) -> SplitMode:
    """The mode a split id belongs to; ValueError naming the valid forms for anything else."""
    if split in SPLIT_MODES and not SPLIT_MODES[split].k_fold:
        return SPLIT_MODES[split]
    if parse_split_id(split) is not None:  # also checks k and the fold number
        return _k_fold_parts(split)[0]
    forms = [m.id_form for m in SPLIT_MODES.values()]
    raise ValueError(
        f"unknown split mode {split!r}; expected one of {', '.join(forms[:-1])} or {forms[-1]}"
    )


def family(split: str) -> str:
    """``cv5`` for ``cv5-f3``; any other split is its own family."""
    parts = _k_fold_parts(split)
    return f"{parts[0].name}{parts[1]}" if parts else split


def describe_split(split: str) -> str:
    """Caption text of a split id or family (``image``, ``cv5``, ``cv5-f2``); else the id."""
    if split in SPLIT_MODES and not SPLIT_MODES[split].k_fold:
        return SPLIT_MODES[split].describe()
    parts = _k_fold_parts(split)
    return parts[0].describe(parts[1]) if parts else split


POOLED_SUFFIX = ".pooled"


def pooled_name(member: str, split: str) -> str:
    """Identifier of a cross-validation pooled out of fold: ``cv5.resnet18.full.s0.pooled`` for
    its fold ``cv5-f3.resnet18.full.s0`` (the same for every fold)."""
    return family(split) + member[len(split):] + POOLED_SUFFIX
