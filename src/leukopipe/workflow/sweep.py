"""Hyperparameter sweep outside the DAG: one submitit job per grid point, as a SLURM job array.

Each point (learning rate x partial depth x seed for one backbone) runs the pipeline's own
``leukopipe.train.loop.train`` on an existing augment output. A point is a
``submitit.helpers.Checkpointable``: on SLURM's time-limit warning (``--signal=USR2@N``)
submitit calls ``checkpoint()``, which resubmits the same callable, and requeues the job;
training then continues from its own ``resume/<point>/state.pt``. Results are collected into
``sweep.parquet`` and a ranked ``sweep.md``; a point that already has its ``summary.json`` is
not submitted again, so rerunning the same command only finishes what is missing.

Status without accounting: submitit 1.5.4 learns job states only from ``sacct``. On a cluster
without slurmdbd sacct fails, submitit logs "Bypassing sacct error" and the state stays
UNKNOWN; a job that dies without writing its result (killed, out of memory, cancelled) is then
waited on forever. :class:`SqueueSlurmJob` asks ``squeue`` instead (finished jobs stay visible
for MinJobAge seconds) and treats a job that squeue no longer knows as finished.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import subprocess
import time
import typing as tp
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import submitit
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from leukopipe.plumbing.atomic import write_json, write_parquet, write_text
from leukopipe.plumbing.errors import InvalidInputError, MissingInputError
from leukopipe.train.loop import TrainConfig, TrainingInterrupted, train
from leukopipe.workflow.config import experiment_name

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
RANK_BY = ("val_macro_f1", "val_auc")  # higher is better; ties broken by AUC
CLUSTERS = ("slurm", "local", "debug")


@dataclass(frozen=True)
class SweepData:
    """An existing augment output: balanced training part and resized validation part."""

    train_manifest: str
    train_pixels: str
    val_manifest: str
    val_pixels: str

    @classmethod
    def from_augment_dir(cls, folder: str | os.PathLike[str]) -> SweepData:
        """A training store as written by the augment rule,
        ``results/<run>/augment/<split>/<size>px/<augmentation>/``, and the validation store of
        its size, which the resize rule writes one folder up."""
        d = Path(folder).resolve()
        data = cls(str(d / "train_balanced.parquet"), str(d / "train_pixels.npy"),
                   str(d.parent / "val.parquet"), str(d.parent / "val_pixels.npy"))
        missing = [Path(p).name for p in asdict(data).values() if not Path(p).is_file()]
        if missing:
            raise MissingInputError(
                f"augment output incomplete in {d} (validation: one folder up): missing"
                f" {', '.join(missing)}; build it first, e.g. snakemake --profile profiles/slurm"
                f" {d}/train_pixels.npy {d.parent}/val_pixels.npy"
            )
        return data


def point_name(cfg: TrainConfig) -> str:
    """Stable folder name of one grid point, e.g. resnet18.partial2.lr0.0003.s1."""
    return experiment_name(None, cfg.backbone, cfg.strategy, cfg.partial_stages, cfg.seed,
                           lr=cfg.lr)


def grid(base: TrainConfig, lrs: tp.Sequence[float], partial_stages: tp.Sequence[int],
         seeds: tp.Sequence[int]) -> list[TrainConfig]:
    """Every (lr, partial depth, seed) combination of ``base``; depths only matter for the
    partial strategy, so other strategies get one depth."""
    depths = partial_stages if base.strategy == "partial" else [base.partial_stages]
    points = [replace(base, lr=float(lr), partial_stages=int(d), seed=int(s))
              for lr, d, s in itertools.product(lrs, depths, seeds)]
    names = [point_name(p) for p in points]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"the grid holds duplicate points: {sorted(names)}")
    return points


class TrainPoint(submitit.helpers.Checkpointable):
    """One grid point as a requeueable submitit job (the same code as the train rule)."""

    def __init__(self, cfg: TrainConfig, data: SweepData, out_dir: str, resume_dir: str,
                 threads: int | None = None) -> None:
        self.cfg, self.data = cfg, data
        self.out_dir, self.resume_dir, self.threads = out_dir, resume_dir, threads

    def __call__(self) -> dict[str, Any]:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            job_id = str(submitit.JobEnvironment().job_id)
        except RuntimeError:  # the debug executor runs in this process, outside any job
            job_id = "debug"
        try:
            summary = train(self.cfg, **asdict(self.data), out_dir=self.out_dir,
                            resume_dir=self.resume_dir,
                            extra_meta={"sweep_point": point_name(self.cfg)}, device=None)
        except TrainingInterrupted as exc:
            # SIGTERM from a requeue/preemption (or scancel): SLURM restarts the job, or it is
            # cancelled. SystemExit, unlike an exception, leaves no error result behind that
            # the requeued run would have to overwrite.
            log.warning("%s", exc)
            raise SystemExit(exc.exit_code) from exc
        row = {
            "name": point_name(self.cfg),
            **{k: getattr(self.cfg, k) for k in ("backbone", "strategy", "partial_stages",
                                                  "lr", "seed", "epochs", "batch_size")},
            "best_epoch": summary["best_epoch"],
            "epochs_run": summary["epochs_run"],
            "stopped_early": summary["stopped_early"],
            "resumed_from_epoch": summary["resumed_from_epoch"],
            **summary["best_val_metrics"],
            "images_per_s": summary["images_per_s_median"],
            "device": summary["device"],
            "job_id": job_id,
            "best_checkpoint": summary["best_checkpoint"],
        }
        write_json(Path(self.out_dir) / SUMMARY_FILE, row)
        return row


# ----------------------------------------------------------------------- status via squeue


class SqueueInfoWatcher(SlurmInfoWatcher):
    """submitit's SLURM watcher, asking ``squeue`` instead of ``sacct`` (no accounting)."""

    _FIELDS = "JobID|State|NodeList"

    def _make_command(self) -> list[str] | None:
        to_check = sorted({x.split("_")[0] for x in self._registered - self._finished})
        if not to_check:
            return None
        # -r: one line per array task; --states=all: finished jobs too (until MinJobAge)
        return ["squeue", "--noheader", "-r", "--states=all", "--format=%i|%T|%N",
                "--jobs", ",".join(to_check)]

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        res = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        # squeue answers "Invalid job id" once every listed job has been purged
        gone = res.returncode != 0 and "Invalid job id" in res.stderr
        seen: dict[str, dict[str, str]] = {}
        if res.returncode == 0:
            seen = self.read_info(f"{self._FIELDS}\n{res.stdout}")
            self._info_dict.update(seen)
        elif not gone:
            log.warning("squeue failed (%s); job states may be stale", res.stderr.strip())
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if (gone or res.returncode == 0) and job_id not in seen:
                # purged after MinJobAge: finished; its result file tells how
                self._info_dict[job_id] = {"JobID": job_id, "State": "PURGED"}
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)


