"""End to end on synthetic data: the whole DAG runs, and changes rerun exactly what they touch."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_workspace import (
    COPIED,
    FULL_CONFIG,
    ROOT,
    make_workspace,
    planned_jobs,
    snakemake,
    write_config,
)
from snakemake.utils import update_config

from leukopipe.workflow.config import validate
from leukopipe.workflow.rules import final_targets

pytestmark = pytest.mark.slow
RUN = "results/tiny"


# The pipeline runs stage by stage, each a test of its own, so a failure names its stage: a
# stage's targets are the default target's files under its folders (a stage run alone also
# runs what it needs first).
STAGES = {
    "data": ("data/", "splits/"),
    "augment": ("augment/",),
    "train": ("weights/", "runs/"),
    "evaluate": ("eval/",),
    "report": ("tables/", "figures/", "report.html"),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("pipeline") / "ws", FULL_CONFIG)


def _stage_targets(ws: Path, stage: str) -> list[str]:
    config = yaml.safe_load((ws / "config.yaml").read_text())
    update_config(config, yaml.safe_load((ws / "test-config.yaml").read_text()))
    validate(config)
    prefixes = tuple(f"{RUN}/{p}" for p in STAGES[stage])
    return sorted(t for t in final_targets(config) if t.startswith(prefixes))


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_runs(workspace, stage):
    targets = _stage_targets(workspace, stage)
    assert targets, stage
    proc = snakemake(workspace, "--cores", "2", *targets)
    assert proc.returncode == 0, (
        f"the {stage} stage failed:\n" + proc.stdout[-6000:] + proc.stderr[-6000:]
    )
    assert all((workspace / t).exists() for t in targets), stage


@pytest.fixture(scope="module")
def done(workspace) -> Path:
    """The whole run: what the stage tests left (nothing, when they all passed)."""
    proc = snakemake(workspace, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return workspace


def test_all_outputs_exist_and_say_what_they_are(done):
    run = done / RUN
    for rel in [
        "data/index.parquet",
        "data/summary.json",
        "splits/image/audit.json",
        "splits/official/audit.json",
        "splits/cv2-f0/audit.json",
        "splits/cv2-f1/audit.json",
        "eval/official.ensemble-seeds/metrics.json",
        "eval/cv2.resnet18.frozen.32px-none.s0.pooled/metrics.json",
        "eval/cv2.resnet18.frozen.32px-none.s0+tta.pooled/metrics.json",
        "eval/cv2-f1.resnet18.frozen.32px-none.s0/tta_metrics.json",
        "eval/image.resnet18.full.s0/gradcam.png",
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
    balanced = pd.read_parquet(run / "augment/image/32px/bal80/train_balanced.parquet")
    assert balanced["label"].value_counts().to_dict() == {0: 80, 1: 80}
    # group c's own preprocessing: the resized originals of the fold's training part
    plain = pd.read_parquet(run / "augment/cv2-f0/32px/none/train_balanced.parquet")
    fold_train = pd.read_parquet(run / "splits/cv2-f0/train.parquet")
    assert not plain["generated"].any()
    assert plain["image_id"].tolist() == fold_train["image_id"].tolist()
    folds = [json.loads((run / f"splits/cv2-f{i}/audit.json").read_text()) for i in (0, 1)]
    assert all(a["subject_disjoint"] for a in folds)
    tested = [set(a["splits"]["test"]["subjects"]) for a in folds]
    assert not tested[0] & tested[1]  # each subject is tested in exactly one fold
    index = pd.read_parquet(run / "data/index.parquet")
    assert tested[0] | tested[1] == set(index["subject"])
    ens = json.loads((run / "eval/official.ensemble-seeds/metrics.json").read_text())
    assert ens["experiment"]["members"] == [
        "official.resnet18.frozen.s0",
        "official.resnet18.frozen.s1",
    ]
    members = [
        pd.read_parquet(run / f"eval/official.resnet18.frozen.s{s}/predictions.parquet")
        for s in (0, 1)
    ]
    voted = pd.read_parquet(run / "eval/official.ensemble-seeds/predictions.parquet")
    mean = (
        members[0].set_index("image_id")["prob_all"] + members[1].set_index("image_id")["prob_all"]
    ) / 2
    assert (
        voted.set_index("image_id")["prob_all"] - mean.loc[voted["image_id"]]
    ).abs().max() < 1e-12
    for exp in ("image.resnet18.full.s0", "official.resnet18.frozen.s0"):
        m = json.loads((run / f"eval/{exp}/metrics.json").read_text())
        assert m["experiment"]["name"] == exp
        assert m["provenance"]["code_version"]
        assert len(m["checkpoint"]["sha256"]) == 64
        # the training's host and time, from provenance.json beside the checkpoint it describes
        run_record = m["training"]["run"]
        assert run_record["sha256"]["best.pt"] == m["checkpoint"]["sha256"]
        assert run_record["host"] and run_record["time_utc"] and run_record["code_version"]
        assert "ALL-class" in m["convention"]
        assert m["ci"]["bootstrap"]["unit"] == "subject"
    table = (run / "tables/comparison.md").read_text()
    assert "resnet18 (full)" in table and "resnet18 (frozen)" in table
    assert "Study A, Table 2" in table  # published rows come from the data file
    assert "cv2 pooled out-of-fold" in table and "cv2 folds (mean ± std)" in table
    assert "resnet18 (full) + TTA x8" in table and "ensemble seeds (soft vote of 2)" in table
    assert "Table 4. Subject-level diagnosis" in table
    rows = pd.read_parquet(run / "tables/rows.parquet")
    pooled = rows[rows["pooled"] & (rows["variant"] == "single")].iloc[0]
    assert pooled["n_test"] == len(index) and pooled["subj_n"] == index["subject"].nunique()
    html = (run / "report.html").read_text()
    assert "Grad-CAM" in html and "Subject-level diagnosis" in html
    # the banner says what the numbers are: synthetic data; the runs start from weight files
    assert "Synthetic data" in html and "untrained (random) weights" not in html


def test_nothing_changed_nothing_runs(done):
    assert planned_jobs(done) == {}


def _with(ws: Path, mutate) -> dict[str, int]:
    cfg = copy.deepcopy(FULL_CONFIG)
    mutate(cfg)
    write_config(ws, cfg)
    try:
        return planned_jobs(ws)
    finally:
        write_config(ws, FULL_CONFIG)


def test_learning_rate_reruns_training_and_below_only(done):
    jobs = _with(done, lambda c: c["train"].update(lr=5e-4))
    assert jobs == EVERYTHING_BELOW_TRAIN


def test_augmentation_parameter_reruns_augment_and_below_not_merge_or_split(done):
    jobs = _with(done, lambda c: c["augment"].update(transforms={"rotation_deg": 10}))
    # group c does not augment (augment: none): its folds' stores and models stay
    assert jobs == {
        "augment": 2,
        "train": 3,
        "evaluate": 3,
        "ensemble": 1,
        "compare": 1,
        "report": 1,
        "all": 1,
    }


@pytest.mark.parametrize(
    ("group", "change", "expected"),
    [
        # b stops augmenting: a new store of its split; its two seeds and their ensemble rerun
        (1, {"augment": "none"}, {"augment": 1, "train": 2, "evaluate": 2, "ensemble": 1}),
        # a at another size: new training, validation and test stores of its split
        (0, {"image_size": 48}, {"augment": 1, "resize": 2, "train": 1, "evaluate": 1}),
    ],
    ids=["augment-none", "image-size"],
)
def test_one_groups_preprocessing_reruns_that_group_only(done, group, change, expected):
    jobs = _with(done, lambda c: c["experiments"][group].update(change))
    assert jobs == {**expected, "compare": 1, "report": 1, "all": 1}


def test_evaluation_setting_reruns_evaluation_only(done):
    jobs = _with(done, lambda c: c["evaluate"].update(bootstrap=60))
    # the cross-validated group's pools (plain and TTA) are scored again too
    assert jobs == {"evaluate": 5, "ensemble": 1, "pool_folds": 2, "compare": 1, "report": 1,
                    "all": 1}


def test_more_folds_add_new_fold_jobs_only(done):
    jobs = _with(done, lambda c: c["split"].update(folds=3))
    # cv3-f0..2 are new splits; nothing of the image/official experiments reruns
    assert jobs == {
        "split": 3,
        "augment": 3,
        "resize": 6,
        "train": 3,
        "evaluate": 3,
        "pool_folds": 2,  # new pools: cv3.* (plain and TTA)
        "compare": 1,
        "report": 1,
        "all": 1,
    }


def test_adding_a_backbone_trains_only_the_new_one(done):
    def add(c):
        c["experiments"][0]["backbones"] = ["resnet18", "efficientnet_b0"]

    jobs = _with(done, add)
    expected = {"train": 1, "evaluate": 1, "compare": 1, "report": 1, "all": 1}
    assert jobs == {**expected, "fetch_weights": 1}  # its weights are not here yet


def test_worker_counts_rerun_nothing(done):
    """Worker counts are the rules' threads: they change speed, never results."""
    threads = ("merge=1", "augment=2", "resize=1", "train=1", "download=1")
    assert planned_jobs(done, "--set-threads", *threads) == {}


