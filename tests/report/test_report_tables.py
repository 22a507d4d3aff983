"""The comparison's tables: published numbers only beside like-for-like runs and under their
own metric, each row's protocol from the split audit, the deviations, the references, and
captions written once (Markdown, LaTeX, HTML and the Snakemake report .rst files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import split_audit, write_audits

from leukopipe.evaluate.eval_record import ScoringSettings, build_record
from leukopipe.report import captions, compare, literature, protocol, tables
from leukopipe.report.deviations import deviations, pretrained_tag
from leukopipe.report.html import build_html
from leukopipe.report.published import citations, load_published

ROOT = Path(__file__).resolve().parents[2]
SUBJECTS = [f"{'' if i % 3 else 'H'}{i}" for i in range(12)]  # 8 ALL, 4 Hem subjects


def record(split: str, backbone: str, strategy: str, *, seed: int = 0, acc: float = 0.8,
           pretrained: str | None = None, n_all: int = 80, n_hem: int = 40) -> dict:
    metrics = {
        "accuracy": acc, "precision": 0.81, "recall": 0.92, "f1": 0.86, "roc_auc": 0.83,
        "macro_f1": 0.71, "weighted_f1": 0.77, "balanced_accuracy": 0.66, "specificity": 0.4,
        "mcc": 0.3, "ece": 0.05, "n_all": n_all, "n_hem": n_hem,
    }
    name = f"{split}.{backbone}.{strategy}.s{seed}"
    return {
        "_path": f"/x/{name}/metrics.json",
        "experiment": {"name": name, "group": "g", "split": split, "backbone": backbone,
                       "strategy": strategy, "partial_stages": 2, "seed": seed,
                       "dataset": "synthetic"},
        "training": {"best_epoch": 2, "train_accuracy": 0.9, "val_accuracy": 0.7, "gap": 0.2,
                     "image_size": 64, "train_config": {"pretrained_weights": pretrained}},
        "n_test": n_all + n_hem, "n_test_subjects": 12, "metrics": metrics,
        "ci": {"accuracy": [acc - 0.05, acc + 0.05], "bootstrap": {"unit": "subject"}},
        "referral": {"threshold": 0.8, "test": {"referred_fraction": 0.2,
                                                "accepted_accuracy": 0.9}},
        "provenance": {"code_version": "abc123"}, "checkpoint": {"sha256": "0" * 64},
    }


AUDITS = {
    "image": split_audit("image", SUBJECTS, shared=11, near_copies=2),
    "official": split_audit("official", SUBJECTS),
}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    recs = [
        record("image", "resnet50", "full", seed=0, acc=0.90),
        record("image", "resnet50", "full", seed=1, acc=0.92),
        record("image", "resnet50", "frozen"),
        record("image", "resnet18", "frozen"),
        record("official", "resnet50", "frozen", acc=0.66),
        record("official", "resnet50", "partial", acc=0.74),
        record("official", "resnet18", "frozen", acc=0.65),
        record("official", "efficientnet_b1", "full", pretrained="w/efficientnet_b1.safetensors"),
    ]
    return protocol.with_audits(compare.flat_rows(recs), AUDITS)


# ------------------------------------------------------------------ protocol in words


def test_every_row_says_its_protocol_with_the_audit_counts(rows):
    image = rows[rows["split"] == "image"].iloc[0]
    assert image["protocol"] == (
        "image-level (leaky: 11 of 12 test subjects also in training; 2 test images"
        " near-duplicates of training images (<= 8 bits))"
    )
    official = rows[rows["split"] == "official"].iloc[0]
    assert official["protocol"] == (
        "subject-disjoint (preliminary test set: 12 test subjects, none in training)"
    )
    main = tables.build(rows)[0].frame
    assert set(main["Protocol"]) == {image["protocol"], official["protocol"]}


def test_a_row_without_its_audit_is_a_clear_error():
    rows = compare.flat_rows([record("patient", "resnet18", "full")])
    with pytest.raises(protocol.AuditMissingError, match=r"no audit\.json for split 'patient'"):
        protocol.with_audits(rows, AUDITS)


def test_leakage_table_reports_shared_subjects_and_near_duplicates(rows):
    table = literature.leakage_table(rows).set_index("Split")
    assert table.loc["image", "Test subjects also in training"] == 11
    assert table.loc["image", "Test images from training subjects"] == 22
    assert table.loc["image", "Near-duplicates of training images (<= 8 bits)"] == 2
    assert table.loc["official", "Test subjects also in training"] == 0
    assert table.loc["official", "Near-duplicates of training images (<= 8 bits)"] == 0


# ------------------------------------------------------------------ like with like


def test_study_b_value_only_beside_the_same_backbone_strategy_and_protocol(rows):
    b = literature.study_b_table(rows).set_index(["Model", "Protocol"])["Study B acc. % (published)"]
    by_model = {m: v for (m, p), v in b.items() if p.startswith("subject-disjoint")}
    assert by_model["resnet18 (frozen)"] == 65.77
    assert by_model["resnet50 (partial: last 2 stages)"] == 78.41
    # Study B reports nothing for a frozen ResNet50: no published value beside it
    assert pd.isna(by_model["resnet50 (frozen)"])
    # the same backbone and strategy on another protocol (image-level) gets none either
    image = [v for (m, p), v in b.items() if m == "resnet18 (frozen)" and p.startswith("image")]
    assert len(image) == 1 and pd.isna(image[0])


def test_study_b_table_shows_balanced_accuracy_macro_f1_and_majority_class(rows):
    b = literature.study_b_table(rows)
    r = b[b["Model"] == "resnet18 (frozen)"].iloc[0]
    assert r["Balanced acc. %"] == pytest.approx(66.0) and r["Macro-F1 %"] == pytest.approx(71.0)
    assert r["Majority-class acc. %"] == pytest.approx(100 * 80 / 120)
    facts = literature.study_b_facts()
    assert "1219 ALL and 648 Hem" in facts and "65.29 %" in facts and "65.77 %" in facts


def test_study_a_rows_are_published_in_full_beside_same_backbone_full_on_image(rows):
    a = literature.study_a_table(rows)
    pub = a[a["Source"] == "Study A, Table 2 (published)"].set_index("Model")
    assert len(pub) == 5
    r50 = pub.loc["resnet50 (full)"]
    assert [r50[h] for h in ("Accuracy", "Precision (ALL)", "Recall (ALL)", "F1 (ALL)", "AUC")] \
        == ["90.58", "90.37", "96.34", "93.27", "94.38"]
    assert r50["Macro-F1"] == r50["Weighted F1"] == "–"  # not published
    ours = a[a["Source"] == "this project"]
    # only resnet50 full on the image split (2 seeds); its row follows ResNet50's published row
    assert list(ours["Model"]) == ["resnet50 (full)"] and ours.iloc[0]["Seeds"] == 2
    assert ours.iloc[0]["Accuracy"] == "91.00 ± 1.41"
    assert a.index[a["Source"] == "this project"][0] == pub.index.get_loc("resnet50 (full)") + 1
    assert ours.iloc[0]["Protocol"].startswith("image-level (leaky: 11 of 12")


def test_study_a_rows_follow_whatever_the_preprocessing_and_say_what_differs():
    """A run whose label carries its preprocessing (``· 64px-bal320``) still stands under its
    published row, and says it is not comparable (64 px, random initialisation, 6 epochs)."""
    rec = record("image", "efficientnet_b0", "full")
    rec["experiment"]["preprocessing"] = "64px-bal320"
    rec["training"]["train_config"] |= {"epochs": 6, "patience": 3}
    rows = protocol.with_audits(compare.flat_rows([rec]), AUDITS)
    a = literature.study_a_table(rows)
    ours = a[a["Source"] == "this project"]
    assert list(ours["Model"]) == ["efficientnet_b0 (full) · 64px-bal320"]
    published = a.index[a["Model"] == "efficientnet_b0 (full)"][0]
    assert ours.index[0] == published + 1
    r = ours.iloc[0]
    assert r["Setting"] == (
        "64 px; weights none (random initialisation); at most 6 epochs (patience 3); 1 seed"
    )
    assert r["Differs from the published setting"] == (
        "Not comparable: 64 px (Study A: 224 px); random initialisation (Study A:"
        " ImageNet-pretrained (weights not named)); at most 6 epochs (Study A: 50, patience 15)"
    )
    assert a.loc[published, "Setting"].startswith("224 px; weights ImageNet-pretrained")


def test_a_pretrained_run_names_its_tag_from_its_recorded_weights():
    rec = record("image", "resnet50", "full", pretrained="w/resnet50.safetensors")
    rec["training"]["image_size"] = 224
    rec["training"]["train_config"] |= {"epochs": 50, "patience": 15}
    rec["training"]["weights"] = {"backbone": "resnet50", "pretrained_tag": "a1_in1k"}
    rows = protocol.with_audits(compare.flat_rows([rec]), AUDITS)
    r = literature.study_a_table(rows).query("Source == 'this project'").iloc[0]
    assert r["Setting"] == "224 px; weights resnet50.a1_in1k; at most 50 epochs (patience 15); 1 seed"
    assert r["Differs from the published setting"] == "Nothing the source states differs"


def test_preliminary_test_references_stand_beside_official_runs_only(rows):
    honest = literature.honest_table(rows)
    bench = honest[honest["Source"] == "leakage-aware benchmark (published)"].iloc[0]
    assert (bench["AUC"], bench["Sensitivity (ALL recall)"], bench["Specificity"]) == (
        "91.30", "87.00", "80.00")
    assert bench["Weighted F1"] == bench["Accuracy"] == "–"
    assert "preliminary test set" in bench["Protocol"]
    winner = honest[honest["Source"] == "C-NMC 2019 challenge winner (published)"].iloc[0]
    assert (winner["Weighted F1"], winner["Balanced acc."]) == ("92.50", "91.73")
    assert winner["AUC"] == "–"
    assert "91.04" not in set(honest.astype(str).to_numpy().ravel())  # final test: context only
    assert "91.04 %" in literature.honest_facts()
    # every official-split run of this project, and nothing of another split
    ours = honest[honest["Source"] == "this project"]
    official = rows[rows["split"] == "official"]
    assert sorted(ours["Model"]) == sorted(official["model"])
    assert ours["Protocol"].str.startswith("subject-disjoint (preliminary test set").all()
    differs = ours.set_index("Model")["Differs from the published setting"]
    # pretrained, the benchmark's model: nothing the two sources state differs
    assert differs["efficientnet_b1 (full)"] == "Nothing the source states differs"
    assert differs["resnet18 (frozen)"] == (
        "Not comparable: random initialisation (challenge winner: pretrained residual network"
        " (weights not named)); model resnet18 (benchmark: efficientnet_b1)"
    )


def test_study_a_table3_is_shown_as_quoted_never_beside_a_run(rows):
    quoted = literature.quoted_table()
    t3 = load_published()["study_a"]["table3"]["rows"]
    assert list(quoted["F1 % as quoted by Study A"]) == [r["f1_quoted"] for r in t3]
    assert set(quoted["Test set"]) == {"not stated by Study A"}
    # except Study A's own 94.30 (its Table 2 B3 row) and the winner's 92.50, which Table 5
    # shows from the winner's own paper, on the test set that paper names
    values = {f"{r['f1_quoted']:.2f}" for r in t3[:-1]} - {"92.50"}
    assert len(values) == 11
    for t in tables.build(rows):  # no other table shows a quoted number
        if t.key != "quoted":
            assert not set(t.frame.astype(str).to_numpy().ravel()) & values, t.title


# ------------------------------------------------------------------ deviations, references


def test_deviations_give_the_image_split_counts_and_why(rows):
    items = deviations(rows)
    split = next(i for i in items if i.startswith("Image-level test set"))
    assert "80 ALL + 40 Hem" in split and "Study A's 847 + 406" in split
    assert "gives 849 ALL + 404 Hem on the full data" in split
    assert "(the total, 1,253, is the same)" in split
    train = next(i for i in items if i.startswith("Training set"))
    audit = AUDITS["image"]["splits"]
    assert f"{audit['train']['per_class']['all']} ALL + {audit['train']['per_class']['hem']} Hem" \
        in train and "7,644 + 3,631" in train
    assert f"validation ({audit['val']['n_images']} images" in train
    assert any(i.startswith("Single runs: 6 of 7 configurations ran one seed") for i in items)
    assert any("deepest 2 stage(s)" in i for i in items)
    epoch = next(i for i in items if i.startswith("Epoch selection"))
    assert "optimistic by construction" in epoch and "epoch 7" in epoch


def test_deviations_name_the_pretrained_tags_actually_used(rows):
    text = next(i for i in deviations(rows) if i.startswith("Pretrained weights"))
    tag = pretrained_tag("efficientnet_b1")
    assert (
        f"efficientnet_b1: timm tag {tag['tag']} (ImageNet-1k), pretrained at {tag['input']} px"
        in text
    )
    assert "resnet50: random initialisation (no weights file)" in text
    assert "trains at 64 px" in text
    assert "timm.list_pretrained" in text


def test_pretrained_tag_comes_from_timms_registry():
    import timm

    tag = pretrained_tag("efficientnet_b1")
    cfg = timm.models.get_pretrained_cfg("efficientnet_b1")
    assert tag["tag"] == cfg.tag and tag["input"] == str(cfg.input_size[-1])
    assert tag["mean"] == "(" + ", ".join(f"{v:g}" for v in cfg.mean) + ")"


def _words(text: str) -> str:
    return " ".join(text.split())


def test_readme_cites_the_studies_and_the_dataset_as_the_report_does():
    readme = _words((ROOT / "README.md").read_text(encoding="utf-8"))
    for citation in citations():
        assert _words(citation) in readme, citation
    assert citations()[0].startswith("Study A: Faisal Ahmed. Transfer Learning with EfficientNet")
    cited = " ".join(citations())
    for fact in ("Transfer Learning with ResNet Architectures for Leukemia Detection",
                 "Nisreen Albzour", "arXiv:2606.24944, 2026",
                 "Yongsheng Pan, Mingxia Liu, Yong Xia, Dinggang Shen", "pp. 73-82"):
        assert fact in cited, fact


# ------------------------------------------------------------------ captions written once


def test_report_rst_captions_are_generated_from_the_one_source():
    for name in captions.RST_NAMES:
        path = ROOT / "report" / f"{name}.rst"
        assert path.read_text(encoding="utf-8") == captions.rst(name), (
            f"{path} is stale: run `python -m leukopipe.report.captions report`"
        )
    # and every .rst the rules register is one of them
    rules = (ROOT / "rules" / "report.smk").read_text()
    assert set(re.findall(r'caption="\.\./report/(\w+)\.rst"', rules)) == set(captions.RST_NAMES)


def test_markdown_latex_and_html_carry_the_same_captions(rows):
    built = tables.build(rows)
    md = tables.markdown(built, rows)
    tex = tables.latex(built)
    page = build_html(rows, [])
    for key, cap in captions.TABLES.items():
        assert f"### {cap.title}" in md and cap.text in md, key
        assert tables.tex_escape(cap.text) in tex, key
        assert cap.text.replace("'", "&#x27;") in page, key
    study_b = captions.TABLES["study_b"].text
    assert "this project's test set of the official split" in study_b
    for section in ("deviations", "references"):
        assert captions.SECTIONS[section] in md and captions.SECTIONS[section] in page
    for citation in citations():
        assert citation in md


# ------------------------------------------------------------------ the compare step


def _write_eval(folder: Path, split: str, backbone: str, strategy: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)

    def manifest(prefix: str) -> pd.DataFrame:
        return pd.DataFrame(
            [{"image_id": f"{prefix}{s}_{c}", "subject": s, "label": int(not s.startswith("H"))}
             for s in SUBJECTS for c in range(3)]
        )

    test, val = manifest("t"), manifest("v")
    p_test = np.clip(0.5 + 0.3 * (2 * test["label"] - 1) + rng.normal(0, 0.2, len(test)), 0, 1)
    p_val = np.clip(0.5 + 0.3 * (2 * val["label"] - 1) + rng.normal(0, 0.2, len(val)), 0, 1)
    pred, _, rec = build_record(
        test, p_test.to_numpy(), val, p_val.to_numpy(), ScoringSettings.from_config(n_boot=20)
    )
    name = f"{split}.{backbone}.{strategy}.s{seed}"
    rec["experiment"] = {"name": name, "group": "g", "split": split, "backbone": backbone,
                         "strategy": strategy, "partial_stages": 2, "seed": seed,
                         "variant": "single", "dataset": "synthetic"}
    rec["training"] = {"best_epoch": 1, "image_size": 32, "train_config": {}}
    d = folder / name
    d.mkdir(parents=True)
    pred.to_parquet(d / "predictions.parquet")
    pd.DataFrame({"epoch": [1, 2], "train_loss": [0.7, 0.6], "val_loss": [0.7, 0.65],
                  "val_macro_f1": [0.5, 0.6]}).to_parquet(d / "history.parquet")
    (d / "metrics.json").write_text(json.dumps(rec))
    return d / "metrics.json"


def test_compare_step_writes_every_table_section_and_figure(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_step", ROOT / "scripts" / "compare.py")
    step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step)
    metrics = [
        _write_eval(tmp_path / "eval", "image", "resnet18", "full", 0),
        _write_eval(tmp_path / "eval", "official", "resnet18", "frozen", 1),
    ]
    audits = write_audits(tmp_path / "splits", list(AUDITS.values()))
    args = ["--metrics", *map(str, metrics), "--tables-dir", str(tmp_path / "tables"),
            "--figures-dir", str(tmp_path / "figures")]
    assert step.main([*args, "--audits", *map(str, audits)]) == 0
    md = (tmp_path / "tables" / "comparison.md").read_text()
    for cap in captions.TABLES.values():
        assert cap.title in md
    assert "image-level (leaky: 11 of 12 test subjects also in training" in md
    csv = pd.read_csv(tmp_path / "tables" / "comparison.csv")
    assert {"protocol", "test_subjects_in_training", "near_duplicate_test_images"} <= set(csv)
    assert sorted(p.stem for p in (tmp_path / "figures").iterdir()) == sorted(captions.FIGURES)
    with pytest.raises(protocol.AuditMissingError, match="official"):
        step.main([*args, "--audits", str(audits[0])])


def test_deviations_say_so_when_no_model_was_pretrained():
    recs = [record("official", "resnet18", "frozen"), record("image", "resnet50", "full")]
    rows = protocol.with_audits(compare.flat_rows(recs), AUDITS)
    text = next(i for i in deviations(rows) if i.startswith("Pretrained weights"))
    assert text.startswith("Pretrained weights: none; every model here trains at 64 px from")


def test_cross_validated_models_side_by_side_with_the_benchmark_reference():
    """Table 7: every pooled cross-validation (Study C beside Study A), same columns, and no
    published row (none was measured out of fold)."""
    folds = [f"cv3-f{f}" for f in range(3)]
    audits = {s: split_audit(s, SUBJECTS[f::3], seed=f) for f, s in enumerate(folds)}
    recs = []
    for backbone, prep, acc in (("resnet50", "224px-bal10000", 0.81),
                                ("convnext_tiny", "224px-none", 0.86)):
        for s in folds:
            rec = record(s, backbone, "full", acc=acc)
            rec["experiment"]["preprocessing"] = prep
            recs.append(rec)
        pooled = record("cv3", backbone, "full", acc=acc)
        pooled["experiment"].update(pooled=True, family="cv3", preprocessing=prep,
                                    name=f"cv3.{backbone}.full.s0.pooled")
        recs.append(pooled)
    rows = protocol.with_audits(compare.flat_rows(recs), audits)
    table = literature.cross_validation_table(rows)
    ours = table[table["Source"] == "this project"]
    assert list(ours["Model"]) == ["convnext_tiny (full) · 224px-none",
                                   "resnet50 (full) · 224px-bal10000"]  # pools only, no folds
    assert set(ours["Protocol"]) == {
        "subject-disjoint (cross-validation folds: 12 test subjects, none in training)"}
    assert ours["Accuracy"].str.startswith(("86.00 [", "81.00 [")).all()
    assert set(table["Source"]) == {"this project"}  # no published row measured out of fold
    assert list(table.columns[4:]) == ["Accuracy", "Precision (ALL)",
                                       "Sensitivity (ALL recall)", "Specificity", "F1 (ALL)",
                                       "AUC", "Macro-F1", "Weighted F1"]
