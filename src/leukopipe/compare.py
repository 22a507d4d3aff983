"""Comparison tables from stored evaluation results (never trains anything).

Reads ``eval/<experiment>/metrics.json`` files only, so reviewers can regenerate every table
from a copied ``results/<run>/eval/`` tree. Published values come from the package data file
``leukopipe/data/published.yaml``, never from code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.published import load_published

# column -> (metrics.json key, header); percentages as in Study A's Table 2
MAIN_COLUMNS = {
    "accuracy": "Accuracy",
    "precision": "Precision (ALL)",
    "recall": "Recall (ALL)",
    "f1": "F1 (ALL)",
    "roc_auc": "AUC",
    "macro_f1": "Macro-F1",
    "weighted_f1": "Weighted F1",
    "balanced_accuracy": "Balanced acc.",
    "specificity": "Specificity",
    "mcc": "MCC",
}
SPLIT_TEXT = {
    "image": "image-level stratified split (Study A): one patient's cells in train and test",
    "patient": "subject-disjoint split: no test subject is seen in training",
    "official": "official split: training folds vs the labelled preliminary test (unseen subjects)",
}


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The metrics.json files, each with its path recorded."""
    records = []
    for p in paths:
        rec = json.loads(Path(p).read_text(encoding="utf-8"))
        rec["_path"] = str(p)
        records.append(rec)
    if not records:
        raise ValueError("no metrics.json files given: evaluate at least one experiment first")
    return records