EVERYTHING_BELOW_TRAIN = {"train": 5, "evaluate": 5, "ensemble": 1, "pool_folds": 2, "compare": 1,
                          "report": 1, "all": 1}


def _planned_after_edit(ws: Path, rel: str, text: str) -> dict[str, int]:
    """Jobs a dry run plans after ``text`` is appended to ``rel``; the file is then restored."""
    path = ws / rel
    before = path.read_text()
    stat = path.stat()
    path.write_text(before + text)
    try:
        return planned_jobs(ws)
    finally:
        path.write_text(before)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


SEMANTIC_EDIT = "\nDEFAULT_EPSILON = 1e-9\n"


def _cosmetic(text: str) -> str:
    """Reworded module docstring, an extra comment and blank lines: no change of substance."""
    return text.replace('"""', '"""Reworded. ', 1).replace("\n\n\n", "\n\n\n\n", 1) + (
        "\n# a comment\n"
    )


@pytest.mark.parametrize(
    "rel",
    ["src/leukopipe/plumbing/cli.py", "src/leukopipe/train/loop.py",
     "src/leukopipe/evaluate/metrics.py", "scripts/train.py"],
)
def test_comments_and_docstrings_rerun_nothing(done, rel):
    path = done / rel
    before = path.read_text()
    assert _cosmetic(before) != before
    try:
        path.write_text(_cosmetic(before))
        assert planned_jobs(done) == {}
    finally:
        path.write_text(before)


