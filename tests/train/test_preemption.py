"""Preemption and time limits on the real SLURM test cluster, with the real training script.

Two sbatch jobs run ``scripts/train.py`` (through tests/slurm/paced_train.py, which only makes
each epoch a few seconds longer so that SLURM can strike mid-run):

- requeue: ``scontrol requeue`` of the running job after its first saved epoch; SLURM sends
  SIGTERM, the job goes back to the queue and starts again, unpaced, from the resume state;
- time limit: a ``--time=1`` job is killed with state TIMEOUT (slurmctld checks every 30 s,
  so 60-90 s after start); the retry (what Snakemake's ``retries:`` does: the same command
  as a new job) continues from the last completed epoch.

Both must end exactly like an undisturbed run: same best.pt/last.pt tensors, same history,
every epoch exactly once. The time-limit job is submitted first (module fixture) so that its
wait overlaps the requeue test.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import torch
from train_fixtures import write_data

from leukopipe.train.loop import TrainConfig, train

if TYPE_CHECKING:
    from slurm_cluster import SlurmCluster

pytest_plugins = ["slurm_cluster"]
pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
PACED = ROOT / "tests" / "slurm" / "paced_train.py"
EPOCHS = 14
SETTINGS = {"backbone": "resnet18", "strategy": "partial", "partial_stages": 1,
            "epochs": EPOCHS, "patience": EPOCHS, "batch_size": 8, "eval_batch_size": 16,
            "lr": 1e-3, "seed": 4, "flips": True, "amp": "none"}
HISTORY = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1",
           "val_auc", "improved"]


def _train_args(data: dict[str, Path], run: Path) -> list[str]:
    args = ["--backbone", "resnet18", "--strategy", "partial", "--partial-stages", "1",
            "--epochs", str(EPOCHS), "--patience", str(EPOCHS), "--batch-size", "8",
            "--eval-batch-size", "16", "--lr", "1e-3", "--seed", "4", "--flips",
            "--amp", "none", "--workers", "0", "--device", "cpu",
            "--out-dir", str(run / "run"), "--resume-dir", str(run / "resume")]
    for key, path in data.items():
        args += ["--" + key.replace("_", "-"), str(path)]
    return args


def _script(data: dict[str, Path], run: Path, first_pause: float) -> str:
    """Batch script: paced on the first start, unpaced after a requeue (SLURM_RESTART_COUNT)
    or when LEUKOPIPE_TEST_EPOCH_PAUSE is set by the submitter. One thread: like the
    reference run, so that results can be compared bit for bit."""
    cmd = shlex.join([sys.executable, str(PACED), *_train_args(data, run)])
    return (
        "#!/bin/bash\n"
        f"export PYTHONPATH={shlex.quote(str(ROOT / 'src'))} OMP_NUM_THREADS=1\n"
        'echo "start ${SLURM_RESTART_COUNT:-0}" >&2\n'
        'if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then\n'
        f"  export LEUKOPIPE_TEST_EPOCH_PAUSE=${{LEUKOPIPE_TEST_EPOCH_PAUSE:-{first_pause}}}\n"
        "else\n  export LEUKOPIPE_TEST_EPOCH_PAUSE=0\nfi\n"
        f"exec {cmd}\n"
    )


def _epochs_saved(run: Path) -> int:
    state = run / "resume" / "state.pt"
    if not state.exists():
        return 0
    try:
        return int(torch.load(state, map_location="cpu", weights_only=True)["epochs_done"])
    except Exception:  # being replaced right now (atomic rename): ask again
        return 0


def _wait_epochs(run: Path, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (done := _epochs_saved(run)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done >= n, f"no epoch {n} saved in {run} after {timeout:.0f} s"
    return done


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_as(reference: Path, run: Path) -> pd.DataFrame:
    for name in ("best.pt", "last.pt"):
        a, b = _tensors(reference / name), _tensors(run / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs from the undisturbed run"
    history = pd.read_parquet(run / "history.parquet")
    assert list(history["epoch"]) == list(range(1, EPOCHS + 1))  # each epoch exactly once
    pd.testing.assert_frame_equal(pd.read_parquet(reference / "history.parquet")[HISTORY],
                                  history[HISTORY], check_exact=True)
    return history


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return write_data(tmp_path_factory.mktemp("preempt-data"), n_train=16, n_val=8)


class TimeLimited:
    """The --time=1 training job, submitted as early as possible (see module docstring)."""

    def __init__(self, cluster: SlurmCluster, data: dict[str, Path], root: Path) -> None:
        self.cluster, self.data, self.run = cluster, data, root / "timelimit"
        self.run.mkdir(parents=True)
        self.log = self.run / "attempt1.log"
        # ~7 s per epoch: about 6-12 epochs fit before the kill at 60-90 s, never all 14
        self.job_id = cluster.sbatch(
            "--time=1", "--cpus-per-task=1", "--mem=1500", "--job-name=train-timelimit",
            f"--output={self.log}", script=_script(data, self.run, first_pause=7),
        )


@pytest.fixture(scope="module")
def time_limited(slurm_cluster: SlurmCluster, data, tmp_path_factory) -> TimeLimited:
    return TimeLimited(slurm_cluster, data, tmp_path_factory.mktemp("preempt"))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The undisturbed run, in this process with one thread (as the jobs)."""
    out = tmp_path_factory.mktemp("reference")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(**SETTINGS, workers=0), **data, out_dir=out / "run",
              resume_dir=out / "resume", device="cpu")
    finally:
        torch.set_num_threads(before)
    return out / "run"


