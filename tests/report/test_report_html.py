"""The report page and its figures as a reader sees them: the headline first (with warnings
for synthetic data and untrained weights), a table of contents, intervals under their values,
confusion-matrix counts that stand out from their cells, and legends with readable names in
colours that do not repeat."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from report_fixtures import split_audit

from leukopipe.report import compare, figures, protocol
from leukopipe.report.html import build_html

SUBJECTS = [f"{'' if i % 3 else 'H'}{i}" for i in range(12)]
AUDITS = {
    "image": split_audit("image", SUBJECTS, shared=11),
    "official": split_audit("official", SUBJECTS),
}


def _record(folder: Path, split: str, backbone: str, strategy: str, acc: float, wf1: float,
            seed: int = 0, pretrained: str | None = "none") -> dict:
    name = f"{split}.{backbone}.{strategy}.s{seed}"
    out = folder / name
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed + len(name))
    label = np.r_[np.ones(40, int), np.zeros(20, int)]
    prob = np.clip(label * 0.5 + rng.uniform(0, 0.6, label.size), 0, 1)
    pd.DataFrame({"label": label, "prob_all": prob, "pred": (prob > 0.5).astype(int)}).to_parquet(
        out / "predictions.parquet")
    pd.DataFrame({"epoch": [1, 2], "train_loss": [0.7, 0.5], "val_loss": [0.7, 0.6],
                  "val_macro_f1": [0.5, 0.6]}).to_parquet(out / "history.parquet")
    metrics = {"accuracy": acc, "precision": 0.8, "recall": 0.9, "f1": 0.85, "roc_auc": 0.8,
               "macro_f1": 0.7, "weighted_f1": wf1, "balanced_accuracy": 0.7,
               "specificity": 0.5, "mcc": 0.3, "ece": 0.05, "n_all": 40, "n_hem": 20}
    return {
        "_path": str(out / "metrics.json"),
        "experiment": {"name": name, "group": "g", "split": split, "backbone": backbone,
                       "strategy": strategy, "partial_stages": 2, "seed": seed,
                       "dataset": "synthetic C-NMC-layout data (seed 7)"},
        # as evaluate records them: the weights record the run started from, None from scratch
        "training": {"best_epoch": 2, "image_size": 64,
                     "train_config": {"pretrained_weights": None if pretrained in (None, "none")
                                      else pretrained},
                     "weights": None if pretrained in (None, "none") else {
                         "backbone": backbone, "pretrained_tag": "a1_in1k"}},
        "n_test": 60, "n_test_subjects": 12, "metrics": metrics,
        "ci": {"accuracy": [acc - 0.05, acc + 0.04], "weighted_f1": [wf1 - 0.06, wf1 + 0.05],
               "bootstrap": {"unit": "subject"}},
        "referral": {"threshold": 0.8, "test": {"referred_fraction": 0.2,
                                                "accepted_accuracy": 0.9}},
        "provenance": {"code_version": "abc123"}, "checkpoint": {"sha256": "ab" * 32},
    }


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("eval")
    recs = [
        _record(folder, "image", "resnet50", "full", 0.92, 0.91),
        _record(folder, "image", "efficientnet_b0", "full", 0.93, 0.925),
        _record(folder, "official", "resnet50", "full", 0.80, 0.79),
        _record(folder, "official", "resnet18", "frozen", 0.66, 0.65),
        _record(folder, "official", "resnet18", "partial", 0.74, 0.73),
    ]
    return protocol.with_audits(compare.flat_rows(recs), AUDITS)


def test_headline_comes_first_with_best_disjoint_model_leak_and_studies(rows):
    page = build_html(rows, [])
    body = page[page.index("<body>"):]
    # the warnings and the summary come before any table
    assert body.index("class='banner'") < body.index("id='summary'") < body.index("<table")
    assert "Synthetic data" in body and "untrained (random) weights" in body
    summary = body[body.index("id='summary'"):body.index("<nav>")]
    assert "Best subject-disjoint model" in summary
    assert "resnet50 (full) · random init on official" in summary
    assert "79.0 % [95 % CI 73.0–84.0]" in summary
    # the same backbone on the leaky split, and the difference in points
    assert "+12.0 points" in summary
    assert "Study A" in summary and "published for EfficientNet-B0: 91.22 %" in summary
    assert "Study B" in summary and "resnet18 frozen 66.0 %" in summary


def test_contents_link_to_every_section(rows):
    page = build_html(rows, [])
    links = re.findall(r"<a href='#([^']+)'>", page)
    assert len(links) >= 8
    for anchor in links:
        assert f"id='{anchor}'" in page


def test_intervals_sit_under_their_values_and_hashes_are_short(rows):
    page = build_html(rows, [])
    assert "<span class='ci'>[" in page
    assert re.search(r"<td>\d+\.\d\d \[", page) is None
    assert "ab" * 32 not in page.replace("title='" + "ab" * 32, "")


@pytest.mark.parametrize("mat", [[[0, 5], [100, 3]], [[50, 50], [49, 51]], [[1, 0], [0, 1]],
                                 [[300, 2], [150, 148]]])
def test_confusion_counts_contrast_with_their_cells(mat):
    fig, ax = plt.subplots()
    figures.confusion_axes(ax, np.array(mat), "m")
    image = ax.get_images()[0]
    texts = ax.texts
    assert len(texts) == 4
    for t, v in zip(texts, np.array(mat).ravel(), strict=True):
        background = image.cmap(image.norm(v))
        from matplotlib.colors import to_rgb
        assert figures.contrast_ratio(to_rgb(t.get_color()), background) >= 4.5, (v, mat)
    plt.close(fig)


def test_legends_use_readable_names_and_colours_do_not_repeat(rows, tmp_path):
    names = figures.readable_names(rows)
    assert names["official.resnet18.partial.s0"] == (
        "resnet18 (partial: last 2 stages) · random init, official")
    styles = figures.line_styles(25)
    assert len({(s["color"], s["ls"]) for s in styles}) == 25
    assert len({s["color"] for s in figures.line_styles(11)}) == 11
    paths = figures.comparison_figures(rows, tmp_path)
    for p in paths:
        width = plt.imread(p).shape[1]
        assert 900 <= width <= 1400, (p.name, width)
