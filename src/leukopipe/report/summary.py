"""The report's headline: the answer a reviewer looks for first, in a few lines.

The best subject-disjoint model with its interval, the same backbone on the leaky image-level
split beside it (the leak in points), one line per study reproduced, and warnings when numbers
come from synthetic data or from untrained weights. Everything is read from the compare step's
rows (``leukopipe.report.compare.flat_rows``) and the published values; nothing is computed
that the tables do not show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leukopipe.report.compare import RANDOM_INIT, split_label
from leukopipe.report.published import load_published

# the C-NMC 2019 challenge ranked entries by weighted F1; accuracy is what both studies print
RANK = ("weighted_f1", "Weighted F1")
LEAKY = "image"


@dataclass
class Headline:
    """Warnings (shown as a banner) and the summary's lines, in order."""

    warnings: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _value(r: Any, key: str) -> str:
    v = getattr(r, key)
    if v is None or pd.isna(v):
        return "–"
    lo, hi = getattr(r, f"{key}_lo", None), getattr(r, f"{key}_hi", None)
    ci = "" if lo is None or hi is None or pd.isna(lo) or pd.isna(hi) else (
        f" [95 % CI {100 * lo:.1f}–{100 * hi:.1f}]"
    )
    return f"{100 * v:.1f} %{ci}"


def _tested(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that test a whole protocol: no single cross-validation folds, a backbone named."""
    keep = (rows["fold"].isna() | rows["pooled"]) & rows["backbone"].notna()
    return rows[keep & rows[RANK[0]].notna()]


def _where(r: Any) -> str:
    return f"{r.model} on {split_label(r)}"


def warnings(rows: pd.DataFrame) -> list[str]:
    """Why the numbers may not mean what they would on the real data with trained weights."""
    out = []
    synthetic = sorted({str(d) for d in rows["dataset"].dropna() if "synthetic" in str(d)})
    if synthetic:
        out.append(
            f"Synthetic data ({'; '.join(synthetic)}): these numbers test the pipeline, they say "
            "nothing about leukaemia cells."
        )
    # the weights each run's record names (compare's weights_tag); ensembles have none
    untrained = (
        rows["weights_tag"].eq(RANDOM_INIT)
        if "weights_tag" in rows
        else pd.Series(False, index=rows.index)
    )
    if untrained.any():
        out.append(
            f"{int(untrained.sum())} of {len(rows)} result(s) start from untrained (random) "
            "weights, not ImageNet: they are not the studies' transfer learning."
        )
    return out


def _twin(r: Any, tested: pd.DataFrame) -> Any | None:
    same = tested[
        (tested["family"] == LEAKY)
        & (tested["backbone"] == r.backbone)
        & (tested["strategy"] == r.strategy)
        & (tested["variant"] == r.variant)
    ]
    return None if same.empty else same.iloc[0]


def _leak_line(best: Any, tested: pd.DataFrame) -> str | None:
    key, header = RANK
    same = tested[(tested["family"] == LEAKY) & (tested["backbone"] == best.backbone)]
    if same.empty:
        return None
    # like for like where it was run: the same strategy and variant (TTA or not), else the
    # closest there is
    for like in (
        same[(same["strategy"] == best.strategy) & (same["variant"] == best.variant)],
        same[same["variant"] == best.variant],
        same,
    ):
        if len(like):
            break
    leaky = like.sort_values(key, ascending=False).iloc[0]
    points = 100 * (leaky[key] - getattr(best, key))
    return (
        f"Same backbone on the leaky image-level split (cells of one patient in training and "
        f"test): {leaky['model']}, {header} {_value(leaky, key)}, {points:+.1f} points "
        f"against {best.model} subject-disjoint ({_value(best, key)}): the size of the leak."
    )


def _study_a_line(tested: pd.DataFrame) -> str | None:
    table = load_published()["study_a"]["table2"]
    published = {row["model"]: row for row in table["rows"]}
    ours = tested[(tested["family"] == LEAKY) & tested["backbone"].isin(published)]
    ours = ours[ours["variant"] == "single"]
    if ours.empty:
        return None
    r = ours.sort_values("accuracy", ascending=False).iloc[0]
    pub = published[r["backbone"]]
    return (
        f"Study A (image-level split, {len(ours)} run(s) of its backbones): best here "
        f"{r['model']}, accuracy {_value(r, 'accuracy')}; published for {pub['name']}: "
        f"{pub['accuracy']:.2f} %."
    )


def _study_b_line(tested: pd.DataFrame) -> str | None:
    study = load_published()["study_b"]
    ours = tested[(tested["split"] == study["split"]) & (tested["variant"] == "single")]
    parts = []
    for pub in study["rows"]:
        match = ours[(ours["backbone"] == pub["model"]) & (ours["strategy"] == pub["strategy"])]
        if match.empty:
            continue
        r = match.sort_values("accuracy", ascending=False).iloc[0]
        parts.append(
            f"{pub['model']} {pub['strategy']} {_value(r, 'accuracy')} "
            f"(published {pub['val_accuracy']:.2f} %)"
        )
    if not parts:
        return None
    return f"Study B (official split, test accuracy): {'; '.join(parts)}."


def headline(rows: pd.DataFrame) -> Headline:
    """The summary of ``rows`` (the compare step's rows, one per evaluated result)."""
    out = Headline(warnings=warnings(rows))
    tested = _tested(rows)
    key, header = RANK
    disjoint = tested[tested["family"] != LEAKY]
    if disjoint.empty:
        out.lines.append("No subject-disjoint result yet: every test set here shares subjects "
                         "with training.")
    else:
        ranked = list(disjoint.sort_values(key, ascending=False).itertuples())
        best = ranked[0]
        out.lines.append(
            f"Best subject-disjoint model (by {header}, the challenge's ranking metric): "
            f"{_where(best)}: {header} {_value(best, key)}, accuracy "
            f"{_value(best, 'accuracy')}."
        )
        # the leak of the best model that has a like-for-like image-level twin (same backbone,
        # strategy and variant), else of the best model
        twin = next((r for r in ranked if _twin(r, tested) is not None), best)
        leak = _leak_line(twin, tested)
        if leak:
            out.lines.append(leak)
    for line in (_study_a_line(tested), _study_b_line(tested)):
        if line:
            out.lines.append(line)
    return out