class SqueueSlurmJob(SlurmJob[tp.Any]):
    watcher = SqueueInfoWatcher(delay_s=60)


# ------------------------------------------------------------------------------- executor


@dataclass(frozen=True)
class ClusterSettings:
    """Where and with what resources the sweep's jobs run (scripts/sweep.py's cluster group)."""

    cluster: str = "slurm"
    timeout_min: int = 720
    partition: str | None = None
    gpus: int = 1
    cpus_per_task: int = 8
    mem_gb: float = 32
    array_parallelism: int = 16
    max_num_timeout: int = 3
    signal_delay_s: int = 120
    account: str | None = None


def make_executor(folder: str | os.PathLike[str],
                  settings: ClusterSettings) -> submitit.AutoExecutor:
    """An AutoExecutor for the sweep; on SLURM its jobs report status through squeue."""
    if settings.cluster not in CLUSTERS:
        raise InvalidInputError(f"cluster must be one of {CLUSTERS}, got {settings.cluster!r}")
    executor = submitit.AutoExecutor(folder=folder, cluster=settings.cluster,
                                     slurm_max_num_timeout=settings.max_num_timeout)
    params: dict[str, Any] = {
        "timeout_min": settings.timeout_min, "name": "leukopipe-sweep",
        "cpus_per_task": settings.cpus_per_task, "mem_gb": settings.mem_gb,
        "slurm_array_parallelism": settings.array_parallelism,
        "slurm_signal_delay_s": settings.signal_delay_s,
    }
    if settings.gpus:
        params["gpus_per_node"] = settings.gpus
    if settings.partition:
        params["slurm_partition"] = settings.partition
    if settings.account:
        params["slurm_additional_parameters"] = {"account": settings.account}
    executor.update_parameters(**params)
    return executor