def flat_rows(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per evaluated experiment: identity, every metric, its CI and provenance."""
    rows = []
    for rec in records:
        exp = rec.get("experiment", {})
        tr = rec.get("training", {})
        row: dict[str, Any] = {
            "experiment": exp.get("name", Path(rec["_path"]).parent.name),
            "group": exp.get("group"),
            "split": exp.get("split"),
            "backbone": exp.get("backbone", tr.get("backbone")),
            "strategy": exp.get("strategy", tr.get("strategy")),
            "partial_stages": exp.get("partial_stages"),
            "seed": exp.get("seed"),
            "dataset": exp.get("dataset"),
            "n_test": rec["n_test"],
            "n_test_all": rec["metrics"]["n_all"],
            "n_test_hem": rec["metrics"]["n_hem"],
            "n_test_subjects": rec["n_test_subjects"],
            "best_epoch": tr.get("best_epoch"),
            "epochs_run": tr.get("epochs_run"),
            "train_accuracy": tr.get("train_accuracy"),
            "val_accuracy": tr.get("val_accuracy"),
            "train_val_gap": tr.get("gap"),
            "referral_threshold": rec["referral"]["threshold"],
            "referred_fraction": rec["referral"]["test"]["referred_fraction"],
            "accepted_accuracy": rec["referral"]["test"]["accepted_accuracy"],
            "ece": rec["metrics"].get("ece"),
            "code_version": rec.get("provenance", {}).get("code_version"),
            "checkpoint_sha256": rec.get("checkpoint", {}).get("sha256"),
            "metrics_file": rec["_path"],
        }
        for key in MAIN_COLUMNS:
            row[key] = rec["metrics"].get(key)
            ci = rec.get("ci", {}).get(key)
            row[f"{key}_lo"], row[f"{key}_hi"] = ci if ci else (None, None)
        row["ci_unit"] = rec.get("ci", {}).get("bootstrap", {}).get("unit")
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values(["split", "group", "backbone", "strategy", "seed"], na_position="last")


def model_label(backbone: str, strategy: str, partial_stages: Any) -> str:
    """Readable model name, e.g. ``resnet18 (partial: last 2 stages)``."""
    if strategy == "partial":
        return f"{backbone} (partial: last {int(partial_stages)} stages)"
    return f"{backbone} ({strategy})"


def _pct(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else 100.0 * float(x)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Study A Table 2's shape: one row per configuration, seeds pooled as mean and std."""
    keys = ["split", "backbone", "strategy", "partial_stages"]
    out = []
    for (split, backbone, strategy, stages), g in rows.groupby(keys, dropna=False, sort=True):
        rec: dict[str, Any] = {
            "Model": model_label(backbone, strategy, stages),
            "Split": split,
            "Seeds": len(g),
            "n test": int(g["n_test"].iloc[0]),
            "Subjects": int(g["n_test_subjects"].iloc[0]),
        }
        for key, header in MAIN_COLUMNS.items():
            vals = g[key].dropna().astype(float) * 100.0
            rec[header] = vals.mean() if len(vals) else np.nan
            rec[f"{header} std"] = vals.std(ddof=1) if len(vals) > 1 else np.nan
            lo, hi = g[f"{key}_lo"].dropna(), g[f"{key}_hi"].dropna()
            # one seed: the bootstrap interval; several: the interval of the first seed is
            # not representative, so the spread over seeds is reported instead
            rec[f"{header} CI"] = (
                (100.0 * float(lo.iloc[0]), 100.0 * float(hi.iloc[0]))
                if len(g) == 1 and len(lo) and len(hi)
                else None
            )
        out.append(rec)
    return pd.DataFrame(out)


def _cell(value: float, std: float, ci: Any) -> str:
    if value is None or np.isnan(value):
        return "–"
    if std is not None and not np.isnan(std):
        return f"{value:.2f} ± {std:.2f}"
    if ci:
        return f"{value:.2f} [{ci[0]:.1f}, {ci[1]:.1f}]"
    return f"{value:.2f}"


def display_table(summary: pd.DataFrame, headers: Iterable[str]) -> pd.DataFrame:
    """Strings for Markdown/LaTeX: value ± std over seeds, or value [95 % CI] for one seed."""
    shown = summary[["Model", "Split", "Seeds", "n test", "Subjects"]].copy()
    for h in headers:
        shown[h] = [
            _cell(v, s, c)
            for v, s, c in zip(summary[h], summary[f"{h} std"], summary[f"{h} CI"], strict=True)
        ]
    return shown


def caption(rows: pd.DataFrame) -> str:
    """What was run, on which split and data, how many test images and subjects."""
    parts = []
    for split, g in rows.groupby("split", sort=True):
        n = int(g["n_test"].iloc[0])
        parts.append(
            f"{split}: {SPLIT_TEXT.get(split, split)}; test set {n} images"
            f" ({int(g['n_test_all'].iloc[0])} ALL, {int(g['n_test_hem'].iloc[0])} Hem)"
            f" from {int(g['n_test_subjects'].iloc[0])} subjects"
        )
    datasets = ", ".join(sorted({str(d) for d in rows["dataset"].dropna()})) or "unknown"
    unit = rows["ci_unit"].dropna()
    ci = f"95 % bootstrap intervals resampling {unit.iloc[0]}s" if len(unit) else "no intervals"
    return (
        f"Test-set results in percent (dataset: {datasets}). " + "; ".join(parts) + ". "
        "Precision, recall and F1 are ALL-class values as in Study A; macro- and weighted F1"
        f" average both classes. Single seed: value [{ci}]; several seeds: mean ± std."
    )


def literature_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Our F1 beside Study A's Table 2 rows and the literature values of its Table 3."""
    pub = load_published()["study_a"]
    out = []
    for r in rows.itertuples():
        out.append(
            {
                "Source": "this run",
                "Model": model_label(r.backbone, r.strategy, r.partial_stages),
                "Split": r.split,
                "F1 (ALL) %": _pct(r.f1),
                "Weighted F1 %": _pct(r.weighted_f1),
                "Note": f"seed {r.seed}, {r.n_test} test images",
            }
        )
    for r in pub["table2"]["rows"]:
        out.append(
            {
                "Source": "Study A, Table 2",
                "Model": r["name"],
                "Split": "image",
                "F1 (ALL) %": r["f1"],
                "Weighted F1 %": None,
                "Note": f"{pub['table2']['test_set']['n']} test images",
            }
        )
    for r in pub["table3"]["rows"]:
        out.append(
            {
                "Source": "Study A, Table 3",
                "Model": r["name"],
                "Split": "varies",
                "F1 (ALL) %": r["f1"],
                "Weighted F1 %": None,
                "Note": r.get("note", ""),
            }
        )
    return pd.DataFrame(out)


def study_b_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Frozen versus partial fine-tuning: validation accuracy and train/val gap at best epoch."""
    pub = load_published()["study_b"]
    published = {(r["model"], r["strategy"]): r["val_accuracy"] for r in pub["rows"]}
    published_any = {r["model"]: r["val_accuracy"] for r in pub["rows"] if r["strategy"] is None}
    sub = rows[rows["strategy"].isin(["frozen", "partial"])]
    out = []
    for r in sub.itertuples():
        ref = published.get((r.backbone, r.strategy), published_any.get(r.backbone))
        out.append(
            {
                "Model": model_label(r.backbone, r.strategy, r.partial_stages),
                "Split": r.split,
                "Seed": r.seed,
                "Best epoch": r.best_epoch,
                "Train acc. %": _pct(r.train_accuracy),
                "Val acc. %": _pct(r.val_accuracy),
                "Gap (points)": _pct(r.train_val_gap),
                "Test acc. %": _pct(r.accuracy),
                "Study B val acc. %": ref,
            }
        )
    return pd.DataFrame(out)


def markdown(df: pd.DataFrame, title: str, note: str = "") -> str:
    """A titled Markdown table with its caption."""
    body = df.to_markdown(index=False, floatfmt=".2f") if len(df) else "(no rows)"
    return f"### {title}\n\n{note}\n\n{body}\n" if note else f"### {title}\n\n{body}\n"


def latex(df: pd.DataFrame, title: str, note: str) -> str:
    """A LaTeX table with caption (booktabs style)."""
    body = df.to_latex(index=False, float_format="%.2f", na_rep="--", escape=True)
    return (
        "\\begin{table}[t]\n\\centering\n\\small\n"
        f"\\caption{{{title}. {_tex_escape(note)}}}\n{body}\\end{{table}}\n"
    )


def _tex_escape(text: str) -> str:
    for a, b in (
        ("\\", "\\textbackslash{}"),
        ("%", "\\%"),
        ("&", "\\&"),
        ("_", "\\_"),
        ("#", "\\#"),
        ("±", "$\\pm$"),
    ):
        text = text.replace(a, b)
    return text
