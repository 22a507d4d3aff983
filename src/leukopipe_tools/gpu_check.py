"""One-command GPU check: the real pipeline, resume after kills and the benchmark, in bounded time.

``make gpu-check`` (``scripts/gpu_check.py``) runs, on any CUDA node and without network:

- ``env``: versions, GPU, driver, CPUs (a child process: a broken driver can hang CUDA's start);
- ``pipeline``: the real pipeline through Snakemake on a C-NMC-shaped synthetic copy, with the
  experiment groups of the cluster smoke config (:data:`SMOKE_CONFIG`): Study A's and Study B's
  shapes and cross-validation, through evaluation (TTA, Grad-CAM), ensemble, comparison and
  report. Stand-in weights (random, in the fetched files' format) replace ImageNet's offline;
- ``resume``: a training job killed mid-epoch by SIGTERM and by SIGKILL, rerun, compared with an
  undisturbed run (:mod:`leukopipe_tools.resume_check`);
- ``bench``: training loop versus pure step for the six backbones, compile on/off for two, with
  the epoch split, loader wait, inference rate and peak memory (:mod:`leukopipe_tools.gpu_bench`).

Every part has a time budget (:data:`BUDGETS`) enforced with a hard timeout on its process group
(:mod:`leukopipe_tools.process_group`); a part that fails or times out is recorded and the next
one runs. The summary (:mod:`leukopipe_tools.gpu_summary`) is rewritten atomically after each
part. ``--device cpu --tiny`` runs the same code with tiny sizes (the test suite does).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leukopipe.plumbing import atomic
from leukopipe_tools.gpu_summary import render
from leukopipe_tools.process_group import Outcome, run_bounded

REPO = Path(__file__).resolve().parents[2]  # src/leukopipe_tools/<this> -> the checkout
SMOKE_CONFIG = "profiles/slurm/smoke-config.yaml"
# what a workspace copy of the workflow needs (results and data stay out of the checkout)
WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "scripts", "src", "envs", "profiles",
                  "report")
PARTS = ("env", "pipeline", "resume", "bench")
# Seconds per part on a GPU node, the SIGTERM grace period included: pipeline + resume = 5
# minutes and bench = 3 minutes (the budget); env takes seconds. Together < 9 minutes.
BUDGETS = {"env": 45.0, "pipeline": 210.0, "resume": 90.0, "bench": 180.0}
# The tiny CPU run only guards against hangs: on a shared 2-core machine each process that
# imports torch can take 10-40 s, so its budgets are wide.
TINY_BUDGETS = {"env": 180.0, "pipeline": 1200.0, "resume": 600.0, "bench": 600.0}
GRACE_S = 10.0  # after SIGTERM, before SIGKILL
MIN_RUN_S = 15.0  # a benchmark run is not started with less time than this left
FINISH_S = 10.0  # kept free at the end of --deadline for the last summary
SUMMARY_NAME = "gpu-check.md"
SNAKEMAKE_LOG = "snakemake.log"


@dataclass(frozen=True)
class Scale:
    """The sizes of one kind of check run (the GPU run or the CPU tiny run)."""

    name: str
    pipeline_overrides: dict[str, Any]  # merged over config.yaml + the smoke config
    tiny_backbones: tuple[str, ...] | None  # replaces every group's backbones when set
    tiny_groups: tuple[str, ...] | None  # the smoke groups kept in the tiny run (None: all)
    resume: dict[str, Any]  # resume_check options
    bench_backbones: tuple[str, ...]
    compile_backbones: tuple[str, ...]
    compile_backend: str | None
    bench: dict[str, Any]  # gpu_bench options and store sizes
    budgets: dict[str, float]  # seconds per part
    augment_threads: int | None = None  # None: cores / split count


FULL = Scale(
    name="GPU (224 px, C-NMC-shaped)",
    pipeline_overrides={"run": "gpu-check"},
    tiny_backbones=None,
    tiny_groups=None,
    resume={"backbone": "resnet18", "image_size": 224, "train_images": 768, "val_images": 256,
            "batch_size": 32, "epochs": 6, "workers": 2, "amp": "bf16", "run_timeout": 60},
    bench_backbones=("resnet18", "resnet50", "resnet101", "efficientnet_b0", "efficientnet_b1",
                     "efficientnet_b3"),
    compile_backbones=("resnet50", "efficientnet_b0"),
    compile_backend=None,
    # 2,048 training images = 8 steps of 256 per epoch (epoch 1, with cuDNN's autotuning, is
    # dropped); 1,280 validation images ~ Study A's 1,250
    bench={"image_size": 224, "train_images": 2048, "val_images": 1280, "batch_size": 256,
           "eval_batch_size": 512, "epochs": 2, "steps": 10, "amp": "bf16",
           "eager_timeout": 50.0, "compile_timeout": 100.0},
    budgets=BUDGETS,
)

TINY = Scale(
    name="CPU tiny (32 px, few donors, 1 epoch)",
    pipeline_overrides={
        "run": "gpu-check-tiny",
        "data": {"expected_image_size": 64, "synthetic": {
            "train_all_subjects": 6, "train_hem_subjects": 5, "prelim_all_subjects": 3,
            "prelim_hem_subjects": 3, "cells_per_subject": [3, 4], "final_images": 2,
            "image_size": 64}},
        "augment": {"image_size": 32, "target_per_class": 32},
        "train": {"epochs": 1, "patience": 1, "lr": 1.0e-3, "batch_size": 32,
                  "eval_batch_size": 64, "amp": "none"},
        "evaluate": {"bootstrap": 50, "batch_size": 64},
        # at 32 px the last ResNet stage is 1x1: the stage before it (2x2) can localise
        "gradcam": {"per_group": 1, "stage": -2},
        # one backbone: every group's shape with the fewest jobs (ensembles need two members of
        # one split, which tests/integration/test_pipeline.py covers); the suite must stay short
        "ensembles": [],
    },
    tiny_backbones=("resnet18",),
    # Study A's and Study B's shapes; the cross-validation group adds only more of the same jobs
    # (tests/integration/test_pipeline.py runs cross-validation end to end)
    tiny_groups=("study_a_smoke", "study_b_smoke"),
    # 4 steps an epoch and 8 epochs: room for retries when a loaded machine makes the signal
    # miss the epoch it was aimed at
    resume={"backbone": "resnet18", "image_size": 32, "train_images": 32, "val_images": 8,
            "batch_size": 8, "epochs": 8, "workers": 0, "amp": "none", "run_timeout": 300},
    bench_backbones=("resnet18",),
    compile_backbones=("resnet18",),
    compile_backend="eager",
    bench={"image_size": 32, "train_images": 32, "val_images": 16, "batch_size": 16,
           "eval_batch_size": 32, "epochs": 2, "steps": 3, "amp": "none",
           "eager_timeout": 200.0, "compile_timeout": 200.0},
    budgets=TINY_BUDGETS,
    augment_threads=1,
)


@dataclass
class PartResult:
    """Status, wall time and findings of one part."""

    name: str
    status: str = "not run"  # ok, failed, timed out, not run, not selected
    seconds: float = 0.0
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Check:
    """One GPU-check run: parts in order, each bounded, the summary rewritten after each."""

    def __init__(self, out: Path, work: Path, device: str, scale: Scale,
                 budgets: dict[str, float], selected: Sequence[str],
                 say: Callable[[str], None] | None = None, deadline: float | None = None):
        self.out, self.work, self.device, self.scale = out, work, device, scale
        self.budgets, self.selected = budgets, list(selected)
        self.start = time.monotonic()
        # the whole run ends by this many seconds after the start (parts are cut to fit)
        self.deadline = self.start + (deadline if deadline is not None else
                                      sum(budgets[n] for n in self.selected) + FINISH_S)
        self.parts = {name: PartResult(name, "not run" if name in selected else "not selected")
                      for name in PARTS}
        self.env_info: dict[str, Any] = {}
        self._say = say or (lambda msg: print(msg, flush=True))
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.child_env = child_environment(self.work / "bin")

    # ---------------------------------------------------------------------------- plumbing

    def say(self, msg: str) -> None:
        self._say(f"[gpu-check {time.monotonic() - self.start:5.0f}s] {msg}")

    def write_summary(self) -> Path:
        text = render(self)
        path = self.out / SUMMARY_NAME
        atomic.write_text(path, text)
        return path

    def bounded(self, argv: Sequence[str], deadline: float, log: Path,
                cwd: Path | None = None, on_line: Callable[[str], None] | None = None,
                cap: float | None = None) -> Outcome:
        """Run ``argv`` so that it ends, SIGTERM grace included, by ``deadline``."""
        left = deadline - time.monotonic()
        if cap is not None:
            left = min(left, cap)
        grace = min(GRACE_S, max(1.0, left / 4))
        return run_bounded(argv, max(0.0, left - grace), log, grace=grace, cwd=cwd,
                           env=self.child_env, on_line=on_line)

    def run(self) -> int:
        """All selected parts in order; 0 when every one of them is ok."""
        self.write_summary()
        for name in PARTS:
            if name not in self.selected:
                continue
            part = self.parts[name]
            t0 = time.monotonic()
            end = min(t0 + self.budgets[name], self.deadline - FINISH_S)
            if end - t0 < 1:
                part.status, part.detail = "timed out", "no time left before the deadline"
                continue
            self.say(f"{name}: started (budget {end - t0:.0f} s)")
            part.status = "running"
            self.write_summary()
            try:
                getattr(self, f"part_{name}")(part, end)
            except Exception as exc:  # a bug in one part must not cost the others
                part.status, part.detail = "failed", f"{type(exc).__name__}: {exc}"
            part.seconds = round(time.monotonic() - t0, 1)
            self.say(f"{name}: {part.status} in {part.seconds:.0f} s"
                     + (f" ({part.detail})" if part.detail and part.status != "ok" else ""))
            self.write_summary()
            if name == "env" and part.status == "ok" and self.device == "cuda" \
                    and not self.env_info.get("cuda_available"):
                for later in PARTS[1:]:
                    if later in self.selected:
                        self.parts[later].status = "failed"
                        self.parts[later].detail = "no CUDA device visible to torch"
                self.write_summary()
                break
        path = self.write_summary()
        self.say(f"summary: {path}")
        wanted = [self.parts[n] for n in self.selected]
        return 0 if all(p.status == "ok" for p in wanted) else 1

    # -------------------------------------------------------------------------------- parts

    def part_env(self, part: PartResult, deadline: float) -> None:
        target = self.work / "env.json"
        outcome = self.bounded([sys.executable, "-m", "leukopipe_tools.gpu_env", "describe",
                                str(target)], deadline, self.work / "env.log")
        part.status = outcome.status
        if target.is_file():
            self.env_info = json.loads(target.read_text())
        if not outcome.ok:
            part.detail = tail(self.work / "env.log")

    def part_pipeline(self, part: PartResult, deadline: float) -> None:
        ws = self.work / "pipeline"
        copy_workflow(REPO, ws)
        overrides = pipeline_overrides(self.scale)
        atomic.write_text(ws / "gpu-check-config.yaml",
                          yaml.safe_dump(overrides, sort_keys=False))
        config = merged_config(ws, overrides)
        part.data["overrides"] = overrides
        part.data["run"] = config["run"]
        from leukopipe.workflow.config import expand_ensembles, expand_experiments

        experiments = expand_experiments(config)
        part.data["experiments"] = {n: {"group": e.group, "backbone": e.backbone,
                                        "strategy": e.strategy, "split": e.split}
                                    for n, e in experiments.items()}
        part.data["ensembles"] = sorted(expand_ensembles(config))
        if config["weights"]["pretrained"]:
            backbones = sorted({e.backbone for e in experiments.values()})
            outcome = self.bounded([sys.executable, "-m", "leukopipe_tools.gpu_env", "weights",
                                    str(ws / config["weights"]["dir"]), *backbones], deadline,
                                   self.work / "weights.log")
            if not outcome.ok:
                part.status, part.detail = outcome.status, "stand-in weights: " + tail(
                    self.work / "weights.log")
                return
        if importlib.util.find_spec("snakemake") is None:
            part.status = "failed"
            part.detail = f"snakemake is not installed for {sys.executable}"
            return
        cores = len(os.sched_getaffinity(0))
        argv = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile",
                "config.yaml", SMOKE_CONFIG, "gpu-check-config.yaml", "--keep-going",
                "--show-failed-logs", "--nocolor", "--set-threads",
                *thread_settings(cores, self.scale, len({e.split for e in experiments.values()}))]
        log = self.out / SNAKEMAKE_LOG
        log.unlink(missing_ok=True)
        sampler = GpuMemorySampler() if self.device == "cuda" else None
        if sampler:
            sampler.start()
        try:
            outcome = self.bounded(argv, deadline, log, cwd=ws, on_line=self._snakemake_line)
        finally:
            if sampler:
                sampler.stop()
        part.data["gpu_memory"] = sampler.peaks() if sampler else None
        part.data["results"] = collect_pipeline(ws / "results" / config["run"], experiments,
                                                part.data["ensembles"])
        part.status = outcome.status
        report = ws / "results" / config["run"] / "report.html"
        if outcome.ok and not report.is_file():
            part.status, part.detail = "failed", "Snakemake ended without report.html"
        elif not outcome.ok:
            part.detail = f"Snakemake exit {outcome.returncode}; see {SNAKEMAKE_LOG}"

    def _snakemake_line(self, line: str) -> None:
        if re.search(r"\d+ of \d+ steps|Error in rule|Exiting because", line):
            self.say("pipeline: " + line.strip())

    def part_resume(self, part: PartResult, deadline: float) -> None:
        target = self.work / "resume" / "result.json"
        argv = [sys.executable, "-m", "leukopipe_tools.resume_check", "--work",
                str(self.work / "resume"), "--json-out", str(target), "--device", self.device]
        for key, value in self.scale.resume.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        outcome = self.bounded(argv, deadline, self.work / "resume.log")
        if target.is_file():
            part.data = json.loads(target.read_text())
        part.status = outcome.status
        if not outcome.ok:
            part.detail = part.data.get("reason") or tail(self.work / "resume.log")

    def part_bench(self, part: PartResult, deadline: float) -> None:
        from leukopipe_tools.benchmark import random_store

        b = self.scale.bench
        stores = self.work / "bench"
        tp, tm = random_store(stores, b["train_images"], b["image_size"], "train")
        vp, vm = random_store(stores, b["val_images"], b["image_size"], "val", seed=1)
        workers = bench_workers(self.device)
        runs = [(bb, False) for bb in self.scale.bench_backbones]
        runs += [(bb, True) for bb in self.scale.compile_backbones]
        part.data = {"settings": {**b, "workers": workers}, "runs": []}
        for backbone, compiled in runs:
            tag = f"{backbone}{'-compiled' if compiled else ''}"
            target = stores / f"{tag}.json"
            entry: dict[str, Any] = {"backbone": backbone, "compile": compiled}
            part.data["runs"].append(entry)
            if deadline - time.monotonic() < MIN_RUN_S:
                entry.update(status="timed out", detail="no time left in the part's budget")
                continue
            argv = [sys.executable, "-m", "leukopipe_tools.gpu_bench", "--backbone", backbone,
                    "--device", self.device, "--batch-size", str(b["batch_size"]),
                    "--eval-batch-size", str(b["eval_batch_size"]), "--epochs", str(b["epochs"]),
                    "--steps", str(b["steps"]), "--workers", str(workers), "--amp", b["amp"],
                    "--train-pixels", str(tp), "--train-manifest", str(tm),
                    "--val-pixels", str(vp), "--val-manifest", str(vm), "--json-out", str(target)]
            if compiled:
                argv += ["--compile", "--only-ratio"]
                if self.scale.compile_backend:
                    argv += ["--compile-backend", self.scale.compile_backend]
            self.say(f"bench: {tag}")
            cap = b["compile_timeout" if compiled else "eager_timeout"]
            outcome = self.bounded(argv, deadline, stores / f"{tag}.log", cap=cap)
            entry.update(status=outcome.status, seconds=round(outcome.seconds, 1))
            if target.is_file():
                entry["result"] = json.loads(target.read_text())
            if not outcome.ok:
                entry["detail"] = tail(stores / f"{tag}.log", lines=6)
            self.write_summary()
        part.data["study_a"] = study_a_estimate(part.data["runs"])
        statuses = {e["status"] for e in part.data["runs"]}
        part.status = "ok" if statuses == {"ok"} else (
            "timed out" if "timed out" in statuses else "failed")
        if part.status != "ok":
            bad = [f"{e['backbone']}{' compiled' if e['compile'] else ''}: {e['status']}"
                   for e in part.data["runs"] if e["status"] != "ok"]
            part.detail = "; ".join(bad)


def study_a_estimate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Study A's wall time from the measured eager rates: per backbone, 50 epochs x (20,000
    training images / real-loop img/s + 1,250 validation images / the loop's validation img/s +
    one checkpoint save), summed over the Study A backbones measured (upper bound: early
    stopping only shortens it). Also each epoch's validation share (target < 10 %)."""
    from leukopipe_tools.benchmark import STUDY_A, estimate_study_a

    train, val, save, share = {}, {}, {}, {}
    for run in runs:
        rows = run.get("result", {}).get("rows", {})
        real = rows.get("real")
        if run["compile"] or not real:
            continue
        b = run["backbone"]
        extra = real.get("extra", {})
        train[b] = real["rate"]
        if extra.get("val_seconds") and extra["val_seconds"] > 0:
            val[b] = extra["val_images"] / extra["val_seconds"]
        save[b] = extra.get("save_seconds") or rows.get("save", {}).get("seconds") or 0.0
        per = {"train": 20000 / train[b], "val": 1250 / val[b] if b in val else 0.0,
               "save": save[b]}
        share[b] = per["val"] / sum(per.values()) if b in val else None
    hours = estimate_study_a(train, val, save_seconds=save) if train else {}
    measured = [b for b in STUDY_A if b in hours]
    return {"hours": {b: hours[b] for b in train}, "val_share": share,
            "study_a_backbones_measured": measured,
            "study_a_hours": sum(hours[b] for b in measured) if measured else None}


