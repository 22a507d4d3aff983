"""The submitit sweep (scripts/sweep.py, leukopipe.workflow.sweep): grid, local jobs, checkpoint and
requeue with resume, collected ranked tables, and a job array on the real SLURM test cluster."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import torch
from train_fixtures import write_split

from leukopipe.plumbing.atomic import write_json
from leukopipe.train.loop import TrainConfig, train
from leukopipe.workflow import sweep

if TYPE_CHECKING:
    from slurm_cluster import SlurmCluster

pytest_plugins = ["slurm_cluster"]
ROOT = Path(__file__).resolve().parents[2]
HISTORY = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1",
           "val_auc"]


def _base(**kw) -> TrainConfig:
    settings = {"backbone": "resnet18", "strategy": "partial", "partial_stages": 1, "epochs": 2,
                "patience": 5, "batch_size": 8, "eval_batch_size": 16, "workers": 0,
                "amp": "none", **kw}
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def augment_dir(tmp_path_factory) -> Path:
    """Tiny data laid out like an augment output: the training store in
    ``<split>/<size>px/<augmentation>/``, the validation store of its size one folder up."""
    size_dir = tmp_path_factory.mktemp("augment") / "official" / "32px"
    train_dir = size_dir / "bal16"
    for d, name, n, seed, manifest, pixels in (
        (train_dir, "train", 16, 1, "train_balanced.parquet", "train_pixels.npy"),
        (size_dir, "val", 8, 2, "val.parquet", "val_pixels.npy"),
    ):
        m, p = write_split(d, name, n, 32, seed=seed)
        m.rename(d / manifest)
        p.rename(d / pixels)
    return train_dir


def _states(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_run(a: Path, b: Path) -> None:
    for name in ("best.pt", "last.pt"):
        x, y = _states(a / name), _states(b / name)
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), f"{name}: {k}"
    pd.testing.assert_frame_equal(pd.read_parquet(a / "history.parquet")[HISTORY],
                                  pd.read_parquet(b / "history.parquet")[HISTORY],
                                  check_exact=True)


def test_grid_covers_every_combination_with_unique_names():
    points = sweep.grid(_base(), [1e-3, 3e-4], [1, 2], [0, 1])
    assert len(points) == 8
    names = [sweep.point_name(p) for p in points]
    assert len(set(names)) == 8 and "resnet18.partial2.lr0.0003.s1" in names
    # depth is meaningless without the partial strategy: one depth, no depth in the name
    frozen = sweep.grid(_base(strategy="frozen"), [1e-3], [1, 2, 3], [0])
    assert [sweep.point_name(p) for p in frozen] == ["resnet18.frozen.lr0.001.s0"]
    with pytest.raises(ValueError, match="duplicate"):
        sweep.grid(_base(), [1e-3, 1e-3], [1], [0])


def test_points_and_pipeline_experiments_share_one_name_builder():
    from leukopipe.workflow.config import experiment_name

    point = _base(strategy="partial", partial_stages=3, lr=2e-4, seed=4)
    pipeline = experiment_name("patient", "resnet18", "partial", 3, 4)
    assert pipeline == "patient.resnet18.partial3.s4"
    # the same model is named the same way; a point has no split but names its rate
    assert sweep.point_name(point) == "resnet18.partial3.lr0.0002.s4"
    assert sweep.point_name(point) == experiment_name(None, "resnet18", "partial", 3, 4, lr=2e-4)


def test_missing_augment_output_names_the_files(tmp_path):
    (tmp_path / "train_balanced.parquet").write_text("")
    with pytest.raises(FileNotFoundError, match=r"train_pixels\.npy, val\.parquet, val_pixels\.npy"):
        sweep.SweepData.from_augment_dir(tmp_path)


def test_ranking_and_markdown_from_summaries(tmp_path):
    points = sweep.grid(_base(), [1e-3, 3e-4, 1e-4], [1], [0])
    scores = {0: (0.7, 0.8), 1: (0.9, 0.85), 2: None}  # point 2 failed
    for i, p in enumerate(points):
        if scores[i] is None:
            continue
        run = tmp_path / "runs" / sweep.point_name(p)
        run.mkdir(parents=True)
        f1, auc = scores[i]
        write_json(run / sweep.SUMMARY_FILE, {
            "name": sweep.point_name(p), "backbone": "resnet18", "strategy": "partial",
            "partial_stages": 1, "lr": p.lr, "seed": 0, "best_epoch": 1, "epochs_run": 2,
            "resumed_from_epoch": None, "val_macro_f1": f1, "val_auc": auc,
            "val_accuracy": f1})
    frame = sweep.collect(tmp_path, points, {sweep.point_name(points[2]): "job 7: boom"})
    assert list(frame["lr"]) == [3e-4, 1e-3, 1e-4]
    assert list(frame["rank"]) == [1, 2, 3]
    assert list(frame["status"]) == ["done", "done", "failed"]
    table, md = sweep.write_results(frame, tmp_path)
    assert pd.read_parquet(table)["name"].tolist() == frame["name"].tolist()
    text = md.read_text()
    assert "2 of 3 runs finished" in text
    assert text.index("lr0.0003") < text.index("lr0.001.s0 ")
    assert "resnet18.partial1.lr0.0001.s0: failed job 7: boom" in text


def test_local_sweep_trains_every_point_with_the_train_code(tmp_path, augment_dir):
    points = sweep.grid(_base(), [1e-3, 1e-2], [1], [0])
    ex = sweep.make_executor(tmp_path / "submitit", sweep.ClusterSettings(
        "local", timeout_min=30, gpus=0, cpus_per_task=1, mem_gb=1))
    frame = sweep.run_sweep(points, sweep.SweepData.from_augment_dir(augment_dir), tmp_path,
                            ex, threads=1)
    assert (frame["status"] == "done").all(), frame.to_dict("records")
    assert frame["val_macro_f1"].is_monotonic_decreasing
    for row in frame.itertuples():
        run = tmp_path / "runs" / row.name
        history = pd.read_parquet(run / "history.parquet")
        assert list(history["epoch"]) == [1, 2]
        assert history.loc[history["epoch"] == row.best_epoch, "val_macro_f1"].item() == \
            row.val_macro_f1
        ckpt = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
        assert ckpt["train_config"]["lr"] == row.lr
        assert ckpt["extra_meta"] == {"sweep_point": row.name}
    stored = pd.read_parquet(tmp_path / "sweep.parquet")
    assert stored["name"].tolist() == frame["name"].tolist()
    assert "# Sweep summary" in (tmp_path / "sweep.md").read_text()
    # rerun: everything has a summary, so nothing is submitted again
    assert sweep.submit(ex, points, sweep.SweepData.from_augment_dir(augment_dir),
                        tmp_path) == {}


def test_local_usr2_signal_checkpoints_requeues_and_resumes(tmp_path, augment_dir):
    """submitit's timeout signal (USR2) on a running point: checkpoint() resubmits it, the
    local executor restarts it, training resumes from state.pt; result = undisturbed run."""
    cfg = _base(epochs=8, patience=8, seed=5)  # ~0.2 s per epoch
    data = sweep.SweepData.from_augment_dir(augment_dir)
    ex = sweep.make_executor(tmp_path / "submitit", sweep.ClusterSettings(
        "local", timeout_min=30, gpus=0, cpus_per_task=1, mem_gb=1))
    jobs = sweep.submit(ex, [cfg], data, tmp_path / "sweep", threads=1)
    (name, job), = jobs.items()
    state = tmp_path / "sweep" / "resume" / name / "state.pt"
    deadline = time.monotonic() + 180
    while not state.exists() and not job.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.exists() and not job.done(), job.stderr()
    # What SLURM's --signal=USR2@N does before the time limit. (job._interrupt() signals
    # the local controller, which does not forward USR2, so signal the task itself.)
    controller = job._process.pid
    (task,) = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)
    result = job.result()
    log = job.stdout() or ""
    assert "this job is timed-out" in log or "this job is preempted" in log, log[-3000:]
    assert "Requeued job" in log, log[-3000:]
    assert result["resumed_from_epoch"] is not None and 1 <= result["resumed_from_epoch"] < 8
    history = pd.read_parquet(tmp_path / "sweep" / "runs" / name / "history.parquet")
    assert list(history["epoch"]) == list(range(1, 9))  # each epoch exactly once

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the job did
    try:
        train(cfg, **asdict(data), out_dir=tmp_path / "ref", resume_dir=tmp_path / "ref_r",
              extra_meta={})
    finally:
        torch.set_num_threads(before)
    _assert_same_run(tmp_path / "ref", tmp_path / "sweep" / "runs" / name)


def test_cli_runs_a_sweep_and_exits_by_outcome(tmp_path, augment_dir):
    """scripts/sweep.py end to end with submitit's debug executor (in-process jobs)."""
    base = [sys.executable, str(ROOT / "scripts" / "sweep.py"), "--augment-dir",
            str(augment_dir), "--backbone", "resnet18", "--strategy", "frozen", "--lrs", "1e-3",
            "--seeds", "0", "--epochs", "1", "--batch-size", "8", "--eval-batch-size", "16",
            "--amp", "none", "--workers", "0", "--threads", "1", "--cluster", "debug",
            "--gpus", "0"]
    res = subprocess.run([*base, "--out-dir", str(tmp_path / "ok")], capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "1/1 runs done" in res.stdout and "best: resnet18.frozen.lr0.001.s0" in res.stdout
    frame = pd.read_parquet(tmp_path / "ok" / "sweep.parquet")
    assert frame[["name", "status", "job_id"]].values.tolist() == [
        ["resnet18.frozen.lr0.001.s0", "done", "debug"]]
    # a broken input fails with one line and exit code 1
    res = subprocess.run([*base, "--out-dir", str(tmp_path / "bad"), "--augment-dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 1 and "augment output incomplete" in res.stderr, res.stderr


# ----------------------------------------------------------------------------- real SLURM


@pytest.mark.slurm
def test_slurm_job_array_with_status_from_squeue(slurm_cluster: SlurmCluster, tmp_path,
                                                 augment_dir, caplog):
    """Two points as one job array on the test cluster; no sacct anywhere (no accounting):
    states come from squeue, and a job killed from outside is reported, not waited on."""
    points = sweep.grid(_base(), [1e-3, 1e-2], [1], [0])
    ex = sweep.make_executor(tmp_path / "submitit", sweep.ClusterSettings(
        "slurm", timeout_min=5, gpus=1, cpus_per_task=1, mem_gb=1,
        partition=slurm_cluster.gpu_partition))
    data = sweep.SweepData.from_augment_dir(augment_dir)
    jobs = sweep.submit(ex, points, data, tmp_path, threads=1)
    ids = {j.job_id for j in jobs.values()}
    array_id = {i.split("_")[0] for i in ids}
    assert len(array_id) == 1 and len(ids) == 2  # one array, two tasks
    info = slurm_cluster.job_info(next(iter(ids)))
    assert info["Partition"] == slurm_cluster.gpu_partition
    assert re.search(r"gres[:/]gpu:1\b", " ".join(info.get(k, "") for k in
                                                    ("TresPerNode", "TresPerJob")))
    assert info["TimeLimit"] == "00:05:00" and info["NumCPUs"] == "1"
    errors = sweep.wait(jobs)
    assert errors == {}
    for job in jobs.values():
        # the result file comes a moment before SLURM marks the job finished
        deadline = time.monotonic() + 30
        while (state := job.watcher.get_state(job.job_id, mode="force")) in (
                "RUNNING", "COMPLETING") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert state == "COMPLETED"  # from squeue: sacct has nothing here
    frame = sweep.collect(tmp_path, points)
    assert (frame["status"] == "done").all()
    assert set(frame["job_id"]) == ids
    assert "Bypassing sacct error" not in caplog.text

    # a job that dies without a result (here: scancel) ends the wait with an error
    lone = sweep.grid(_base(epochs=50), [1e-3], [1], [9])
    jobs = sweep.submit(ex, lone, data, tmp_path / "cancelled", threads=1)
    (job,) = jobs.values()
    slurm_cluster.wait_for_job(job.job_id, "RUNNING", timeout=60)
    slurm_cluster.run("scancel", job.job_id)
    started = time.monotonic()
    errors = sweep.wait(jobs)
    assert time.monotonic() - started < 60
    assert list(errors) == [sweep.point_name(lone[0])]
    assert "has not produced any output (state: CANCELLED" in errors[sweep.point_name(lone[0])]


@pytest.mark.slurm
def test_slurm_usr2_checkpoint_requeues_the_job_and_training_resumes(
    slurm_cluster: SlurmCluster, tmp_path, augment_dir
):
    """submitit's time-limit path on the real SLURM: the job carries --signal=USR2@N; USR2
    (sent here with scancel --signal, as submitit's own _interrupt does, instead of waiting
    for the limit) makes it checkpoint and `scontrol requeue` itself; the restarted job
    resumes from state.pt and finishes with each epoch exactly once."""
    cfg = _base(epochs=30, patience=30, seed=2)
    ex = sweep.make_executor(tmp_path / "submitit", sweep.ClusterSettings(
        "slurm", timeout_min=5, gpus=0, cpus_per_task=1, mem_gb=1, signal_delay_s=100))
    jobs = sweep.submit(ex, [cfg], sweep.SweepData.from_augment_dir(augment_dir), tmp_path,
                        threads=1)
    (name, job), = jobs.items()
    script = next((tmp_path / "submitit").glob("*_submission.sh")).read_text()
    assert "#SBATCH --signal=USR2@100" in script
    state = tmp_path / "resume" / name / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and not job.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.exists() and not job.done(), job.stdout()
    slurm_cluster.run("scancel", "--signal=USR2", job.job_id)
    slurm_cluster.wait_for_job(job.job_id, ["PENDING", "RUNNING", "COMPLETED"], timeout=30)
    result = job.result()
    info = slurm_cluster.job_info(job.job_id)
    assert info["Restarts"] == "1", info
    log = job.stdout() or ""
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log, log[-3000:]
    assert 1 <= result["resumed_from_epoch"] < 30
    history = pd.read_parquet(tmp_path / "runs" / name / "history.parquet")
    assert list(history["epoch"]) == list(range(1, 31))
