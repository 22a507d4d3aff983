"""Result rows and their summaries from stored evaluation results (never trains anything).

Reads ``eval/<experiment>/metrics.json`` files (and the predictions beside them), so reviewers
can regenerate every table from a copied ``results/<run>/eval/`` tree (plus the split audits
that say each test set's protocol). The published tables are ``leukopipe.report.literature``,
the assembled report tables ``leukopipe.report.tables``.

Rows are single models, their test-time-augmented variants (``+tta``), the k-NN probes of the
frozen experiments' pretrained backbones (``.knn``), soft-voting ensembles, and cross-validation
folds (split ``cv<k>-f<i>``). Folds are summarised twice: mean ± std over
folds here, and their out-of-fold pool (split ``cv<k>``, every labelled image tested once),
which the pool_folds step scored from the folds' stored predictions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.data.split_modes import family, parse_split_id
from leukopipe.evaluate.eval_record import read_metrics
from leukopipe.evaluate.subject_level import AGGREGATION_TEXT, AGGREGATIONS
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.report.protocol import group_protocol
from leukopipe.train.weight_files import split_tag

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
# the columns of the main table (Study A Table 2 plus the two labelled whole-class F1s)
SHOWN = [
    "Accuracy",
    "Precision (ALL)",
    "Recall (ALL)",
    "F1 (ALL)",
    "AUC",
    "Macro-F1",
    "Weighted F1",
]
POOLED = "pooled out-of-fold"
# weights_tag of a run trained from random initialisation (weights.pretrained false)
RANDOM_INIT = "random init"


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The metrics.json files, each with its path recorded."""
    records = []
    for p in paths:
        rec = read_metrics(p)
        rec["_path"] = str(p)
        records.append(rec)
    if not records:
        raise InvalidInputError(
            "no metrics.json files given: evaluate at least one experiment first"
        )
    return records