# ------------------------------------------------------------------------------ the pipeline


def copy_workflow(repo: Path, dest: Path) -> Path:
    """A fresh copy of the workflow in ``dest`` (its results and data stay there)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    for name in WORKFLOW_FILES:
        src = repo / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Snakemake's merge of config files: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def pipeline_overrides(scale: Scale, repo: Path = REPO) -> dict[str, Any]:
    """What the check merges over config.yaml + the smoke config: the scale's overrides and, in
    the tiny run, the smoke config's experiment groups it keeps, with tiny backbones."""
    over = copy.deepcopy(scale.pipeline_overrides)
    if scale.tiny_backbones:
        groups = copy.deepcopy(load_yaml(repo / SMOKE_CONFIG)["experiments"])
        if scale.tiny_groups is not None:
            groups = [g for g in groups if g["name"] in scale.tiny_groups]
        tiny = list(scale.tiny_backbones)
        for group in groups:
            mapped = [b if b in tiny else tiny[0] for b in group["backbones"]]
            group["backbones"] = list(dict.fromkeys(mapped))  # deduplicated, order kept
        over["experiments"] = groups
    return over


def merged_config(ws: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """config.yaml + smoke config + ``overrides``, validated and with every default filled, as
    the Snakefile will see it."""
    from leukopipe.workflow.config import validate

    config = deep_merge(load_yaml(ws / "config.yaml"), load_yaml(ws / SMOKE_CONFIG))
    return validate(deep_merge(config, overrides))


def thread_settings(cores: int, scale: Scale, splits: int) -> list[str]:
    """``--set-threads`` values: the data steps use the node's cores (one job each at a time),
    the per-split steps share them."""
    per_split = scale.augment_threads or max(1, cores // max(1, splits))
    return [f"download={cores}", f"merge={cores}", f"augment={per_split}",
            f"resize={per_split}"]


def bench_workers(device: str) -> int:
    """DataLoader workers of the benchmark's real loop: what ``--workers auto`` gives a job."""
    if device == "cpu":
        return 0
    from leukopipe.train.loader import MAX_AUTO_WORKERS

    return max(0, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)) - 1))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_tsv_seconds(path: Path) -> tuple[float | None, float | None]:
    """(wall seconds, max RSS MB) from a Snakemake benchmark file."""
    try:
        lines = path.read_text().splitlines()
        row = dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=False))
        return float(row["s"]), float(row["max_rss"]) if row.get("max_rss", "NA") != "NA" else None
    except (OSError, IndexError, KeyError, ValueError):
        return None, None


