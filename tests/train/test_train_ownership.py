"""A training job owns its resume folder: one trainer at a time, none outliving its job's shell,
and a log that keeps every attempt's epochs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from train_fixtures import write_data

from leukopipe.train.checkpoint_saver import CheckpointSaver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return write_data(tmp_path_factory.mktemp("own"), n_train=32, n_val=16)


def _cli(data: dict[str, Path], out: Path, epochs: int) -> list[str]:
    args = [sys.executable, str(ROOT / "scripts" / "train.py"),
            "--backbone", "resnet18", "--strategy", "full", "--epochs", str(epochs),
            "--patience", str(epochs), "--batch-size", "16", "--seed", "1", "--workers", "0",
            "--device", "cpu", "--out-dir", str(out / "run"), "--resume-dir", str(out / "resume")]
    for key, path in data.items():
        args += ["--" + key.replace("_", "-"), str(path)]
    return args


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def test_a_second_trainer_of_the_same_experiment_fails_at_once(data, tmp_path):
    holder = CheckpointSaver(tmp_path / "run", tmp_path / "resume", "fp", max_epochs=1, patience=1)
    with holder.owned():
        started = time.monotonic()
        proc = subprocess.run(_cli(data, tmp_path, epochs=1), env=_env(), capture_output=True,
                              text=True, timeout=300)
        took = time.monotonic() - started
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is in use by another training" in errors[0]
    assert f"pid {os.getpid()}" in errors[0] and "Traceback" not in proc.stderr
    assert took < 120 and not (tmp_path / "run" / "best.pt").exists()
    # released: the same command now trains
    proc = subprocess.run(_cli(data, tmp_path, epochs=1), env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_killing_the_jobs_shell_stops_the_trainer_and_a_rerun_resumes(data, tmp_path):
    """Like a scheduler killing the wrapper: the trainer must not run on, unowned."""
    command = " ".join(f"'{a}'" for a in _cli(data, tmp_path, epochs=40))
    # `; true` keeps bash as the trainer's parent (it would otherwise exec python)
    shell = subprocess.Popen(["bash", "-c", f"{command} 2>> {tmp_path / 'job.log'}; true"],
                             env=_env())
    _wait_for(tmp_path / "resume" / "state.pt", shell)
    trainer = psutil.Process(shell.pid).children()[0]
    shell.kill()  # SIGKILL: the shell cannot pass anything on
    shell.wait(timeout=30)
    trainer.wait(timeout=120)  # raises if the trainer runs on
    log = (tmp_path / "job.log").read_text()
    assert "stopped by SIGTERM" in log, log[-2000:]
    assert not (tmp_path / "run" / "best.pt").exists()
    # nothing holds the resume folder any more: the retried job can take it
    retry = CheckpointSaver(tmp_path / "run", tmp_path / "resume", "fp", max_epochs=1, patience=1)
    with retry.owned():
        pass


def test_the_log_of_a_resumed_run_holds_every_attempts_epochs(data, tmp_path):
    proc = subprocess.Popen(_cli(data, tmp_path, epochs=30), env=_env(),
                            stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "resume" / "state.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, first = proc.communicate(timeout=120)
    assert proc.returncode == 143, first[-2000:]
    first_epochs = [line for line in first.splitlines() if " epoch 1/" in line]
    assert first_epochs
    second = subprocess.run(_cli(data, tmp_path, epochs=30), env=_env(), capture_output=True,
                            text=True, timeout=120 + 30 * 30)
    assert second.returncode == 0, second.stderr[-3000:]
    lines = second.stderr.splitlines()
    replay_end = next(i for i, line in enumerate(lines) if line.startswith("--- a new attempt"))
    assert first_epochs[0] in lines[:replay_end]  # the first attempt's epoch, replayed
    resumed = next(i for i, line in enumerate(lines) if "resuming from" in line)
    assert resumed > replay_end and any(" epoch 30/30" in line for line in lines[resumed:])
    # the kept log is gone with the finished run's resume state
    assert not (tmp_path / "resume" / "train.log").exists()
