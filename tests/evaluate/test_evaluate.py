"""Evaluation, comparison tables, report and prediction on a tiny trained checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from report_fixtures import split_audit
from train_fixtures import write_data, write_split

from leukopipe.evaluate.calibration import apply_temperature
from leukopipe.evaluate.inference import load_classifier, predict_store
from leukopipe.evaluate.predict import predict_paths
from leukopipe.evaluate.scoring import EvalSettings, evaluate, train_val_gap
from leukopipe.report import compare, literature, protocol, tables
from leukopipe.report.html import build_html
from leukopipe.train.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]

# the pipeline's evaluation settings (the schema's defaults), smaller bootstrap where noted
EVAL_SETTINGS = EvalSettings.from_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("eval")
    data = write_data(folder, n_train=64, n_val=32)
    data["test_manifest"], data["test_pixels"] = write_split(folder, "test", 40, seed=3)
    for key in ("val_manifest", "test_manifest"):  # one class per subject, as in C-NMC
        df = pd.read_parquet(data[key])
        df["subject"] = [f"{'' if y else 'H'}{i % 4}" for i, y in enumerate(df["label"])]
        df.to_parquet(data[key], index=False)
    cfg = TrainConfig(
        backbone="resnet18",
        strategy="full",
        epochs=3,
        batch_size=16,
        lr=1e-3,
        workers=0,
        amp="none",
    )
    train(
        cfg,
        data["train_manifest"],
        data["train_pixels"],
        data["val_manifest"],
        data["val_pixels"],
        folder / "run",
        folder / "resume",
        {"experiment": {"name": "x"}},
    )
    data["best"] = folder / "run" / "best.pt"
    data["history"] = folder / "run" / "history.parquet"
    return data


def test_checkpoint_alone_is_enough_for_inference(trained):
    clf = load_classifier(trained["best"], "cpu")
    pixels = np.load(trained["test_pixels"])
    prob = predict_store(clf, pixels, batch_size=7)  # a batch size that leaves a remainder
    assert prob.shape == (40,) and np.all((prob >= 0) & (prob <= 1))
    labels = pd.read_parquet(trained["test_manifest"])["label"].to_numpy()
    assert np.mean((prob >= 0.5) == labels) > 0.8, "the easy task was learned"
    with pytest.raises(ValueError, match="does not match the model's input"):
        predict_store(clf, pixels[:, :16, :16])


def test_evaluate_record(trained):
    clf = load_classifier(trained["best"], "cpu")
    test = pd.read_parquet(trained["test_manifest"])
    val = pd.read_parquet(trained["val_manifest"])
    preds, val_preds, rec = evaluate(
        clf,
        test,
        trained["test_pixels"],
        val,
        trained["val_pixels"],
        EVAL_SETTINGS(n_boot=50, referral_target=0.9),
    )["plain"]
    assert len(val_preds) == len(val) and val_preds["referred"].dtype == bool
    assert list(preds.columns[:5]) == ["image_id", "subject", "label", "prob_all", "pred"]
    assert rec["n_test"] == 40 and rec["n_test_subjects"] == 8
    m = rec["metrics"]
    assert m["confusion"]["tp"] + m["confusion"]["fn"] == int(test.label.sum())
    lo, hi = rec["ci"]["accuracy"]
    assert lo <= m["accuracy"] <= hi
    assert rec["ci"]["bootstrap"]["unit"] == "subject"
    ref = rec["referral"]
    assert ref["chosen_on"] == "validation"
    assert preds["referred"].sum() == ref["test"]["n_referred"]
    gap = train_val_gap(pd.read_parquet(trained["history"]), 2)
    assert gap["best_epoch"] == 2 and "gap" in gap


def test_store_shorter_than_manifest_is_a_clear_error(trained, tmp_path):
    clf = load_classifier(trained["best"], "cpu")
    test = pd.read_parquet(trained["test_manifest"])
    short = tmp_path / "short.npy"
    np.save(short, np.load(trained["test_pixels"])[:10])
    with pytest.raises(ValueError, match="rerun the resize step"):
        evaluate(clf, test, short, test, short, EVAL_SETTINGS(n_boot=10))


def _record(name: str, seed: int, acc: float, split: str = "image", strategy: str = "full") -> dict:
    m = {
        "accuracy": acc,
        "precision": 0.9,
        "recall": 0.95,
        "f1": 0.92,
        "roc_auc": 0.93,
        "macro_f1": 0.88,
        "weighted_f1": 0.9,
        "balanced_accuracy": 0.87,
        "specificity": 0.8,
        "mcc": 0.7,
        "ece": 0.05,
        "n_all": 60,
        "n_hem": 40,
    }
    return {
        "_path": f"/x/{name}/metrics.json",
        "experiment": {
            "name": name,
            "group": "g",
            "split": split,
            "backbone": "resnet18",
            "strategy": strategy,
            "partial_stages": 2,
            "seed": seed,
            "dataset": "synthetic",
        },
        "training": {"best_epoch": 3, "train_accuracy": 0.95, "val_accuracy": 0.8, "gap": 0.15},
        "n_test": 100,
        "n_test_subjects": 9,
        "metrics": m,
        "ci": {"accuracy": [acc - 0.05, acc + 0.05], "bootstrap": {"unit": "subject"}},
        "referral": {
            "threshold": 0.8,
            "test": {"referred_fraction": 0.2, "accepted_accuracy": 0.97},
        },
        "provenance": {"code_version": "abc123"},
        "checkpoint": {"sha256": "0" * 64},
    }


def test_tables_pool_seeds_and_show_intervals_for_one_seed():
    rows = compare.flat_rows(
        [
            _record("image.resnet18.full.s0", 0, 0.90),
            _record("image.resnet18.full.s1", 1, 0.94),
            _record("official.resnet18.frozen.s0", 0, 0.70, "official", "frozen"),
        ]
    )
    subjects = [f"{'' if i % 2 else 'H'}{i}" for i in range(9)]
    rows = protocol.with_audits(
        rows,
        {
            "image": split_audit("image", subjects, shared=7),
            "official": split_audit("official", subjects),
        },
    )
    summary = compare.summary_table(rows)
    shown = compare.display_table(summary, ["Accuracy"])
    full = shown[shown.Model == "resnet18 (full)"].iloc[0]
    assert full["Seeds"] == 2 and full["Accuracy"] == "92.00 ± 2.83"
    assert full["Protocol"] == "image-level (leaky: 7 of 9 test subjects also in training)"
    frozen = shown[shown.Model == "resnet18 (frozen)"].iloc[0]
    assert frozen["Accuracy"] == "70.00 [65.0, 75.0]"
    assert frozen["Protocol"] == (
        "subject-disjoint (preliminary test set: 9 test subjects, none in training)"
    )
    built = tables.build(rows)
    cap = built[0].caption
    assert "100 images (60 ALL, 40 Hem) from 9 subjects" in cap and "official" in cap
    b = literature.study_b_table(rows)
    assert len(b) == 1 and b.iloc[0]["Study B acc. % (published)"] == 65.77
    assert b.iloc[0]["Gap (points)"] == pytest.approx(15.0)
    assert b.iloc[0]["Majority-class acc. %"] == pytest.approx(60.0)
    tex = tables.latex(built)
    assert "\\begin{table}" in tex and "$\\pm$" in tex
    html = build_html(rows, [])
    assert "Table 1" in html and "abc123" in html


def test_predict_names_unreadable_images_and_keeps_going(trained, tmp_path):
    clf = load_classifier(trained["best"], "cpu")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, v in enumerate([200, 60, 190]):
        Image.fromarray(np.full((50, 50, 3), v, np.uint8)).save(folder / f"c{i}.bmp")
    (folder / "broken.bmp").write_bytes(b"BM not an image")
    paths = sorted(folder.iterdir())
    with pytest.raises(ValueError, match=r"broken\.bmp.*--keep-going") as err:
        predict_paths(clf, paths)
    # the user's own images: no talk of the data set archive or of pipeline steps
    assert not re.search(r"archive|merge|manifest|raw data", str(err.value))
    df = predict_paths(clf, paths, keep_going=True, refer_below=0.99)
    assert len(df) == 4
    bad = df[df.path.str.endswith("broken.bmp")].iloc[0]
    assert "broken.bmp" in bad["error"] and bad["refer_to_expert"]
    assert not re.search(r"archive|merge|manifest|raw data", bad["error"])
    ok = df[df.error == ""]
    assert set(ok.predicted) <= {"all", "hem"} and ok.prob_all.between(0, 1).all()


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory) -> Path:
    """metrics.json of the evaluate step for the trained best.pt."""
    out = tmp_path_factory.mktemp("evaluated")
    cmd = [
        sys.executable, str(ROOT / "scripts/evaluate.py"),
        "--checkpoint", str(trained["best"]),
        "--test-manifest", str(trained["test_manifest"]),
        "--test-pixels", str(trained["test_pixels"]),
        "--val-manifest", str(trained["val_manifest"]),
        "--val-pixels", str(trained["val_pixels"]),
        "--threshold", "0.5", "--bootstrap", "10", "--referral-target", "0.95",
        "--referral-criterion", "accuracy", "--batch-size", "64",
        "--experiment-json", json.dumps({"name": "x", "split": "image"}),
        "--predictions-out", str(out / "predictions.parquet"),
        "--metrics-out", str(out / "metrics.json"), "--device", "cpu",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out / "metrics.json"


def _predict(checkpoint: Path, images: Path, out: Path, *extra: str):
    cmd = [sys.executable, "scripts/predict.py", "--checkpoint", str(checkpoint),
           "--images", str(images), "--device", "cpu", "--out", str(out), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_predict_cli(trained, evaluated, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((40, 40, 3), 180, np.uint8)).save(folder / "a.png")
    out = tmp_path / "pred.csv"
    proc = _predict(trained["best"], folder, out, "--metrics", str(evaluated))
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert list(df.columns) == [
        "path",
        "prob_all",
        "predicted",
        "confidence",
        "refer_to_expert",
        "error",
    ]
    chosen = json.loads(evaluated.read_text())["referral"]["threshold"]
    assert df.loc[0, "refer_to_expert"] == (df.loc[0, "confidence"] < chosen)


def test_predict_refuses_the_threshold_of_another_checkpoint(trained, evaluated, tmp_path):
    from leukopipe.plumbing.hashing import sha256_file

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((40, 40, 3), 180, np.uint8)).save(folder / "a.png")
    other = trained["best"].with_name("last.pt")  # same run, another checkpoint
    out = tmp_path / "pred.csv"
    proc = _predict(other, folder, out, "--metrics", str(evaluated))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert f"chosen for {trained['best']} (sha256 {sha256_file(trained['best'])[:12]}, resnet18)" in line
    assert f"not for {other} (sha256 {sha256_file(other)[:12]}, resnet18)" in line
    assert not out.exists()
    # another backbone with the same digest cannot be made; a record that names another one
    record = json.loads(evaluated.read_text())
    record["training"]["backbone"] = "efficientnet_b0"
    renamed = tmp_path / "metrics.json"
    renamed.write_text(json.dumps(record))
    proc = _predict(trained["best"], folder, out, "--metrics", str(renamed))
    assert proc.returncode == 1 and "efficientnet_b0), not for" in proc.stderr, proc.stderr
    # an ensemble's record names no checkpoint: its threshold is not this model's either
    del record["checkpoint"]
    renamed.write_text(json.dumps(record))
    proc = _predict(trained["best"], folder, out, "--metrics", str(renamed))
    assert proc.returncode == 1 and "records no single checkpoint" in proc.stderr, proc.stderr


def test_tta_views_are_the_eight_symmetries_and_scores_average_them(trained):
    from leukopipe.evaluate.tta import dihedral_views, predict_store_tta

    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    views = dihedral_views(x)
    assert len(views) == 8 and np.array_equal(views[0], x)
    assert len({v.tobytes() for v in views}) == 8  # all distinct
    for v in views:  # each view is a flip/rotation of the original, per image
        assert any(
            np.array_equal(v[0], np.rot90(f, k)) for f in (x[0], x[0][:, ::-1]) for k in range(4)
        )
    clf = load_classifier(trained["best"], "cpu")
    pixels = np.load(trained["test_pixels"])
    mean, plain = predict_store_tta(clf, pixels, batch_size=24)
    assert np.allclose(plain, predict_store(clf, pixels), atol=1e-5)
    by_view = np.stack([predict_store(clf, v) for v in dihedral_views(pixels)])
    assert np.allclose(mean, by_view.mean(axis=0), atol=1e-5)
    test = pd.read_parquet(trained["test_manifest"])
    val = pd.read_parquet(trained["val_manifest"])
    out = evaluate(
        clf,
        test,
        trained["test_pixels"],
        val,
        trained["val_pixels"],
        EVAL_SETTINGS(n_boot=20, tta=True),
    )
    assert set(out) == {"plain", "tta"}
    assert np.allclose(
        out["tta"][0]["prob_all"], mean[test["store_row"]] if "store_row" in test else mean
    )
    assert out["tta"][2]["subject_level"]["aggregations"]["mean_prob"]["test"]["n_subjects"] == 8


def test_gradcam_points_at_the_evidence_and_leaves_no_hooks(trained, tmp_path):
    from leukopipe.evaluate.gradcam import gradcam, select_cells, target_layer

    clf = load_classifier(trained["best"], "cpu")
    # the model learned "bright = ALL": a dark cell with one bright corner must light up there
    img = np.full((1, 96, 96, 3), 80, dtype=np.uint8)
    img[:, :32, :32] = 200
    cam, prob = gradcam(clf, img, target=np.array([1]))
    assert cam.shape == (1, 96, 96) and cam.max() == pytest.approx(1.0) and cam.min() >= 0
    assert cam[0, :32, :32].mean() > 2 * cam[0, 48:, 48:].mean()
    assert 0 <= prob[0] <= 1
    name, layer = target_layer(clf.model)
    assert name == "layer4" and not layer._forward_hooks
    for p in clf.model.parameters():  # a frozen model still gets maps
        p.requires_grad_(False)
    cam2, _ = gradcam(clf, img, target=np.array([1]))
    assert np.allclose(cam, cam2)
    with pytest.raises(ValueError, match="out of range"):
        gradcam(clf, img, stage=-9)
    pred = pd.DataFrame(
        {
            "label": [1, 1, 1, 0, 0],
            "pred": [1, 1, 0, 0, 0],
            "confidence": [0.6, 0.9, 0.7, 0.8, 0.55],
        }
    )
    groups = dict(select_cells(pred, 1))
    assert groups == {
        "ALL, called ALL": [1],
        "ALL, called Hem": [2],
        "Hem, called Hem": [3],
        "Hem, called ALL": [],
    }


def test_evaluate_cli_writes_tta_and_gradcam(trained, tmp_path):
    out = tmp_path / "e"
    cmd = [
        sys.executable,
        str(ROOT / "scripts/evaluate.py"),
        "--checkpoint", str(trained["best"]),
        "--test-manifest", str(trained["test_manifest"]),
        "--test-pixels", str(trained["test_pixels"]),
        "--val-manifest", str(trained["val_manifest"]),
        "--val-pixels", str(trained["val_pixels"]),
        "--threshold", "0.5",
        "--bootstrap", "10",
        "--referral-target", "0.95",
        "--referral-criterion", "accuracy",
        "--batch-size", "64",
        "--experiment-json", json.dumps({"name": "x", "split": "image"}),
        "--predictions-out", str(out / "predictions.parquet"),
        "--val-predictions-out", str(out / "val_predictions.parquet"),
        "--metrics-out", str(out / "metrics.json"),
        "--tta-metrics-out", str(out / "tta_metrics.json"),
        "--tta-predictions-out", str(out / "tta_predictions.parquet"),
        "--tta-val-predictions-out", str(out / "tta_val_predictions.parquet"),
        "--gradcam-out", str(out / "gradcam.png"),
        "--gradcam-per-group", "1",
        "--device", "cpu",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tta = json.loads((out / "tta_metrics.json").read_text())
    assert tta["experiment"] == {"name": "x+tta", "split": "image", "variant": "tta"}
    assert tta["files"]["predictions"] == "tta_predictions.parquet"
    assert Image.open(out / "gradcam.png").size[0] > 200


def test_predict_cli_gradcam_for_one_image(trained, tmp_path):
    img = tmp_path / "cell.png"
    Image.fromarray(np.full((40, 40, 3), 180, np.uint8)).save(img)
    base = [sys.executable, "scripts/predict.py", "--checkpoint", str(trained["best"])]
    out = ["--device", "cpu", "--out", str(tmp_path / "p.csv")]
    cam = ["--gradcam-out", str(tmp_path / "cam.png")]
    run = lambda args: subprocess.run(  # noqa: E731
        base + args, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    proc = run(["--images", str(img), *cam, *out])
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "cam.png").size[0] > 300
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1
    (tmp_path / "more").mkdir()
    for n in "ab":
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "more" / f"{n}.png")
    proc = run(["--images", str(tmp_path / "more"), *cam, *out])
    assert proc.returncode == 1 and "single image" in proc.stderr


def test_temperature_is_fitted_on_validation_and_changes_no_call(trained):
    clf = load_classifier(trained["best"], "cpu")
    test = pd.read_parquet(trained["test_manifest"])
    val = pd.read_parquet(trained["val_manifest"])
    preds, val_preds, rec = evaluate(
        clf, test, trained["test_pixels"], val, trained["val_pixels"],
        EVAL_SETTINGS(n_boot=50, referral_target=0.9),
    )["plain"]  # fmt: skip
    cal = rec["calibration"]
    assert cal["fitted_on"] == "validation" and cal["temperature"] > 0
    # the fitted T minimises the validation log-loss: no other T does better
    y, p = val_preds["label"].to_numpy(), val_preds["prob_all"].to_numpy()

    def nll(t: float) -> float:
        q = np.clip(apply_temperature(p, t), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    best = nll(cal["temperature"])
    assert all(best <= nll(cal["temperature"] * f) + 1e-9 for f in (0.5, 0.9, 1.1, 2.0))
    assert np.allclose(preds["prob_all_calibrated"], apply_temperature(preds["prob_all"],
                                                                       cal["temperature"]))
    assert ((preds["prob_all_calibrated"] >= 0.5) == preds["pred"].astype(bool)).all()
    for metric in ("ece", "brier"):
        for when in ("before", "after"):
            lo, hi = cal["ci"][metric][when]
            assert lo <= cal["test"][metric][when] <= hi, (metric, when)
    assert cal["test"]["ece"]["before"] == pytest.approx(rec["metrics"]["ece"])
    assert cal["test"]["brier"]["before"] == pytest.approx(
        float(np.mean((preds["prob_all"] - preds["label"]) ** 2))
    )
    # a monotone rescaling: the calibrated threshold refers exactly the same cells
    assert cal["referral"]["test"]["n_referred"] == rec["referral"]["test"]["n_referred"]
    row = compare.flat_rows([{**rec, "experiment": {"name": "x", "split": "image"},
                              "_path": "x/metrics.json"}])
    assert row.loc[0, "temperature"] == pytest.approx(cal["temperature"])


def _refused_images(folder: Path) -> list[Path]:
    """Images that decode but that merge would refuse: each is named with its reason."""
    folder.mkdir()
    made = {
        "one_pixel.png": Image.fromarray(np.full((1, 1, 3), 180, np.uint8)),
        "sixteen_bit.png": Image.fromarray(np.full((40, 40), 40000, np.uint16)),
        "cmyk.tif": Image.new("CMYK", (40, 40), (10, 20, 30, 40)),
        "grey.png": Image.fromarray(np.full((40, 40), 128, np.uint8)),
        "strip.png": Image.fromarray(np.full((30, 4000, 3), 180, np.uint8)),
    }
    for name, image in made.items():
        image.save(folder / name)
    return sorted(folder / name for name in made)


def test_predict_refuses_what_merge_refuses(trained, tmp_path):
    clf = load_classifier(trained["best"], "cpu")
    refused = _refused_images(tmp_path / "odd")
    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 40, 3), 180, np.uint8)).save(good)
    for path in refused:
        with pytest.raises(ValueError, match=re.escape(str(path))):
            predict_paths(clf, [path])
    df = predict_paths(clf, [*refused, good], keep_going=True)
    reasons = dict(zip(df.path, df.error, strict=True))
    assert reasons[str(good)] == ""
    assert "too small" in reasons[str(tmp_path / "odd/one_pixel.png")]
    assert "image mode I;16" in reasons[str(tmp_path / "odd/sixteen_bit.png")]
    assert "image mode CMYK" in reasons[str(tmp_path / "odd/cmyk.tif")]
    assert "image mode L" in reasons[str(tmp_path / "odd/grey.png")]
    assert "4000x30 is not square" in reasons[str(tmp_path / "odd/strip.png")]
    # nothing scored at all is a failure, even with --keep-going; the CSV says why per image
    out = tmp_path / "pred.csv"
    proc = _predict(trained["best"], tmp_path / "odd", out, "--keep-going")
    assert proc.returncode == 1, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert f"none of the 5 image(s) could be scored; {out} lists why" in line
    assert len(pd.read_csv(out)) == 5


def test_a_checkpoint_whose_weights_do_not_fit_its_backbone_is_one_line(trained, tmp_path):
    from leukopipe.train.checkpoint_saver import CheckpointError

    content = torch.load(trained["best"], map_location="cpu", weights_only=True)
    content["backbone"] = "resnet34"  # more blocks than the resnet18 weights inside
    altered = tmp_path / "best.pt"
    torch.save(content, altered)
    with pytest.raises(CheckpointError) as err:
        load_classifier(altered, "cpu")
    message = str(err.value)
    assert "\n" not in message and str(altered) in message and "(resnet34)" in message