def flat_rows(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per evaluated experiment: identity, every metric, its CI and provenance."""
    rows = []
    for rec in records:
        exp = rec.get("experiment", {})
        tr = rec.get("training", {})
        split = exp.get("split")
        cv = parse_split_id(split) if isinstance(split, str) else None
        row: dict[str, Any] = {
            "experiment": exp.get("name", Path(rec["_path"]).parent.name),
            "group": exp.get("group"),
            "split": split,
            "family": exp.get("family") or (family(split) if isinstance(split, str) else None),
            "fold": cv[1] if cv else None,
            "pooled": bool(exp.get("pooled", False)),
            "variant": exp.get("variant", "single"),
            "ensemble": exp.get("ensemble"),
            "n_members": len(exp.get("members", [])) or None,
            "knn_k": (rec.get("knn") or {}).get("k"),
            # the architecture; a tag named in the config (resnet50.tv_in1k) is weights_tag's
            "backbone": split_tag(str(exp.get("backbone", tr.get("backbone"))))[0]
            if exp.get("backbone", tr.get("backbone")) is not None
            else None,
            **_weights_columns(tr),
            "strategy": exp.get("strategy", tr.get("strategy")),
            "partial_stages": exp.get("partial_stages"),
            "seed": exp.get("seed"),
            "preprocessing": exp.get("preprocessing"),
            "layer_decay": exp.get("layer_decay"),
            "dataset": exp.get("dataset"),
            "n_test": rec["n_test"],
            "n_test_all": rec["metrics"]["n_all"],
            "n_test_hem": rec["metrics"]["n_hem"],
            "n_test_subjects": rec["n_test_subjects"],
            "best_epoch": tr.get("best_epoch"),
            "image_size": tr.get("image_size"),
            "pretrained_weights": (tr.get("train_config") or {}).get("pretrained_weights"),
            "max_epochs": (tr.get("train_config") or {}).get("epochs"),
            "patience": (tr.get("train_config") or {}).get("patience"),
            "epochs_run": tr.get("epochs_run"),
            "train_accuracy": tr.get("train_accuracy"),
            "val_accuracy": tr.get("val_accuracy"),
            "train_val_gap": tr.get("gap"),
            "referral_threshold": rec["referral"]["threshold"],
            "referred_fraction": rec["referral"]["test"]["referred_fraction"],
            "accepted_accuracy": rec["referral"]["test"]["accepted_accuracy"],
            "ece": rec["metrics"].get("ece"),
            **_calibration_columns(rec.get("calibration")),
            "code_version": rec.get("provenance", {}).get("code_version"),
            "checkpoint_sha256": rec.get("checkpoint", {}).get("sha256"),
            "metrics_file": rec["_path"],
            "predictions_file": str(
                Path(rec["_path"]).parent
                / (rec.get("files") or {}).get("predictions", "predictions.parquet")
            ),
        }
        subj = (rec.get("subject_level") or {}).get("aggregations", {})
        for agg in AGGREGATIONS:
            t = (subj.get(agg) or {}).get("test")
            if not t:
                continue
            row["subj_n"], row["subj_n_all"], row["subj_n_hem"] = (
                t["n_subjects"],
                t["n_all"],
                t["n_hem"],
            )
            row[f"subj_{agg}_threshold"] = subj[agg]["threshold"]
            for m in ("sensitivity", "specificity"):
                row[f"subj_{agg}_{m}"] = t[m]
                ci = t.get(f"{m}_ci")
                row[f"subj_{agg}_{m}_lo"], row[f"subj_{agg}_{m}_hi"] = ci if ci else (None, None)
        for key in MAIN_COLUMNS:
            row[key] = rec["metrics"].get(key)
            ci = rec.get("ci", {}).get(key)
            row[f"{key}_lo"], row[f"{key}_hi"] = ci if ci else (None, None)
        row["ci_unit"] = rec.get("ci", {}).get("bootstrap", {}).get("unit")
        rows.append(row)
    df = pd.DataFrame(rows)
    df["model"] = [row_label(r) for r in df.itertuples()]
    return df.sort_values(
        ["family", "pooled", "variant", "group", "backbone", "strategy", "seed", "fold"],
        na_position="last",
    ).reset_index(drop=True)


def _weights_columns(training: dict[str, Any]) -> dict[str, Any]:
    """The weights a run started from, from its record: timm tag and pretraining data,
    "random init" without weights, None when the record does not say (ensembles, old runs)."""
    if "weights" not in training:
        return {"weights_tag": None, "pretraining_data": None}
    weights = training["weights"]
    if not weights:
        return {"weights_tag": RANDOM_INIT, "pretraining_data": None}
    return {
        "weights_tag": weights.get("pretrained_tag"),
        "pretraining_data": weights.get("pretraining_data"),
    }


def _calibration_columns(cal: dict[str, Any] | None) -> dict[str, Any]:
    """Temperature, ECE and Brier score before/after on test with their intervals, and the
    referral on calibrated probabilities (metrics.json's calibration block; none: NaN)."""
    if not cal:
        return {}
    temps = cal.get("temperatures") or [cal["temperature"]]
    out: dict[str, Any] = {
        "temperature": float(np.mean(temps)),
        "cal_referral_threshold": cal["referral"]["threshold"],
        "cal_referred_fraction": cal["referral"]["test"]["referred_fraction"],
        "cal_accepted_accuracy": cal["referral"]["test"]["accepted_accuracy"],
    }
    for metric in ("ece", "brier"):
        for when in ("before", "after"):
            key = f"{metric}_{when}"
            out[key] = cal["test"][metric][when]
            out[f"{key}_lo"], out[f"{key}_hi"] = cal["ci"][metric][when]
    return out


def model_label(backbone: str, strategy: str, partial_stages: Any) -> str:
    """Readable model name, e.g. ``resnet18 (partial: last 2 stages)``."""
    if strategy == "partial":
        return f"{backbone} (partial: last {int(partial_stages)} stages)"
    return f"{backbone} ({strategy})"


def row_label(r: Any) -> str:
    """Model label of a row: single model, ``... + TTA x8``, ``<backbone> (k-NN, k=20)``, or
    ``ensemble <name> (...)``."""
    if r.variant == "ensemble":
        n = "" if r.n_members is None or pd.isna(r.n_members) else f" of {int(r.n_members)}"
        return f"ensemble {r.ensemble} (soft vote{n})"
    if r.variant == "knn":
        # each fold chooses its own k: folds and their pool share one label
        one_k = r.knn_k is not None and not pd.isna(r.knn_k) and not r.pooled and (
            r.fold is None or pd.isna(r.fold)
        )
        label = f"{r.backbone} (k-NN, k={int(r.knn_k)})" if one_k else (
            f"{r.backbone} (k-NN, k per fold)"
        )
    else:
        label = model_label(r.backbone, r.strategy, r.partial_stages)
    label = f"{label} + TTA x8" if r.variant == "tta" else label
    # what else tells two runs of one backbone apart: the weights, preprocessing, layer decay
    tag = getattr(r, "weights_tag", None)
    if isinstance(tag, str) and tag:
        label += f" · {tag}"
    if isinstance(r.preprocessing, str) and r.preprocessing:
        label += f" · {r.preprocessing}"
    if r.layer_decay is not None and not pd.isna(r.layer_decay):
        label += f" · layer decay {float(r.layer_decay):g}"
    return label


def split_label(r: Any) -> str:
    """How a row's test set was formed: the split, a fold summary or the pooled folds."""
    if r.pooled:
        return f"{r.family} {POOLED}"
    if r.fold is not None and not pd.isna(r.fold):
        return f"{r.family} folds (mean ± std)"
    return str(r.split)


def pct(x: Any) -> float | None:
    """``x`` in percent; None for a missing value."""
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else 100.0 * float(x)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Study A Table 2's shape: one row per configuration and test protocol; seeds (and
    cross-validation folds) pooled as mean and std, a single run with its bootstrap CI.
    ``rows`` carry the split audits' columns (``leukopipe.report.protocol.with_audits``)."""
    rows = rows.assign(split_label=[split_label(r) for r in rows.itertuples()])
    # per test protocol: models alphabetically, each cross-validated one's folds then pooled row
    order = {k: i for i, k in enumerate(dict.fromkeys(rows["family"].fillna(rows["split"])))}
    rows = rows.assign(_order=rows["family"].fillna(rows["split"]).map(order)).sort_values(
        ["_order", "model", "split_label"], kind="stable"
    )
    out = []
    for (slabel, model), g in rows.groupby(["split_label", "model"], dropna=False, sort=False):
        per_fold = g.drop_duplicates("fold") if g["fold"].notna().all() else g.iloc[:1]
        rec: dict[str, Any] = {
            "Model": model,
            "Split": slabel,
            "Protocol": group_protocol(g),
            "Seeds": int(g["seed"].nunique()) if g["seed"].notna().any() else len(g),
            "n test": int(per_fold["n_test"].sum()),
            "n ALL": int(per_fold["n_test_all"].sum()),
            "n Hem": int(per_fold["n_test_hem"].sum()),
            "Subjects": int(per_fold["n_test_subjects"].sum()),
        }
        for key, header in MAIN_COLUMNS.items():
            vals = g[key].dropna().astype(float) * 100.0
            rec[header] = vals.mean() if len(vals) else np.nan
            rec[f"{header} std"] = vals.std(ddof=1) if len(vals) > 1 else np.nan
            lo, hi = g[f"{key}_lo"].dropna(), g[f"{key}_hi"].dropna()
            # one run: the bootstrap interval; several: the interval of the first run is
            # not representative, so the spread over seeds/folds is reported instead
            rec[f"{header} CI"] = (
                (100.0 * float(lo.iloc[0]), 100.0 * float(hi.iloc[0]))
                if len(g) == 1 and len(lo) and len(hi)
                else None
            )
        out.append(rec)
    return pd.DataFrame(out)


def _seed(seed: Any) -> str:
    return "–" if seed is None or pd.isna(seed) else str(int(seed))


def subject_level_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Subject-level diagnosis per model (folds only pooled): each aggregation's threshold
    (chosen on validation), sensitivity and specificity [Wilson 95 % CI], subjects counted."""
    out = []
    shown = rows[rows["fold"].isna() | rows["pooled"]] if "fold" in rows else rows
    for r in shown.itertuples():
        for agg in AGGREGATIONS:
            if f"subj_{agg}_sensitivity" not in rows or pd.isna(
                getattr(r, f"subj_{agg}_threshold")
            ):
                continue
            rec = {
                "Model": r.model,
                "Split": split_label(r),
                "Protocol": r.protocol,
                "Seed": _seed(r.seed),
                "Subject score": AGGREGATION_TEXT[agg],
                "Threshold": getattr(r, f"subj_{agg}_threshold"),
                "Subjects (ALL/Hem)": f"{int(r.subj_n)} ({int(r.subj_n_all)}/{int(r.subj_n_hem)})",
            }
            for m, header in (("sensitivity", "Sensitivity"), ("specificity", "Specificity")):
                v = getattr(r, f"subj_{agg}_{m}")
                lo, hi = getattr(r, f"subj_{agg}_{m}_lo"), getattr(r, f"subj_{agg}_{m}_hi")
                rec[f"{header} %"] = (
                    "–"
                    if v is None or pd.isna(v)
                    else f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
                )
            out.append(rec)
    return pd.DataFrame(out)


def calibration_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model (folds only pooled): the temperature fitted on validation, ECE and Brier score
    on test before and after temperature scaling [subject-bootstrap 95 % CI], and Study B's
    referral with its threshold chosen on the calibrated validation probabilities."""
    if "temperature" not in rows:
        return pd.DataFrame()
    shown = rows[(rows["fold"].isna() | rows["pooled"]) & rows["temperature"].notna()]
    out = []
    for r in shown.itertuples():
        rec: dict[str, Any] = {
            "Model": r.model,
            "Split": split_label(r),
            "Protocol": r.protocol,
            "Seed": _seed(r.seed),
            "Temperature": f"{r.temperature:.2f}" + (" (mean of folds)" if r.pooled else ""),
        }
        for metric, header in (("ece", "ECE"), ("brier", "Brier")):
            for when in ("before", "after"):
                key = f"{metric}_{when}"
                rec[f"{header} {when}"] = (
                    f"{getattr(r, key):.3f} [{getattr(r, key + '_lo'):.3f},"
                    f" {getattr(r, key + '_hi'):.3f}]"
                )
        rec["Referral threshold (calibrated)"] = (
            f"{r.cal_referral_threshold:.3f}" + (" (mean of folds)" if r.pooled else "")
        )
        rec["Referred %"] = pct(r.cal_referred_fraction)
        rec["Accepted acc. %"] = pct(r.cal_accepted_accuracy)
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
    shown = summary[["Model", "Split", "Protocol", "Seeds", "n test", "Subjects"]].copy()
    for h in headers:
        shown[h] = [
            _cell(v, s, c)
            for v, s, c in zip(summary[h], summary[f"{h} std"], summary[f"{h} CI"], strict=True)
        ]
    return shown