def test_semantic_edit_of_metrics_reruns_evaluation_and_below_only(done):
    jobs = _planned_after_edit(done, "src/leukopipe/evaluate/metrics.py", SEMANTIC_EDIT)
    assert jobs == {"evaluate": 5, "ensemble": 1, "pool_folds": 2, "compare": 1, "report": 1,
                    "all": 1}


def test_semantic_edit_of_the_training_loop_reruns_training_and_below_only(done):
    jobs = _planned_after_edit(done, "src/leukopipe/train/loop.py", SEMANTIC_EDIT)
    assert jobs == EVERYTHING_BELOW_TRAIN


def test_editing_a_package_module_reruns_the_steps_that_import_it(done):
    jobs = _planned_after_edit(done, "src/leukopipe/data/split.py", SEMANTIC_EDIT)
    assert "merge" not in jobs and "download" not in jobs
    assert jobs["split"] == 4 and jobs["train"] == 5 and jobs["report"] == 1


def test_editing_a_module_imported_indirectly_reruns_the_step(done):
    """merge.py imports cnmc_names.py; the merge rule never names it, the import scan finds it."""
    jobs = _planned_after_edit(done, "src/leukopipe/data/cnmc_names.py", SEMANTIC_EDIT)
    assert jobs["merge"] == 1 and "download" not in jobs


def test_editing_a_step_script_reruns_that_step(done):
    jobs = _planned_after_edit(done, "scripts/compare.py", SEMANTIC_EDIT)
    assert jobs == {"compare": 1, "report": 1, "all": 1}


def test_stale_lists_outputs_of_changed_code_and_the_file(done):
    path = done / "scripts/compare.py"
    before = path.read_text()
    try:
        path.write_text(before + SEMANTIC_EDIT)
        proc = subprocess.run(
            [sys.executable, "scripts/stale.py"], cwd=done, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(done / "src")}, timeout=300,
        )
    finally:
        path.write_text(before)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert lines and {rule for _, rule, _ in lines} == {"compare"}
    assert all(why == "scripts/compare.py" for *_, why in lines)
    assert f"{RUN}/tables/comparison.md" in {out for out, *_ in lines}


