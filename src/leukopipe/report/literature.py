"""Published results beside this project's runs, like with like.

A published number is shown only beside runs of the same backbone, fine-tuning strategy and
test protocol, and always in the column of the metric it is (Study A's Table 3 entries are
weighted F1 and sit under Weighted F1, never under the ALL-class F1). The numbers come from
``leukopipe/report/published.yaml``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from leukopipe.report.compare import (
    MAIN_COLUMNS,
    SHOWN,
    display_table,
    model_label,
    pct,
    summary_table,
)
from leukopipe.report.published import load_published

MISSING = "–"
# the metric columns of the published-versus-reproduced tables: the main table's
STUDY_A_METRICS = SHOWN
HONEST_METRICS = ["Accuracy", "Balanced acc.", "Recall (ALL)", "Specificity", "Weighted F1", "AUC"]
# the cross-validation table: Table 1's columns plus specificity (the benchmark printed it)
CV_METRICS = [*STUDY_A_METRICS[:3], "Specificity", *STUDY_A_METRICS[3:]]
HONEST_HEADERS = {"Recall (ALL)": "Sensitivity (ALL recall)"}
# published.yaml metric keys that are named differently in the metrics records
_RECORD_KEY = {"auc": "roc_auc"}


def _fmt(value: Any) -> str:
    return MISSING if value is None or pd.isna(value) else f"{float(value):.2f}"


def _published_cells(entry: dict[str, Any], metrics: list[str], scale: float = 1.0) -> dict:
    """Each published value under the header of its own metric; the other columns empty."""
    by_header = {
        MAIN_COLUMNS[_RECORD_KEY.get(k, k)]: v
        for k, v in entry.items()
        if _RECORD_KEY.get(k, k) in MAIN_COLUMNS
    }
    by_header |= {"Recall (ALL)": entry["sensitivity"]} if "sensitivity" in entry else {}
    return {h: _fmt(None if by_header.get(h) is None else scale * by_header[h]) for h in metrics}


def _ours(rows: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """This project's summarised rows (seeds pooled) as display strings, with test counts."""
    if rows.empty:
        return pd.DataFrame(
            columns=["Model", "Split", "Protocol", "Seeds", "Test images", *metrics]
        )
    summary = summary_table(rows)
    shown = display_table(summary, metrics)
    shown["Test images"] = [
        f"{n} ({a}/{h})"
        for n, a, h in zip(summary["n test"], summary["n ALL"], summary["n Hem"], strict=True)
    ]
    return shown


def study_a_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Study A's Table 2 row by row, each followed by this project's runs of the same backbone
    and strategy on the same (image-level) protocol."""
    t2 = load_published()["study_a"]["table2"]
    strategy, test = t2["strategy"], t2["test_set"]
    same = rows[
        (rows["variant"] == "single")
        & (rows["split_kind"] == test["split"])
        & (rows["strategy"] == strategy)
    ]
    ours = _ours(same, STUDY_A_METRICS)
    out = []
    for entry in t2["rows"]:
        label = model_label(entry["model"], strategy, None)
        out.append(
            {
                "Source": "Study A, Table 2 (published)",
                "Model": label,
                "Protocol": "image-level (Study A's split; shared subjects not reported)",
                "Seeds": 1,
                "Test images": f"{test['n']} ({test['n_all']}/{test['n_hem']})",
                **_published_cells(entry, STUDY_A_METRICS),
            }
        )
        out += [
            {
                "Source": "this project",
                **{k: r[k] for k in ("Model", "Protocol", "Seeds", "Test images")},
                **{h: r[h] for h in STUDY_A_METRICS},
            }
            for r in ours[ours["Model"] == label].to_dict("records")
        ]
    return pd.DataFrame(out)


def study_b_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Frozen versus partial fine-tuning: accuracies at the best epoch and on test, with the
    test set's balanced accuracy, macro-F1 and majority-class accuracy; Study B's published
    accuracy only beside the same backbone and strategy on its (official) protocol."""
    pub = load_published()["study_b"]
    published = {(r["model"], r["strategy"]): r["val_accuracy"] for r in pub["rows"]}
    sub = rows[
        rows["strategy"].isin(["frozen", "partial"])
        & (rows["variant"] == "single")
        & rows["fold"].isna()
        & ~rows["pooled"]
    ]
    out = []
    for r in sub.itertuples():
        same_protocol = r.split_kind == pub["split"]
        out.append(
            {
                "Model": model_label(r.backbone, r.strategy, r.partial_stages),
                "Protocol": r.protocol,
                "Seed": MISSING if pd.isna(r.seed) else str(int(r.seed)),
                "Best epoch": MISSING if pd.isna(r.best_epoch) else str(int(r.best_epoch)),
                "Train acc. %": pct(r.train_accuracy),
                "Val acc. %": pct(r.val_accuracy),
                "Gap (points)": pct(r.train_val_gap),
                "Test acc. %": pct(r.accuracy),
                "Balanced acc. %": pct(r.balanced_accuracy),
                "Macro-F1 %": pct(r.macro_f1),
                "Majority-class acc. %": 100.0 * max(r.n_test_all, r.n_test_hem) / r.n_test,
                "Study B acc. % (published)": published.get((r.backbone, r.strategy))
                if same_protocol
                else None,
            }
        )
    return pd.DataFrame(out)