def test_requeued_training_job_resumes_and_matches_undisturbed_run(
    slurm_cluster: SlurmCluster, time_limited: TimeLimited, data, reference, tmp_path
) -> None:
    run = tmp_path / "requeue"
    log = tmp_path / "requeue.log"
    job_id = slurm_cluster.sbatch(
        "--time=10", "--cpus-per-task=1", "--mem=1500", "--requeue", "--open-mode=append",
        "--job-name=train-requeue", f"--output={log}",
        script=_script(data, run, first_pause=3),
    )
    try:
        slurm_cluster.wait_for_job(job_id, "RUNNING", timeout=60)
        saved = _wait_epochs(run, 1, timeout=120)
        assert saved < EPOCHS
        slurm_cluster.run("scontrol", "requeue", job_id)
        info = slurm_cluster.wait_for_job(job_id, ["PENDING", "RUNNING"], timeout=30, poll=0.2)
        assert info["Restarts"] == "1" and info["Requeue"] == "1"
        done = slurm_cluster.wait_for_job(job_id, "COMPLETED", timeout=180)
    finally:
        slurm_cluster.run("scancel", job_id, check=False)
    assert done["Restarts"] == "1" and done["ExitCode"] == "0:0"
    text = log.read_text()
    assert "start 0" in text and "start 1" in text, text[-3000:]
    # the first run stopped on SLURM's SIGTERM; the second resumed after a saved epoch
    assert "received SIGTERM" in text, text[-3000:]
    resumed = [line for line in text.splitlines() if "resuming from" in line]
    assert len(resumed) == 1, text[-3000:]
    after = int(resumed[0].split("after epoch ")[1].split()[0])
    assert 1 <= after < EPOCHS
    _assert_same_as(reference, run / "run")


def test_time_limited_training_job_is_killed_and_retry_finishes_from_last_epoch(
    slurm_cluster: SlurmCluster, time_limited: TimeLimited, reference
) -> None:
    job = time_limited
    info = slurm_cluster.wait_for_job(job.job_id, "TIMEOUT", timeout=180)
    assert info["TimeLimit"] == "00:01:00" and info["Reason"] == "TimeLimit"
    attempt1 = job.log.read_text()
    assert "DUE TO TIME LIMIT" in attempt1, attempt1[-3000:]
    saved = _epochs_saved(job.run)
    assert 1 <= saved < EPOCHS, saved
    assert not (job.run / "run" / "best.pt").exists()  # no outputs from the killed attempt

    # the retry: the same command as a new job (what Snakemake's retries do), unpaced
    retry_log = job.run / "attempt2.log"
    retry = slurm_cluster.sbatch(
        "--time=5", "--cpus-per-task=1", "--mem=1500", "--job-name=train-timelimit-retry",
        f"--output={retry_log}", "--export=ALL,LEUKOPIPE_TEST_EPOCH_PAUSE=0",
        script=_script(job.data, job.run, first_pause=0),
    )
    done = slurm_cluster.wait_for_job(retry, "COMPLETED", timeout=180)
    assert done["ExitCode"] == "0:0"
    text = retry_log.read_text()
    assert f"after epoch {saved} " in text, text[-3000:]
    history = _assert_same_as(reference, job.run / "run")
    assert len(history) == EPOCHS
    assert not (job.run / "resume" / "state.pt").exists()  # removed after success

