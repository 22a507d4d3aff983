"""Soft-voting ensembles and pooled cross-validation rows, from stored predictions only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import split_audit

from leukopipe.evaluate import metrics
from leukopipe.evaluate.ensemble import soft_vote
from leukopipe.evaluate.eval_record import ScoringSettings, build_record, pooled_record
from leukopipe.evaluate.pooled_folds import load_parts, pool
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.report import compare, protocol

# the config's scoring settings with few bootstrap resamples (small and fast)
BOOT_50 = ScoringSettings.from_config(n_boot=50)


def manifest(prefix: str, n_subjects: int = 6, cells: int = 5, seed: int = 0) -> pd.DataFrame:
    rows = []
    for s in range(n_subjects):
        label = s % 2
        subject = f"{prefix}{s}" if label else f"H{prefix}{s}"
        rows += [
            {"image_id": f"{subject}_{c}", "subject": subject, "label": label} for c in range(cells)
        ]
    return pd.DataFrame(rows)


def probs(df: pd.DataFrame, seed: int, skill: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(
        0.5 + skill * (2 * df["label"].to_numpy() - 1) + rng.normal(0, 0.25, len(df)), 0, 1
    )


def test_soft_vote_aligns_on_image_id_and_averages():
    m = manifest("a")
    a = m.assign(prob_all=probs(m, 1))
    b = m.assign(prob_all=probs(m, 2)).sample(frac=1.0, random_state=0)  # other row order
    out = soft_vote([a, b]).set_index("image_id")
    expect = (a.set_index("image_id")["prob_all"] + b.set_index("image_id")["prob_all"]) / 2
    assert np.allclose(out.loc[expect.index, "prob_all"], expect)
    with pytest.raises(ValueError, match="other images"):
        soft_vote([a, b.iloc[1:]])
    with pytest.raises(ValueError, match="at least 2"):
        soft_vote([a])


def test_pooled_record_equals_metrics_of_the_concatenated_folds():
    parts = []
    for f in range(3):
        test, val = manifest(f"t{f}_"), manifest(f"v{f}_")
        pred, _, rec = build_record(test, probs(test, f), val, probs(val, 10 + f), BOOT_50)
        parts.append((pred, rec))
    pred, rec = pooled_record(parts, n_boot=50)
    both = pd.concat([p for p, _ in parts])
    assert rec["n_test"] == len(both) == 90 and rec["n_test_subjects"] == 18
    assert rec["metrics"] == metrics.binary_metrics(both["label"], both["prob_all"])
    assert rec["referral"]["test"]["n_referred"] == sum(
        r["referral"]["test"]["n_referred"] for _, r in parts
    )
    assert rec["subject_level"]["aggregations"]["mean_prob"]["test"]["n_subjects"] == 18
    with pytest.raises(ValueError, match="not disjoint"):
        pooled_record([parts[0], parts[0]], n_boot=50)


def write_eval(folder: Path, name: str, split: str, test: pd.DataFrame, seed: int) -> Path:
    val = manifest("val")
    pred, _, rec = build_record(test, probs(test, seed), val, probs(val, seed + 50), BOOT_50)
    rec["experiment"] = {
        "name": name,
        "group": "g",
        "split": split,
        "backbone": "resnet18",
        "strategy": "frozen",
        "seed": 0,
        "variant": "single",
    }
    d = folder / name
    d.mkdir(parents=True)
    pred.to_parquet(d / "predictions.parquet")
    (d / "metrics.json").write_text(json.dumps(rec))
    return d / "metrics.json"


def test_compare_pools_cv_folds_into_mean_std_and_out_of_fold_rows(tmp_path):
    paths = [
        write_eval(tmp_path, f"cv3-f{f}.resnet18.frozen.s0", f"cv3-f{f}", manifest(f"f{f}_"), f)
        for f in range(3)
    ]
    paths.append(write_eval(tmp_path, "image.resnet18.frozen.s0", "image", manifest("i"), 7))
    # the pool_folds step, folds given in any order
    preds = [p.parent / "predictions.parquet" for p in paths[:3]]
    pooled_pred, pooled = pool(load_parts(preds[::-1], paths[:3][::-1]), threshold=0.5, n_boot=50)
    assert pooled["experiment"]["name"] == "cv3.resnet18.frozen.s0.pooled"
    assert pooled["experiment"]["folds"] == [f"cv3-f{f}.resnet18.frozen.s0" for f in range(3)]
    out = tmp_path / pooled["experiment"]["name"]
    out.mkdir()
    pooled_pred.to_parquet(out / "predictions.parquet")
    (out / "metrics.json").write_text(json.dumps(pooled))
    rows = compare.flat_rows(compare.load_records([*paths, out / "metrics.json"]))
    audits = {
        f"cv3-f{f}": split_audit(f"cv3-f{f}", list(manifest(f"f{f}_")["subject"].unique()))
        for f in range(3)
    }
    audits["image"] = split_audit("image", list(manifest("i")["subject"].unique()), shared=4)
    rows = protocol.with_audits(rows, audits)
    oof = rows[rows["pooled"]].iloc[0]
    cat = pd.concat(pd.read_parquet(p.parent / "predictions.parquet") for p in paths[:3])
    assert oof["n_test"] == len(cat) == 90
    assert oof["accuracy"] == pytest.approx(
        metrics.binary_metrics(cat["label"], cat["prob_all"])["accuracy"]
    )
    shown = compare.display_table(compare.summary_table(rows), ["Accuracy"]).set_index("Split")
    folds = rows[rows["fold"].notna() & ~rows["pooled"]]["accuracy"] * 100
    assert shown.loc["cv3 folds (mean ± std)", "Accuracy"] == (
        f"{folds.mean():.2f} ± {folds.std(ddof=1):.2f}"
    )
    assert shown.loc["cv3 folds (mean ± std)", "n test"] == 90
    # each protocol in words, with the audits' counts (folds: their test subjects summed)
    assert shown.loc["image", "Protocol"] == (
        "image-level (leaky: 4 of 6 test subjects also in training)"
    )
    for label in ("cv3 folds (mean ± std)", "cv3 pooled out-of-fold"):
        assert shown.loc[label, "Protocol"] == (
            "subject-disjoint (cross-validation folds: 18 test subjects, none in training)"
        )
    assert shown.loc["cv3 pooled out-of-fold", "Accuracy"].startswith(
        f"{100 * oof['accuracy']:.2f} ["
    )
    subj = compare.subject_level_table(rows)
    assert set(subj["Split"]) == {"cv3 pooled out-of-fold", "image"}
    assert "18 (9/9)" in set(subj["Subjects (ALL/Hem)"])
    assert set(subj["Protocol"]) == {
        "image-level (leaky: 4 of 6 test subjects also in training)",
        "subject-disjoint (cross-validation folds: 18 test subjects, none in training)",
    }
    # an incomplete set of folds is not pooled (it would not cover every subject)
    with pytest.raises(InvalidInputError, match="all 3 folds of cv3"):
        load_parts(preds[1:], paths[1:3])