def study_b_facts() -> str:
    """Study B's evaluation set in numbers: how close its frozen baseline is to answering ALL."""
    pub = load_published()["study_b"]
    v = pub["validation_set"]
    majority = 100.0 * max(v["n_all"], v["n_hem"]) / v["n"]
    frozen = ", ".join(
        f"{model_label(r['model'], r['strategy'], None)} {r['val_accuracy']:.2f} %"
        for r in pub["rows"]
        if r["strategy"] == "frozen"
    )
    return (
        f"Study B's evaluation set (the preliminary test set) holds {v['n_all']} ALL and"
        f" {v['n_hem']} Hem images: always answering ALL scores {majority:.2f} % on it"
        f" (Study B's frozen baseline: {frozen})."
    )


def honest_table(rows: pd.DataFrame) -> pd.DataFrame:
    """This project's subject-disjoint results beside the published honest references."""
    pub = load_published()
    ours = _ours(rows[rows["split_kind"] != "image"], HONEST_METRICS)
    out = [
        {
            "Source": "this project",
            "Model": r["Model"],
            "Split": r["Split"],
            "Protocol": r["Protocol"],
            "Test images": r["Test images"],
            **{h: r[h] for h in HONEST_METRICS},
        }
        for r in ours.to_dict("records")
    ]
    bench = pub["leakage_aware_benchmark"]
    out.append(
        {
            "Source": "leakage-aware benchmark (published)",
            "Model": bench["model"],
            "Split": MISSING,
            "Protocol": f"subject-disjoint: {bench['test_set']}",
            "Test images": MISSING,
            # printed as fractions: shown in percent like every other row
            **_published_cells(
                {
                    "auc": bench["auroc"],
                    "sensitivity": bench["sensitivity"],
                    "specificity": bench["specificity"],
                },
                HONEST_METRICS,
                scale=100.0,
            ),
        }
    )
    winner = pub["challenge_winner"]
    out.append(
        {
            "Source": "C-NMC 2019 challenge (published)",
            "Model": "winning entry",
            "Split": MISSING,
            "Protocol": f"subject-disjoint: {winner['test_set']}",
            "Test images": MISSING,
            **_published_cells({"weighted_f1": winner["weighted_f1"]}, HONEST_METRICS),
        }
    )
    t3 = pub["study_a"]["table3"]
    for entry in t3["rows"]:
        if "weighted_f1" not in entry:
            continue  # Study A's own (image-level) model: its Table 2 row, in Table 2
        note = f" ({entry['note']})" if entry.get("note") else ""
        out.append(
            {
                "Source": "Study A, Table 3 (quoted)",
                "Model": f"{entry['name']}{note}",
                "Split": MISSING,
                "Protocol": f"subject-disjoint: {t3['test_set']}",
                "Test images": MISSING,
                **_published_cells(entry, HONEST_METRICS),
            }
        )
    table = pd.DataFrame(out)
    return table.rename(columns=HONEST_HEADERS)


def leakage_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per test set: what it shares with its training part (from the split audit)."""
    tests = rows[~rows["pooled"]].drop_duplicates("split").sort_values("split")
    if tests.empty:
        return pd.DataFrame()
    distance = int(tests["near_duplicate_max_distance"].iloc[0])
    return pd.DataFrame(
        {
            "Split": tests["split"],
            "Protocol": tests["protocol"],
            "Test images": tests["n_test"],
            "Test subjects": tests["test_subjects"],
            "Test subjects also in training": tests["test_subjects_in_training"],
            "Test images from training subjects": tests["test_images_from_training_subjects"],
            "Byte-identical copies of training images": tests["identical_test_images_in_training"],
            f"Near-duplicates of training images (<= {distance} bits)": tests[
                "near_duplicate_test_images"
            ],
        }
    ).reset_index(drop=True)


def cross_validation_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Every cross-validated model pooled out of fold, side by side in Table 1's columns (e.g.
    Study C's backbones beside Study A's), with the leakage-aware benchmark's published
    numbers as the reference row."""
    ours = _ours(rows[rows["pooled"]], CV_METRICS)
    out = [
        {
            "Source": "this project",
            "Model": r["Model"],
            "Protocol": r["Protocol"],
            "Test images": r["Test images"],
            **{h: r[h] for h in CV_METRICS},
        }
        for r in ours.to_dict("records")
    ]
    bench = load_published()["leakage_aware_benchmark"]
    out.append(
        {
            "Source": "leakage-aware benchmark (published)",
            "Model": bench["model"],
            "Protocol": f"subject-disjoint: {bench['test_set']}",
            "Test images": MISSING,
            **_published_cells(
                {
                    "auc": bench["auroc"],
                    "sensitivity": bench["sensitivity"],
                    "specificity": bench["specificity"],
                },
                CV_METRICS,
                scale=100.0,
            ),
        }
    )
    return pd.DataFrame(out).rename(columns=HONEST_HEADERS)
