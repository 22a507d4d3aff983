"""The k-NN probe in the DAG: a tiny real run through Snakemake writes eval/<frozen>.knn/ for
every frozen experiment (folds pooled out of fold), and comparison.md shows them as k-NN rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_workspace import (
    ROOT,
    TINY_CONFIG,
    make_workspace,
    planned_jobs,
    snakemake,
    write_config,
)

from leukopipe.workflow.config import expand_experiments, validate
from leukopipe.workflow.rules import knn_experiments

# a real run: three tiny trainings and their probes (minutes on 2 busy cores)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
RUN = "results/tiny"
KNN_CONFIG = {
    **TINY_CONFIG,
    "weights": {"pretrained": True, "dir": "resources/weights"},
    "split": {"folds": 2, "test_fraction": 0.1, "val_fraction": 0.1, "seed": 42},
    "evaluate": {"bootstrap": 20, "batch_size": 64, "tta": False, "knn": True},
    "experiments": [
        TINY_CONFIG["experiments"][1],  # official, resnet18 frozen
        {"name": "c", "split": "cv", "backbones": ["resnet18"], "strategies": ["frozen"],
         "seeds": [0], "augment": "none"},
    ],
}


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("knn") / "ws", KNN_CONFIG)
    proc = snakemake(ws, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return ws


def test_every_frozen_experiment_gets_a_probe_and_the_tables_show_it(done):
    run = done / RUN
    probes = sorted(p.name for p in (run / "eval").glob("*.knn"))
    assert probes == [
        "cv2-f0.resnet18.frozen.32px-none.s0.knn",
        "cv2-f1.resnet18.frozen.32px-none.s0.knn",
        "official.resnet18.frozen.s0.knn",
    ]
    folder = run / "eval/official.resnet18.frozen.s0.knn"
    record = json.loads((folder / "metrics.json").read_text())
    assert record["experiment"]["variant"] == "knn"
    assert record["experiment"]["name"] == "official.resnet18.frozen.s0.knn"
    k = record["knn"]["k"]
    assert str(k) in record["knn"]["val_macro_f1_by_k"]  # JSON keys
    # the bank is the experiment's own training store; the record is every row's record
    train = pd.read_parquet(run / "augment/official/32px/bal80/train_balanced.parquet")
    assert record["knn"]["bank_images"] == len(train)
    test = pd.read_parquet(run / "augment/official/32px/test.parquet")
    predictions = pd.read_parquet(folder / "predictions.parquet")
    assert len(predictions) == record["n_test"] == len(test)
    assert sorted(predictions["image_id"]) == sorted(test["image_id"])
    assert record["ci"]["bootstrap"]["unit"] == "subject" and "referral" in record
    # the weights file the run recorded, the same one the frozen experiment trained from
    assert record["training"]["train_config"]["pretrained_weights"].endswith(
        "resnet18.safetensors"
    )

    pooled = json.loads(
        (run / "eval/cv2.resnet18.frozen.32px-none.s0.knn.pooled/metrics.json").read_text()
    )
    assert pooled["experiment"]["variant"] == "knn" and pooled["experiment"]["pooled"]

    md = (run / "tables/comparison.md").read_text()
    assert f"resnet18 (k-NN, k={k})" in md
    # the probe's record names the weights its backbone started from, as a training run does
    tag = record["training"]["weights"]["pretrained_tag"]
    assert f"resnet18 (k-NN, k per fold) · {tag} · 32px-none" in md
    rows = pd.read_parquet(run / "tables/rows.parquet")
    knn = rows[rows["variant"] == "knn"]
    assert len(knn) == 4  # official, two folds, their pool
    assert set(rows.loc[rows["variant"] == "single", "experiment"]) == {
        "official.resnet18.frozen.s0", "cv2-f0.resnet18.frozen.32px-none.s0",
        "cv2-f1.resnet18.frozen.32px-none.s0", "cv2.resnet18.frozen.32px-none.s0.pooled",
    }


def test_the_switch_turns_the_probe_off(done):
    write_config(done, {**KNN_CONFIG, "evaluate": {**KNN_CONFIG["evaluate"], "knn": False}})
    try:
        jobs = planned_jobs(done)
    finally:
        write_config(done, KNN_CONFIG)
    assert "knn_probe" not in jobs and "pool_folds" not in jobs
    assert planned_jobs(done) == {}  # and back on: the stored probes are current


def test_only_frozen_experiments_are_probed():
    cfg = validate(yaml.safe_load((ROOT / "config.yaml").read_text()))
    experiments = expand_experiments(cfg)
    probed = knn_experiments(cfg)
    assert probed and all(experiments[n].strategy == "frozen" for n in probed)
    assert len(probed) == sum(e.strategy == "frozen" for e in experiments.values())
    assert knn_experiments({**cfg, "evaluate": {**cfg["evaluate"], "knn": False}}) == []