def test_a_rule_reruns_explicitly_and_only_what_follows(done):
    """The README's `snakemake --cores all -R <rule>` (after `make stale`), as printed."""
    report = done / RUN / "report.html"
    before = report.stat().st_mtime_ns
    proc = snakemake(done, "--cores", "all", "-R", "compare")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ran = set(re.findall(r"^(?:local)?rule (\w+):$", proc.stdout + proc.stderr, re.M))
    assert ran == {"compare", "report", "all"}, ran
    assert report.stat().st_mtime_ns > before
    assert planned_jobs(done) == {}


def _source_files(ws: Path) -> list[Path]:
    return [p for name in COPIED for p in [ws / name, *(ws / name).rglob("*")] if p.is_file()]


def test_touching_every_file_reruns_nothing(done):
    """New mtimes on every source file and every raw image: the content is the same."""
    files = _source_files(done) + [p for p in (done / "data").rglob("*") if p.is_file()]
    stats = {p: p.stat() for p in files}
    try:
        for p in files:
            os.utime(p)
        assert planned_jobs(done) == {}
    finally:
        for p, st in stats.items():
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_fresh_clone_next_to_existing_results_reruns_nothing(done, tmp_path):
    """A new checkout (every mtime new) given the finished results, data and weights."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in COPIED:  # copied without their mtimes, as git writes a checkout
        src = done / name
        if src.is_dir():
            shutil.copytree(src, clone / name, copy_function=shutil.copy)
        else:
            shutil.copy(src, clone / name)
    shutil.copy(done / "test-config.yaml", clone / "test-config.yaml")
    moved = ("results", "data", "resources", ".snakemake")
    for name in moved:
        (done / name).rename(clone / name)
    try:
        assert planned_jobs(clone) == {}
    finally:
        for name in moved:
            (clone / name).rename(done / name)


def test_moved_raw_copy_and_weights_rerun_nothing(done):
    """The same data and weights in another folder are the same data and weights."""
    (done / "elsewhere").mkdir(exist_ok=True)
    raw, weights = done / FULL_CONFIG["data"]["raw_dir"], done / FULL_CONFIG["weights"]["dir"]
    raw.rename(done / "elsewhere/raw")
    weights.rename(done / "elsewhere/weights")
    try:
        jobs = _with(done, lambda c: (c["data"].update(raw_dir="elsewhere/raw"),
                                      c["weights"].update(dir="elsewhere/weights")))
        assert jobs == {}
    finally:
        (done / "elsewhere/raw").rename(raw)
        (done / "elsewhere/weights").rename(weights)


def test_changed_raw_image_reruns_merge_and_everything_below(done):
    raw = done / FULL_CONFIG["data"]["raw_dir"]
    image = sorted(raw.rglob("*.bmp"))[0]
    before, stat = image.read_bytes(), image.stat()
    edited = bytearray(before)
    edited[-1] ^= 0xFF  # one pixel byte; same size
    image.write_bytes(bytes(edited))
    try:
        jobs = planned_jobs(done)
    finally:
        image.write_bytes(before)
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "download" not in jobs
    assert jobs == {"merge": 1, "split": 4, "augment": 4, "resize": 8, **EVERYTHING_BELOW_TRAIN}
    assert planned_jobs(done) == {}  # the same bytes again: nothing


def test_tables_regenerate_from_stored_results_without_training(done):
    run = done / RUN
    shutil.rmtree(run / "tables")
    shutil.rmtree(run / "figures")
    (run / "report.html").unlink()  # a reviewer gets eval/ and the audits, not the report
    assert planned_jobs(done) == {"compare": 1, "report": 1, "all": 1}
    # as the README prints it: only the two table rules may run (with report.html still there,
    # Snakemake 9.27 finds nothing to do for this target under --allowed-rules)
    proc = snakemake(done, "--cores", "1", f"{RUN}/report.html", "--allowed-rules", "compare",
                     "report")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (run / "tables/comparison.md").is_file() and (run / "report.html").is_file()



def test_make_tables_rebuilds_everything_from_a_reviewers_copy(done, tmp_path):
    """README's reviewer command, as printed: `make tables` on a folder holding only eval/ and
    the split audits (no config, no Snakemake, no training)."""
    copy = tmp_path / "reviewer"
    shutil.copytree(done / RUN / "eval", copy / "eval")
    for audit in (done / RUN / "splits").glob("*/audit.json"):
        (copy / audit.parent.relative_to(done / RUN)).mkdir(parents=True)
        shutil.copy2(audit, copy / audit.relative_to(done / RUN))
    proc = subprocess.run(["make", "-s", "tables", f"RESULTS={copy}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rel in ("tables/comparison.md", "tables/rows.parquet", "figures/roc.png", "report.html"):
        assert (copy / rel).is_file(), rel
    assert "Table 1." in (copy / "tables/comparison.md").read_text()
    # every result the pipeline's own compare step showed (TTA records included)
    def shown(rows_file: Path) -> list[str]:
        files = pd.read_parquet(rows_file)["metrics_file"]
        return sorted(f[f.index("eval/"):] for f in files)

    assert shown(copy / "tables/rows.parquet") == shown(done / RUN / "tables/rows.parquet")


def test_snakemake_report_packs_the_finished_run(done):
    """README's `snakemake ... --report <zip>` after a run: Snakemake's own report."""
    proc = snakemake(done, "--report", "snakemake-report.zip")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (done / "snakemake-report.zip").stat().st_size > 0


# ---------------------------------------------------------------- a declared output gone missing


def _augment_pid(ws: Path) -> int | None:
    """The augment step's process that a Snakemake in ``ws`` started, if one runs now."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if any(a.endswith(b"scripts/augment.py") for a in args) and (
                (entry / "cwd").resolve() == ws.resolve()
            ):
                return int(entry.name)
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return None


