"""The comparison's tables, each with its title and caption, and their Markdown, LaTeX and CSV
files. The HTML report renders the same :func:`build` list, so every format shows the same
numbers under the same words (captions from ``leukopipe.report.captions``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leukopipe.plumbing import atomic
from leukopipe.report import literature
from leukopipe.report.captions import SECTIONS, TABLES
from leukopipe.report.compare import (
    SHOWN,
    calibration_table,
    display_table,
    subject_level_table,
    summary_table,
)
from leukopipe.report.deviations import deviations
from leukopipe.report.published import citations


@dataclass(frozen=True)
class Table:
    """One titled table: its caption (the fixed text, then this run's facts) and its cells."""

    key: str
    title: str
    caption: str
    frame: pd.DataFrame


def test_set_facts(rows: pd.DataFrame) -> str:
    """What the results were computed on: the data, and each test set's size and subjects."""
    single = rows[rows["fold"].isna()]
    parts = [
        f"{split}: {int(g['n_test'].iloc[0])} images ({int(g['n_test_all'].iloc[0])} ALL,"
        f" {int(g['n_test_hem'].iloc[0])} Hem) from {int(g['n_test_subjects'].iloc[0])} subjects"
        for split, g in single.groupby("split", sort=True)
    ]
    datasets = ", ".join(sorted({str(d) for d in rows["dataset"].dropna()})) or "unknown"
    unit = rows["ci_unit"].dropna()
    boot = f" Intervals resample {unit.iloc[0]}s." if len(unit) else ""
    return f"Data: {datasets}. Test sets: " + "; ".join(parts) + "." + boot


def _table(key: str, frame: pd.DataFrame, facts: str = "") -> Table:
    caption = TABLES[key]
    text = f"{caption.text} {facts}" if facts else caption.text
    return Table(key, caption.title, text, frame)


def build(rows: pd.DataFrame) -> list[Table]:
    """Every table of the comparison, in order. ``rows`` carry the split audits' columns."""
    return [
        _table("main", display_table(summary_table(rows), SHOWN), test_set_facts(rows)),
        _table("study_a", literature.study_a_table(rows)),
        _table("study_b", literature.study_b_table(rows), literature.study_b_facts()),
        _table("subjects", subject_level_table(rows)),
        _table("honest", literature.honest_table(rows), literature.honest_facts()),
        _table("leakage", literature.leakage_table(rows)),
        _table("cross_validation", literature.cross_validation_table(rows)),
        _table("calibration", calibration_table(rows)),
        _table("quoted", literature.quoted_table()),
    ]


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None, which every renderer prints as a dash."""
    return frame.astype(object).where(frame.notna(), None)


def markdown(tables: list[Table], rows: pd.DataFrame) -> str:
    """comparison.md: the tables with captions, the deviations, the references."""
    parts = []
    for t in tables:
        body = (
            _shown(t.frame).to_markdown(index=False, floatfmt=".2f", missingval="–")
            if len(t.frame)
            else "(no rows)"
        )
        parts.append(f"### {t.title}\n\n{t.caption}\n\n{body}\n")
    parts.append(f"### {SECTIONS['deviations']}\n\n" + _items(deviations(rows)))
    parts.append(f"### {SECTIONS['references']}\n\n" + _items(citations()))
    parts.append(SECTIONS["provenance"] + "\n")
    return "\n".join(parts)


def _items(lines: list[str]) -> str:
    return "".join(f"- {line}\n" for line in lines)


def latex(tables: list[Table]) -> str:
    """comparison.tex: every table with its caption (booktabs style)."""
    out = []
    for t in tables:
        body = (
            t.frame.to_latex(index=False, float_format="%.2f", na_rep="--", escape=True)
            if len(t.frame)
            else "\\emph{(no rows)}\n"
        )
        out.append(
            "\\begin{table}[t]\n\\centering\n\\small\n"
            f"\\caption{{{tex_escape(t.title)}. {tex_escape(t.caption)}}}\n{body}\\end{{table}}\n"
        )
    return "\n".join(out)


def tex_escape(text: str) -> str:
    """``text`` safe inside a LaTeX caption."""
    for a, b in (
        ("\\", "\\textbackslash{}"),
        ("%", "\\%"),
        ("&", "\\&"),
        ("_", "\\_"),
        ("#", "\\#"),
        ("±", "$\\pm$"),
        ("<=", "$\\leq$"),
    ):
        text = text.replace(a, b)
    return text


def write(rows: pd.DataFrame, folder: str | Path) -> list[Table]:
    """comparison.{md,csv,tex} and rows.parquet (what the HTML report reads) under ``folder``."""
    folder = Path(folder)
    tables = build(rows)
    atomic.write_text(folder / "comparison.md", markdown(tables, rows))
    atomic.write_text(folder / "comparison.tex", latex(tables))
    atomic.write_parquet(folder / "rows.parquet", rows)
    with atomic.atomic_path(folder / "comparison.csv") as tmp:
        rows.to_csv(tmp, index=False)
    return tables