def collect_pipeline(results: Path, experiments: dict[str, Any],
                     ensembles: Sequence[str]) -> dict[str, Any]:
    """Per experiment: epochs, img/s, wall time, val and test metrics (what exists of them)."""
    import pandas as pd

    rows = {}
    for name in sorted(experiments):
        row: dict[str, Any] = {}
        history = results / "runs" / name / "history.parquet"
        if history.is_file():
            h = pd.read_parquet(history)
            steady = h["images_per_s"].iloc[1:] if len(h) > 1 else h["images_per_s"]
            row.update(epochs=len(h), images_per_s=float(steady.median()),
                       best_val_macro_f1=float(h["val_macro_f1"].max()))
        row["train_seconds"], row["train_max_rss_mb"] = _read_tsv_seconds(
            results / "benchmarks" / "train" / f"{name}.tsv")
        row["evaluate_seconds"], _ = _read_tsv_seconds(
            results / "benchmarks" / "evaluate" / f"{name}.tsv")
        metrics = _read_json(results / "eval" / name / "metrics.json")
        if metrics:
            row["val"] = _pick(metrics.get("val_metrics", {}))
            row["test"] = _pick(metrics.get("metrics", {}))
        tta = _read_json(results / "eval" / name / "tta_metrics.json")
        if tta:
            row["tta_test"] = _pick(tta.get("metrics", {}))
        row["gradcam"] = (results / "eval" / name / "gradcam.png").is_file()
        rows[name] = row
    ens = {}
    for name in ensembles:
        metrics = _read_json(results / "eval" / name / "metrics.json")
        ens[name] = _pick(metrics.get("metrics", {})) if metrics else None
    return {"experiments": rows, "ensembles": ens,
            "comparison": (results / "tables" / "comparison.md").is_file(),
            "report": (results / "report.html").is_file()}