def test_a_store_a_failed_forced_rerun_deleted_is_rebuilt_by_the_next_plain_run(done, tmp_path):
    """`-R augment` whose augment job dies (kill -9, as the OOM killer does): Snakemake deletes
    the job's outputs; the next plain run must rebuild the store and what was trained from it,
    not say "Nothing to be done" because everything after the store is up to date."""
    stores = sorted(p.parent for p in (done / RUN / "augment").rglob("train_pixels.npy"))
    backup = tmp_path / "stores"
    for store in stores:
        shutil.copytree(store, backup / store.relative_to(done), copy_function=shutil.copy2)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    forced = subprocess.Popen(
        [str(Path(sys.executable).parent / "snakemake"), "--configfile", "config.yaml",
         "test-config.yaml", "--cores", "1", "-R", "augment"],
        cwd=done, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        while (pid := _augment_pid(done)) is None and forced.poll() is None:
            time.sleep(0.01)
        assert pid is not None, forced.communicate()[0][-3000:]
        os.kill(pid, signal.SIGKILL)
        out = forced.communicate(timeout=300)[0]
        assert forced.returncode != 0, out[-3000:]
        missing = [s for s in stores if not (s / "train_pixels.npy").exists()]
        assert len(missing) == 1, out[-3000:]
        jobs = planned_jobs(done)
        assert jobs.get("augment") == 1 and jobs.get("train", 0) >= 1, jobs
    finally:
        for store in stores:
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(backup / store.relative_to(done), store,
                            copy_function=shutil.copy2)
    assert planned_jobs(done) == {}


def test_every_declared_output_is_a_default_target(done):
    """What keeps a missing intermediate from hiding: rule all names every file of the DAG."""
    proc = snakemake(done, "--summary", "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    in_dag = {line.split("\t")[0] for line in proc.stdout.splitlines()[1:] if line.strip()}
    config = yaml.safe_load((done / "config.yaml").read_text())
    update_config(config, yaml.safe_load((done / "test-config.yaml").read_text()))
    validate(config)
    targets = set(final_targets(config))
    assert in_dag - targets == set()
    assert targets - in_dag == set()


def test_forced_augment_after_a_restored_mtime_edit_reruns_merge_first(done):
    """The raw edit git's way of caching would see (inode, ctime): merge reruns before the
    forced augment, which therefore never meets an image changed after merge."""
    raw = done / FULL_CONFIG["data"]["raw_dir"]
    image = sorted(raw.rglob("*.bmp"))[0]
    before, stat = image.read_bytes(), image.stat()
    edited = bytearray(before)
    edited[-1] ^= 0xFF
    image.write_bytes(bytes(edited))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    try:
        jobs = planned_jobs(done, "-R", "augment")
    finally:
        image.write_bytes(before)
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert jobs.get("merge") == 1 and jobs.get("augment") == 4, jobs
    assert planned_jobs(done) == {}
