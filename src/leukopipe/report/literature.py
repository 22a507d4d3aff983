"""Published results beside this project's runs, like with like.

A published number is shown only beside runs of the same test protocol (and, for the studies,
the same backbone and strategy, whatever the run's preprocessing, weights or seed), always in
the column of the metric it is, and every run beside one says its own setting and what differs
from the published one (``leukopipe.report.settings``). Study A's Table 3 values are shown as
Study A quotes them, never as a metric of a named test set. The numbers come from
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
    split_label,
    summary_table,
)
from leukopipe.report.published import load_published
from leukopipe.report.settings import (
    DIFFERS,
    SETTING,
    compare_settings,
    published_setting_text,
    run_setting,
    setting_text,
)

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
    """This project's summarised rows (seeds pooled) as display strings, with test counts and
    each row's setting as recorded (``_setting``: a dict, for the differences)."""
    if rows.empty:
        return pd.DataFrame(
            columns=["Model", "Split", "Protocol", "Seeds", "Test images", *metrics, "_setting"]
        )
    summary = summary_table(rows)
    shown = display_table(summary, metrics)
    shown["Test images"] = [
        f"{n} ({a}/{h})"
        for n, a, h in zip(summary["n test"], summary["n ALL"], summary["n Hem"], strict=True)
    ]
    # the same groups as summary_table: one test protocol and one model label
    labels = rows.assign(_split=[split_label(r) for r in rows.itertuples()])
    groups = dict(iter(labels.groupby(["_split", "model"], dropna=False, sort=False)))
    shown["_setting"] = [
        run_setting(groups[(sp, m)]) for sp, m in zip(shown["Split"], shown["Model"], strict=True)
    ]
    return shown


def _beside(ours: dict[str, Any], published: dict[str, Any], who: str) -> dict[str, str]:
    """A run's Setting and Differs cells, against one published setting."""
    return {
        SETTING: setting_text(ours["_setting"]),
        DIFFERS: compare_settings(ours["_setting"], [(who, published)]),
    }


def study_a_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Study A's Table 2 row by row, each followed by every run of this project of the same
    backbone and strategy on the same (image-level) protocol, whatever its preprocessing,
    weights or seed; each says what differs from Study A's setting."""
    pub = load_published()["study_a"]
    t2 = pub["table2"]
    strategy, test = t2["strategy"], t2["test_set"]
    same = rows[
        (rows["variant"] == "single")
        & (rows["split_kind"] == test["split"])
        & (rows["strategy"] == strategy)
        & rows["fold"].isna()
        & ~rows["pooled"]
    ]
    out = []
    for entry in t2["rows"]:
        out.append(
            {
                "Source": "Study A, Table 2 (published)",
                "Model": model_label(entry["model"], strategy, None),
                "Protocol": "image-level (Study A's split; shared subjects not reported)",
                "Seeds": 1,
                "Test images": f"{test['n']} ({test['n_all']}/{test['n_hem']})",
                **_published_cells(entry, STUDY_A_METRICS),
                SETTING: published_setting_text(pub["setting"]),
                DIFFERS: MISSING,
            }
        )
        ours = _ours(same[same["backbone"] == entry["model"]], STUDY_A_METRICS)
        out += [
            {
                "Source": "this project",
                **{k: r[k] for k in ("Model", "Protocol", "Seeds", "Test images")},
                **{h: r[h] for h in STUDY_A_METRICS},
                **_beside(r, pub["setting"], "Study A"),
            }
            for r in ours.to_dict("records")
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
        value = published.get((r.backbone, r.strategy)) if same_protocol else None
        setting = run_setting(sub.loc[[r.Index]])
        out.append(
            {
                "Model": r.model,  # with its preprocessing: runs that differ never merge
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
                "Study B acc. % (published)": value,
                SETTING: setting_text(setting),
                DIFFERS: MISSING
                if value is None
                else compare_settings(setting, [("Study B", pub["setting"])]),
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


def _reference(entry: dict[str, Any], source: str, model: str, test_set: str,
               values: dict[str, float], scale: float = 1.0) -> dict[str, Any]:
    """One published row of Table 5: its values under their own metrics, its stated setting."""
    return {
        "Source": source,
        "Model": model,
        "Protocol": f"subject-disjoint ({test_set})",
        "Test images": MISSING,
        **_published_cells(values, HONEST_METRICS, scale=scale),
        SETTING: published_setting_text(entry["setting"]),
        DIFFERS: MISSING,
    }


def honest_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The preliminary test set (the official split's): the published results measured on it,
    then every run of this project on the official split, each with its setting and what
    differs from what the references state."""
    pub = load_published()
    bench, winner = pub["leakage_aware_benchmark"], pub["challenge_winner"]
    out = [
        _reference(
            bench,
            "leakage-aware benchmark (published)",
            f"{bench['name']} (its best model)",
            bench["test_set"],
            # printed as fractions: shown in percent like every other row
            {"auc": bench["auroc"], "sensitivity": bench["sensitivity"],
             "specificity": bench["specificity"]},
            scale=100.0,
        ),
        _reference(
            winner,
            "C-NMC 2019 challenge winner (published)",
            winner["model"],
            winner["preliminary"]["test_set"],
            {k: winner["preliminary"][k] for k in ("weighted_f1", "balanced_accuracy")},
        ),
    ]
    references = [("benchmark", bench["setting"]), ("challenge winner", winner["setting"])]
    official = rows[(rows["split_kind"] == bench["split"]) & rows["fold"].isna()]
    for r in _ours(official, HONEST_METRICS).to_dict("records"):
        out.append(
            {
                "Source": "this project",
                "Model": r["Model"],
                "Protocol": r["Protocol"],
                "Test images": r["Test images"],
                **{h: r[h] for h in HONEST_METRICS},
                SETTING: setting_text(r["_setting"]),
                DIFFERS: compare_settings(r["_setting"], references),
            }
        )
    return pd.DataFrame(out).rename(columns=HONEST_HEADERS)


def honest_facts() -> str:
    """The challenge winner's final-test score, as context only (no run can be scored there)."""
    final = load_published()["challenge_winner"]["final"]
    return (
        f"For context only: the challenge winner's weighted F1 on the {final['test_set']} was"
        f" {final['weighted_f1']:.2f} %; no run here can be scored on that set."
    )


def quoted_table() -> pd.DataFrame:
    """Study A's Table 3 as Study A quotes it: work, note and F1, no test set claimed."""
    t3 = load_published()["study_a"]["table3"]
    return pd.DataFrame(
        [
            {
                "Source": "Study A, Table 3 (quoted)",
                "Work": r["name"],
                "Note": r.get("note") or MISSING,
                "F1 % as quoted by Study A": r["f1_quoted"],
                "Test set": "not stated by Study A",
            }
            for r in t3["rows"]
        ]
    )


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
    Study C's backbones beside Study A's). No published row: no reference was tested out of
    fold over the labelled data (the leakage-aware benchmark stands beside the official split,
    Table 5)."""
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
    return pd.DataFrame(
        out, columns=["Source", "Model", "Protocol", "Test images", *CV_METRICS]
    ).rename(columns=HONEST_HEADERS)