def _pick(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("accuracy", "macro_f1", "roc_auc", "n")}


class GpuMemorySampler:
    """Peak GPU memory per pipeline step, sampled once a second with ``nvidia-smi``.

    The pipeline's jobs do not record GPU memory, so it is read from outside: each compute
    process is matched to its experiment by its command line (``--out-dir .../runs/<exp>`` of
    train, ``--metrics-out .../eval/<exp>/...`` of evaluate). The figure is what the driver
    reports per process (CUDA context and the caching allocator's reserve included), so it is
    above torch's max_memory_allocated. Processes that cannot be matched (other PID namespaces)
    count as unattributed; the device total is sampled too.
    """

    def __init__(self, interval: float = 1.0):
        self.smi = shutil.which("nvidia-smi")
        self.interval = interval
        self._peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        if self.smi:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def peaks(self) -> dict[str, Any]:
        if not self.smi:
            return {"note": "nvidia-smi not found: no per-step GPU memory"}
        return dict(self._peaks)

    def _query(self, what: str) -> list[list[str]]:
        out = subprocess.run([self.smi, f"--query-{what}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True)
        return [[c.strip() for c in line.split(",")] for line in out.stdout.splitlines() if line]

    def _note(self, key: str, mib: float) -> None:
        self._peaks[key] = max(self._peaks.get(key, 0.0), mib)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
                for pid, used in self._query("compute-apps=pid,used_memory"):
                    self._note(_step_of(int(pid)), float(used))
                for (used,) in self._query("gpu=memory.used"):
                    self._note("device total", float(used))
            self._stop.wait(self.interval)


def _step_of(pid: int) -> str:
    """'train <exp>' / 'evaluate <exp>' for a pipeline job's process, else 'unattributed'."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "unattributed"
    for script, flag, pattern in (("train.py", "--out-dir", r"runs/([^/]+)/?$"),
                                  ("evaluate.py", "--metrics-out", r"eval/([^/]+)/metrics")):
        if any(a.endswith(f"scripts/{script}") for a in argv) and flag in argv:
            i = argv.index(flag)
            m = re.search(pattern, argv[i + 1]) if i + 1 < len(argv) else None
            if m:
                return f"{script.removesuffix('.py')} {m.group(1)}"
    return "unattributed"


# ----------------------------------------------------------------------------- environment


def needs_python_wrapper(path: str | None = None) -> bool:
    """Whether ``python`` on PATH is missing or another interpreter/environment than ours."""
    found = shutil.which("python", path=path)
    if found is None:
        return True
    try:
        out = subprocess.run([found, "-c", "import sys; print(sys.prefix, sys.version)"],
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return True
    return out.stdout.strip() != f"{sys.prefix} {sys.version}".strip()


def write_python_wrapper(bin_dir: Path) -> Path:
    """``bin_dir/python``: a shell script that execs this interpreter. Not a symlink: a
    symlink to a venv's interpreter loses the venv (Python finds pyvenv.cfg next to the path
    it was started as)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def child_environment(bin_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of every process the check starts: unbuffered output and a ``python`` that
    is this interpreter (the pipeline's rules call ``python scripts/...``; GPU nodes often have
    only ``python3``), which has the checkout installed, so children import the same package."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    if needs_python_wrapper(env.get("PATH")):
        write_python_wrapper(bin_dir)
        env["PATH"] = os.pathsep.join(filter(None, [str(bin_dir), env.get("PATH")]))
    return env


def tail(path: Path, lines: int = 20, width: int = 300) -> str:
    """The last lines of a log, each cut to ``width`` characters (for the summary)."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return "\n".join(line[:width] for line in text)


# ------------------------------------------------------------------------------------- main


def parse_budgets(items: Sequence[str], base: dict[str, float]) -> dict[str, float]:
    """``PART=SECONDS`` items over the ``base`` budgets."""
    budgets = dict(base)
    for item in items:
        name, _, value = item.partition("=")
        if name not in base or not value:
            raise ValueError(f"--budget {item!r}: expected PART=SECONDS with PART one of "
                             f"{', '.join(BUDGETS)}")
        budgets[name] = float(value)
    return budgets


@dataclass(frozen=True)
class CheckOptions:
    """One run of the check as scripts/gpu_check.py asks for it."""

    out: Path
    device: str
    tiny: bool
    parts: Sequence[str]  # in the order of PARTS
    budgets: dict[str, float]
    work_dir: Path | None = None  # None: a new temporary folder, removed at the end
    keep_work: bool = False
    deadline: float | None = None


def run_check(opts: CheckOptions) -> int:
    """Run the selected parts; exit code 0 when every part is ok, 130 when interrupted."""
    scale = TINY if opts.tiny else FULL
    work = opts.work_dir or Path(tempfile.mkdtemp(prefix="leukopipe-gpu-check-"))
    # SIGTERM (e.g. from `timeout`) becomes an exception, so that the running part's process
    # group is ended too (it lives in a session of its own and would not hear the signal)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    check = Check(opts.out, work, opts.device, scale, opts.budgets,
                  [n for n in PARTS if n in opts.parts], deadline=opts.deadline)
    check.say(f"{scale.name} on {opts.device}; scratch {work}; out {opts.out}")
    try:
        return check.run()
    except KeyboardInterrupt:
        for part in check.parts.values():
            if part.status == "running":
                part.status, part.detail = "interrupted", "the check itself was stopped"
        check.say("interrupted: the summary holds what finished")
        check.write_summary()
        return 130
    finally:
        if opts.work_dir is None and not opts.keep_work:
            shutil.rmtree(work, ignore_errors=True)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