def _with_squeue_status(job: submitit.Job[Any]) -> submitit.Job[Any]:
    """The same SLURM job, but its state comes from squeue (see the module docstring)."""
    if not isinstance(job, SlurmJob) or isinstance(job, SqueueSlurmJob):
        return job
    return SqueueSlurmJob(folder=job.paths.folder, job_id=job.job_id, tasks=job._tasks)


def submit(executor: submitit.AutoExecutor, points: tp.Sequence[TrainConfig],
           data: SweepData, out_dir: str | os.PathLike[str],
           threads: int | None = None) -> dict[str, submitit.Job[Any]]:
    """Submit every point that has no summary yet, as one job array; name -> job."""
    out = Path(out_dir).resolve()
    todo = [p for p in points if not (out / "runs" / point_name(p) / SUMMARY_FILE).is_file()]
    tasks = [TrainPoint(p, data, str(out / "runs" / point_name(p)),
                        str(out / "resume" / point_name(p)), threads) for p in todo]
    if not tasks:
        return {}
    with executor.batch():
        jobs = [executor.submit(task) for task in tasks]
    # job arrays are built by a private SlurmExecutor copy, so re-wrap instead of job_class
    jobs = [_with_squeue_status(j) for j in jobs]
    return {point_name(p): job for p, job in zip(todo, jobs, strict=True)}


def wait(jobs: dict[str, submitit.Job[Any]]) -> dict[str, str]:
    """Wait for every job; name -> error text of the jobs that failed."""
    errors = {}
    for name, job in jobs.items():
        exc = job.exception()
        if exc is not None:
            errors[name] = f"job {job.job_id}: {exc}"
            log.error("sweep point %s failed: %s", name, exc)
    return errors


# -------------------------------------------------------------------------------- results


