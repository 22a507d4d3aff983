"""End to end on synthetic data: the whole DAG runs, and changes rerun exactly what they touch."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pipeline_workspace import TINY_CONFIG, make_workspace, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow
RUN = "results/tiny"


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("pipeline") / "ws")
    proc = snakemake(ws, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return ws


def test_all_outputs_exist_and_say_what_they_are(done):
    run = done / RUN
    for rel in [
        "data/index.parquet",
        "data/summary.json",
        "splits/image/audit.json",
        "splits/official/audit.json",
        "tables/comparison.md",
        "tables/comparison.csv",
        "tables/comparison.tex",
        "figures/roc.png",
        "figures/risk_coverage.png",
        "report.html",
    ]:
        assert (run / rel).is_file(), rel
    audit = json.loads((run / "splits/official/audit.json").read_text())
    assert audit["subject_disjoint"] and audit["n_shared_subjects"]["train|test"] == 0
    audit_image = json.loads((run / "splits/image/audit.json").read_text())
    assert audit_image["n_shared_subjects"]["train|test"] > 0
    balanced = pd.read_parquet(run / "augment/image/train_balanced.parquet")
    assert balanced["label"].value_counts().to_dict() == {0: 80, 1: 80}
    for exp in ("image.resnet18.full.s0", "official.resnet18.frozen.s0"):
        m = json.loads((run / f"eval/{exp}/metrics.json").read_text())
        assert m["experiment"]["name"] == exp
        assert m["provenance"]["code_version"]
        assert len(m["checkpoint"]["sha256"]) == 64
        assert "ALL-class" in m["convention"]
        assert m["ci"]["bootstrap"]["unit"] == "subject"
    table = (run / "tables/comparison.md").read_text()
    assert "resnet18 (full)" in table and "resnet18 (frozen)" in table
    assert "Study A, Table 2" in table  # published rows come from the data file


def test_nothing_changed_nothing_runs(done):
    assert planned_jobs(done) == {}


def _with(ws: Path, mutate) -> dict[str, int]:
    cfg = copy.deepcopy(TINY_CONFIG)
    mutate(cfg)
    write_config(ws, cfg)
    try:
        return planned_jobs(ws)
    finally:
        write_config(ws, TINY_CONFIG)


def test_learning_rate_reruns_training_and_below_only(done):
    jobs = _with(done, lambda c: c["train"].update(lr=5e-4))
    assert jobs == {"train": 2, "evaluate": 2, "compare": 1, "report": 1, "all": 1}


def test_augmentation_parameter_reruns_augment_and_below_not_merge_or_split(done):
    jobs = _with(done, lambda c: c["augment"].update(transforms={"rotation_deg": 10}))
    assert jobs == {"augment": 2, "train": 2, "evaluate": 2, "compare": 1, "report": 1, "all": 1}


def test_evaluation_setting_reruns_evaluation_only(done):
    jobs = _with(done, lambda c: c["evaluate"].update(bootstrap=60))
    assert jobs == {"evaluate": 2, "compare": 1, "report": 1, "all": 1}


def test_adding_a_backbone_trains_only_the_new_one(done):
    def add(c):
        c["experiments"][0]["backbones"] = ["resnet18", "efficientnet_b0"]

    jobs = _with(done, add)
    assert jobs == {"train": 1, "evaluate": 1, "compare": 1, "report": 1, "all": 1}


def test_worker_counts_rerun_nothing(done):
    def more_workers(c):
        c["merge"]["workers"] = 2
        c["augment"]["workers"] = 2

    assert _with(done, more_workers) == {}


def test_editing_a_package_module_reruns_the_steps_that_import_it(done):
    module = done / "src/leukopipe/split.py"
    before = module.read_text()
    stat = module.stat()
    module.write_text(before + "\n# an edit\n")
    try:
        jobs = planned_jobs(done)
    finally:
        module.write_text(before)
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "merge" not in jobs and "download" not in jobs
    assert jobs["split"] == 2 and jobs["train"] == 2 and jobs["report"] == 1


def test_tables_regenerate_from_stored_results_without_training(done):
    run = done / RUN
    shutil.rmtree(run / "tables")
    shutil.rmtree(run / "figures")
    assert planned_jobs(done) == {"compare": 1, "report": 1, "all": 1}
    proc = snakemake(done, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (run / "tables/comparison.md").is_file() and (run / "report.html").is_file()