def collect(out_dir: str | os.PathLike[str], points: tp.Sequence[TrainConfig],
            errors: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per point (missing points with status 'missing'/'failed'), ranked."""
    out = Path(out_dir)
    rows = []
    for p in points:
        summary = out / "runs" / point_name(p) / SUMMARY_FILE
        if summary.is_file():
            rows.append({**json.loads(summary.read_text()), "status": "done", "error": ""})
        else:
            err = (errors or {}).get(point_name(p), "")
            rows.append({"name": point_name(p), "backbone": p.backbone, "strategy": p.strategy,
                         "partial_stages": p.partial_stages, "lr": p.lr, "seed": p.seed,
                         "status": "failed" if err else "missing", "error": err})
    frame = pd.DataFrame(rows)
    for col in RANK_BY:
        if col not in frame.columns:
            frame[col] = math.nan
    frame = frame.sort_values([*RANK_BY, "name"], ascending=[False, False, True],
                              na_position="last", kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def settings_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds per setting (lr x depth), best first."""
    done = frame[frame["status"] == "done"]
    if done.empty:
        return pd.DataFrame()
    keys = ["backbone", "strategy", "partial_stages", "lr"]
    table = done.groupby(keys, as_index=False).agg(
        seeds=("seed", "count"),
        macro_f1_mean=("val_macro_f1", "mean"), macro_f1_sd=("val_macro_f1", "std"),
        auc_mean=("val_auc", "mean"), best_epoch_mean=("best_epoch", "mean"),
    )
    return table.sort_values(["macro_f1_mean", "auc_mean"], ascending=False,
                             kind="stable").reset_index(drop=True)


def summary_markdown(frame: pd.DataFrame) -> str:
    """Ranked Markdown summary: settings averaged over seeds, then every run."""
    done = int((frame["status"] == "done").sum())
    lines = [
        "# Sweep summary",
        "",
        f"{done} of {len(frame)} runs finished. Ranked by validation macro-F1 (best epoch), "
        "ties by AUC. Validation, not test: pick a setting here, then evaluate it once in the "
        "pipeline.",
        "",
    ]
    settings = settings_table(frame)
    if not settings.empty:
        lines += ["## Settings (mean over seeds)", "",
                  settings.to_markdown(index=False, floatfmt=".4f"), ""]
    cols = [c for c in ("rank", "name", "lr", "partial_stages", "seed", "val_macro_f1",
                        "val_auc", "val_accuracy", "best_epoch", "epochs_run",
                        "resumed_from_epoch", "status") if c in frame.columns]
    lines += ["## Runs", "", frame[cols].to_markdown(index=False, floatfmt=".4f"), ""]
    failed = frame[frame["status"] != "done"]
    if not failed.empty:
        lines += ["## Not finished", ""]
        lines += [f"- {r.name}: {r.status} {r.error}".rstrip() for r in failed.itertuples()]
        lines.append("")
    return "\n".join(lines)


def write_results(frame: pd.DataFrame, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``sweep.parquet`` and ``sweep.md`` in ``out_dir``."""
    out = Path(out_dir)
    table, md = out / "sweep.parquet", out / "sweep.md"
    write_parquet(table, frame)
    write_text(md, summary_markdown(frame))
    return table, md


def run_sweep(points: tp.Sequence[TrainConfig], data: SweepData,
              out_dir: str | os.PathLike[str], executor: submitit.AutoExecutor,
              threads: int | None = None) -> pd.DataFrame:
    """Submit the missing points, wait for them, collect and write the tables."""
    jobs = submit(executor, points, data, out_dir, threads)
    if jobs:
        ids = sorted({j.job_id.split("_")[0] for j in jobs.values()})
        log.info("submitted %d sweep point(s) as job(s) %s; logs in %s", len(jobs),
                 ", ".join(ids), executor.folder)
    errors = wait(jobs)
    frame = collect(out_dir, points, errors)
    write_results(frame, out_dir)
    return frame


@dataclass(frozen=True)
class SweepRequest:
    """One sweep as scripts/sweep.py asks for it: the augment output it reads, the folder it
    writes, the grid around ``base`` and where the jobs run."""

    augment_dir: Path
    out_dir: Path
    base: TrainConfig
    lrs: tp.Sequence[float]
    partial_stages: tp.Sequence[int]
    seeds: tp.Sequence[int]
    cluster: ClusterSettings
    threads: int | None = None


def run_request(request: SweepRequest) -> int:
    """Run the sweep, print how many points are done and the best one; exit code 0 when every
    point is done, else 1."""
    data = SweepData.from_augment_dir(request.augment_dir)
    points = grid(request.base, request.lrs, request.partial_stages, request.seeds)
    executor = make_executor(request.out_dir / "submitit", request.cluster)
    frame = run_sweep(points, data, request.out_dir, executor, threads=request.threads)
    done = int((frame["status"] == "done").sum())
    print(f"{done}/{len(frame)} runs done; ranked summary: {request.out_dir / 'sweep.md'}")
    if done:
        best = frame.iloc[0]
        print(f"best: {best['name']} (val macro-F1 {best['val_macro_f1']:.4f})")
    return 0 if done == len(frame) else 1
