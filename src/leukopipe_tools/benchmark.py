"""Throughput measurements of every stage, written as rows anyone can rerun and compare.

Data stage: the real step scripts (merge, split, augment, resize) run as subprocesses on a
synthetic C-NMC copy, so the numbers include process start-up, imports and worker spawn, exactly
as a pipeline job pays them; peak memory is the largest total PSS of a step's process tree
(workers included, shared pages split between the processes that map them), sampled every 0.5 s.
Per-core figures come from the same functions run in this process on one core (decode + hash,
resize, one augmented sample).

Training: the real loop (:func:`leukopipe.train.loop.train`, loader and device transform included)
versus the same model's pure forward + backward + optimiser step on one random batch already on
the device; their ratio says how much the input pipeline costs. Evaluation: batched inference of
:func:`leukopipe.evaluate.inference.predict_store` over a stored pixel array.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import leukopipe
from leukopipe.data.pixel_store import create_store, open_store
from leukopipe.plumbing import atomic
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.schema import defaults
from leukopipe.workflow.preprocessing import top_level
from leukopipe.workflow.step_commands import balancing_flags, step_argv, step_settings

# Where this process imports leukopipe from: step subprocesses import the same copy.
_IMPORT_ROOT = Path(leukopipe.__file__).resolve().parents[1]

# The real data: 73 training donors (47 ALL, 26 Hem) + 28 unseen donors in the labelled
# preliminary test, ~12,500 labelled 450x450 images; the cell range gives ~124 per donor.
CNMC_SUBJECTS = {"train_all_subjects": 47, "train_hem_subjects": 26,
                 "prelim_all_subjects": 13, "prelim_hem_subjects": 15}
CNMC_CELLS = (110, 138)
STUDY_A = ("resnet50", "resnet101", "efficientnet_b0", "efficientnet_b1", "efficientnet_b3")
GPU_BACKBONES = ("resnet18", "resnet50", "resnet101", "efficientnet_b0", "efficientnet_b1",
                 "efficientnet_b3")
# Study C: a ConvNeXt, an EfficientNetV2, a supervised ViT-S/16 and the self-supervised DINOv2
# ViT-S/14 (run at 224 px: a 16 x 16 patch grid), each with the pretrained tag it fetches.
STUDY_C_BACKBONES = ("convnext_tiny.fb_in22k_ft_in1k", "efficientnetv2_rw_s.ra2_in1k",
                     "vit_small_patch16_224.augreg_in21k_ft_in1k",
                     "vit_small_patch14_dinov2.lvd142m")


@dataclass
class Row:
    """One measurement: what ran, how much, how fast, at which load."""

    stage: str
    setting: str
    items: int
    seconds: float
    rate: float
    unit: str
    peak_mb: float | None = None
    load: float | None = None  # 1-minute load average when the measurement ended
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_average() -> float:
    """The 1-minute load average (how busy the machine was)."""
    return round(os.getloadavg()[0], 2)


def machine_info() -> dict[str, Any]:
    """Machine, versions and date that every benchmark table is stamped with."""
    import PIL
    import timm
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    with contextlib.suppress(ValueError, OSError):
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": mem_gb,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
    }


# --------------------------------------------------------------------------------- data stage


def synthetic_spec(fraction: float, seed: int = 0) -> Any:
    """A synthetic C-NMC of ``fraction`` x the real size (450 px, all donors, fewer cells each)."""
    from leukopipe.data.synthetic import SyntheticSpec

    if not 0 < fraction <= 1:
        raise InvalidInputError(f"fraction must be in (0, 1], got {fraction}")
    lo = max(2, round(CNMC_CELLS[0] * fraction))
    hi = max(lo, round(CNMC_CELLS[1] * fraction))
    return SyntheticSpec(seed=seed, cells_per_subject=(lo, hi), final_images=20,
                         image_size=450, **CNMC_SUBJECTS)


def _tree_memory_mb(proc: Any) -> float:
    """Proportional set size (RSS when PSS is unavailable) of a process and its descendants:
    shared pages (the memory-mapped store, shared libraries) are split, not counted twice."""
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            mem = p.memory_full_info()
            total += getattr(mem, "pss", mem.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


def run_step(argv: Sequence[str], log_path: Path, interval: float = 0.5,
             cwd: Path | None = None) -> tuple[float, float, float]:
    """Run ``python argv`` in ``cwd``; return (wall s, peak memory MB, CPU s).

    Peak memory is the largest total PSS of the step's process tree (workers included), sampled
    every ``interval`` seconds. CPU seconds (user + system, workers included) hardly depend on
    how busy the machine is, unlike wall time. Raises RuntimeError with the log's tail when the
    step fails.
    """
    import psutil

    pythonpath = os.pathsep.join(filter(None, [str(_IMPORT_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    peak = 0.0
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)
        while True:
            # wait4 (not poll) for the child's rusage: its CPU time includes its reaped workers
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            with contextlib.suppress(psutil.NoSuchProcess):
                peak = max(peak, _tree_memory_mb(ps))
            time.sleep(interval)
    seconds = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}):\n{tail}")
    return seconds, peak, cpu


def data_stage(
    raw_dir: Path,
    work_dir: Path,
    workers: Sequence[int] = (1, 2),
    image_size: int = 224,
    target_per_class: int = 10000,
    split_mode: str = "image",
    expected_size: int = 450,
    *,
    repo: Path,
) -> list[Row]:
    """merge -> split -> augment (train part) -> resize (val, test) with the real step scripts
    of the repository checkout ``repo`` (``scripts/<step>.py``), called with the rules' own
    command lines (:mod:`leukopipe.workflow.step_commands`) and the schema's default settings.

    merge and augment run once per worker count (the last run's outputs feed the next step);
    split and resize run once with the largest worker count.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    raw_json = work_dir / "raw.json"
    raw_json.write_text(json.dumps({"raw_dir": str(raw_dir)}))
    config = {"data": {**defaults("data"), "expected_image_size": expected_size},
              "split": defaults("split"),
              "augment": {**defaults("augment"), "image_size": image_size,
                          "target_per_class": target_per_class}}
    located = {"raw_dir": str(raw_dir)}  # the rules' location params
    sized = {"size": image_size}
    rows: list[Row] = []
    top = max(workers)
    for w in workers:
        index, summary = work_dir / "index.parquet", work_dir / f"summary_w{w}.json"
        argv = step_argv("merge", input={"raw": raw_json},
                         output={"index": index, "summary": summary},
                         params={**step_settings("merge", config), **located}, threads=w)
        secs, peak, cpu = run_step(argv, work_dir / f"merge_w{w}.log", cwd=repo)
        inner = json.loads(summary.read_text())["throughput"]
        rows.append(Row("merge (decode + sha256)", f"{w} worker(s)", inner["images"], secs,
                        inner["images"] / secs, "img/s", peak, load_average(),
                        f"in-step {inner['images_per_s']} img/s; CPU {cpu:.0f} s without "
                        "the forkserver workers (not the step's children)"))
    split_dir = work_dir / "splits"
    argv = step_argv("split", input={"index": work_dir / "index.parquet"},
                     output={"audit": split_dir / "audit.json",
                             **{p: split_dir / f"{p}.parquet" for p in ("train", "val", "test")}},
                     params={**step_settings("split", config), "out_dir": split_dir},
                     wildcards={"split": split_mode})
    secs, peak, cpu = run_step(argv, work_dir / "split.log", cwd=repo)
    n_index = len(pd.read_parquet(work_dir / "index.parquet", columns=["image_id"]))
    rows.append(Row("split", split_mode, n_index, secs, n_index / secs, "img/s", peak,
                    load_average(), f"CPU {cpu:.0f} s"))
    balancing = balancing_flags(top_level(config))
    for w in workers:
        stats = work_dir / f"augment_w{w}.json"
        argv = step_argv("augment", input={"train": split_dir / "train.parquet"},
                         output={"manifest": work_dir / "train_balanced.parquet",
                                 "pixels": work_dir / "train_pixels.npy", "stats": stats},
                         params={**located, "balancing": balancing}, wildcards=sized, threads=w)
        secs, peak, cpu = run_step(argv, work_dir / f"augment_w{w}.log", cwd=repo)
        st = json.loads(stats.read_text())
        n = st["generated"] + st["originals"]
        rows.append(Row("augment (materialise)", f"{w} worker(s), {image_size}px", n, secs,
                        n / secs, "img/s", peak, load_average(),
                        f"{st['generated']} generated + {st['originals']} originals; "
                        f"CPU {cpu:.0f} s; in-step {st['images_per_s']} img/s"))
    for part in ("val", "test"):
        n = len(pd.read_parquet(split_dir / f"{part}.parquet", columns=["image_id"]))
        argv = step_argv("resize", input={"manifest": split_dir / f"{part}.parquet"},
                         output={"manifest": work_dir / f"{part}.parquet",
                                 "pixels": work_dir / f"{part}_pixels.npy"},
                         params=located, wildcards=sized, threads=top)
        secs, peak, cpu = run_step(argv, work_dir / f"resize_{part}.log", cwd=repo)
        rows.append(Row(f"resize ({part})", f"{top} worker(s), {image_size}px", n, secs,
                        n / secs, "img/s", peak, load_average(), f"CPU {cpu:.0f} s"))
    return rows


def _rate(fn: Callable[[], Any], n: int, unit: str, stage: str, setting: str,
          note: str = "") -> Row:
    # per CPU second of this (single-threaded) process: hardly changed by other jobs' load
    start, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    secs, cpu = time.perf_counter() - start, time.process_time() - cpu0
    note = "; ".join(filter(None, [f"wall {n / secs:.0f} img/s", note]))
    return Row(stage, setting, n, cpu, n / cpu, unit, None, load_average(), note)


def per_core(paths: Sequence[Path], image_size: int = 224, n: int = 50) -> list[Row]:
    """Single-process, single-thread cost of the data stage's per-image work (rates and
    seconds are per CPU second, so they hold on a busy machine too): merge's inspection whole
    and in its parts (read + sha256, decode, perceptual hash), an original's decode + resize, a
    generated sample's nine transforms, and one row written into a pixel store."""
    import hashlib

    import torch
    from PIL import Image

    from leukopipe.augment.transforms import AugmentConfig, augment_one
    from leukopipe.data.imageio import load_rgb
    from leukopipe.data.merge import inspect_image
    from leukopipe.data.near_duplicates import perceptual_hash

    if not paths:
        raise InvalidInputError("per_core: no image files given")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)

    def each(fn: Callable[[Path], Any]) -> Callable[[], Any]:
        it = iter([paths[i % len(paths)] for i in range(n)])
        return lambda: fn(next(it))

    def decode(path: Path) -> Image.Image:
        with Image.open(path) as im:
            im.load()
            return im

    try:
        # once untimed: lazy imports (imagehash's DCT) and first-call set-up stay out of the rows
        perceptual_hash(decode(paths[0]))
        augment_one(load_rgb(paths[0], image_size), 0, AugmentConfig())
        rows = [_rate(each(inspect_image), n, "img/s/core", "per core",
                      "merge: read + sha256 + decode + perceptual hash")]
        rows.append(_rate(each(lambda p: hashlib.sha256(p.read_bytes()).hexdigest()), n,
                          "img/s/core", "per core", "merge part: read + sha256"))
        rows.append(_rate(each(decode), n, "img/s/core", "per core", "merge part: full decode"))
        decoded = [decode(p) for p in paths[: min(len(paths), n)]]
        it = iter([decoded[i % len(decoded)] for i in range(n)])
        rows.append(_rate(lambda: perceptual_hash(next(it)), n, "img/s/core", "per core",
                          "merge part: perceptual hash (of decoded pixels)"))
        rows.append(_rate(each(lambda p: load_rgb(p, image_size)), n, "img/s/core", "per core",
                          f"decode + resize to {image_size}px (an original)"))
        img = load_rgb(paths[0], image_size)
        cfg = AugmentConfig()
        seeds = iter(range(n))
        rows.append(_rate(lambda: augment_one(img, next(seeds), cfg), n, "img/s/core",
                          "per core", f"nine transforms on a {image_size}px image",
                          "excludes decoding its source"))
        with tempfile.TemporaryDirectory() as tmp:
            start, cpu0 = time.perf_counter(), time.process_time()
            with create_store(Path(tmp) / "w.npy", n, image_size) as store:
                for i in range(n):
                    store[i] = img
            secs, cpu = time.perf_counter() - start, time.process_time() - cpu0
        rows.append(Row("per core", f"store write: {image_size}px rows into a .npy, flushed", n,
                        cpu, n / max(cpu, 1e-9), "img/s/core", None, load_average(),
                        f"wall {secs:.3f} s (page cache, then disk)"))
    finally:
        torch.set_num_threads(previous)
    return rows


# ----------------------------------------------------------------------------------- training


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: Any) -> float | None:
    """Largest GPU memory held by tensors since the last reset (MiB); None on CPU."""
    import torch

    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def loader_rate(pixels: Path, batch_size: int, workers: int, batches: int = 50,
                device: str = "cpu") -> Row:
    """Batches/s the training DataLoader delivers from a store (no model; pinned when
    ``device`` is CUDA, as in training)."""
    import torch

    from leukopipe.train.loader import BatchDataset, EpochBatchSampler, make_loader

    n = len(open_store(pixels))
    ds = BatchDataset(pixels, np.zeros(n, dtype=np.int64))
    sampler = EpochBatchSampler(n, batch_size, shuffle=True, seed=0)
    loader = make_loader(ds, sampler, workers, torch.device(device))
    done, start, epoch = 0, None, 0
    while done < batches:
        sampler.set_epoch(epoch)
        for _ in loader:
            if start is None:  # the first batch pays worker start-up
                start = time.perf_counter()
                continue
            done += 1
            if done >= batches:
                break
        epoch += 1
    secs = time.perf_counter() - start
    pinned = ", pinned" if torch.device(device).type == "cuda" else ""
    return Row("loader", f"batch {batch_size}, {workers} worker(s), shuffled{pinned}", done, secs,
               done / secs, "batch/s", None, load_average(),
               f"= {done * batch_size / secs:.0f} img/s")


def pure_step_rate(backbone: str, image_size: int, batch_size: int, device: str = "cpu",
                   steps: int = 10, warmup: int = 2, amp: str = "bf16",
                   channels_last: bool | None = None, compile: bool = False) -> Row:
    """images/s of forward + backward + Adam step on one random batch already on the device."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from leukopipe.train.device import numerics
    from leukopipe.train.models import build_model

    dev = torch.device(device)
    cl = dev.type == "cuda" if channels_last is None else channels_last
    use_amp = dev.type == "cuda" and amp != "none"
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    _reset_peak(dev)
    with numerics(dev):  # the real loop's numerics: same kernels
        model = build_model(backbone, image_size=image_size).to(dev).train()
        if cl:
            model.to(memory_format=torch.channels_last)
        fwd = torch.compile(model) if compile else model
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.randn(batch_size, 3, image_size, image_size, device=dev)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (batch_size,), device=dev)

        def step() -> None:
            with torch.autocast(dev.type, dtype=dtype, enabled=use_amp):
                loss = F.cross_entropy(fwd(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(warmup):
            step()
        _sync(dev)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(dev)
        secs = time.perf_counter() - start
    n = steps * batch_size
    return Row("train step (pure)", _train_setting(backbone, image_size, batch_size, dev, amp, cl,
                                                   compile), n, secs, n / secs, "img/s", None,
               load_average(), "random batch on the device: fwd + bwd + Adam",
               {"peak_gpu_mb": _peak_mb(dev)})


def _train_setting(backbone: str, size: int, batch: int, dev: Any, amp: str, cl: bool,
                   compile: bool) -> str:
    bits = [backbone, f"{size}px", f"batch {batch}", dev.type]
    if dev.type == "cuda":
        bits += [amp, "channels_last" if cl else "NCHW", "compiled" if compile else "eager"]
    return ", ".join(bits)


@dataclass(frozen=True)
class RealLoop:
    """One measurement of the real training loop: the stores it reads and how it trains."""

    backbone: str
    pixels: Path
    manifest: Path
    val_pixels: Path
    val_manifest: Path
    batch_size: int
    device: str = "cpu"
    max_images: int | None = None
    epochs: int = 2
    workers: int | str = "auto"
    amp: str = "bf16"
    compile: bool = False


def real_loop_rate(loop: RealLoop) -> Row:
    """images/s of the real training loop (median training pass of epochs 2..n).

    ``extra`` holds the steady epochs' split into training pass, validation pass and (when the
    history records it) checkpoint save, and the peak GPU memory of the run.
    """
    import torch

    from leukopipe.train.loop import TrainConfig, train

    frame = pd.read_parquet(loop.manifest)
    if "store_row" not in frame.columns:
        frame["store_row"] = np.arange(len(frame), dtype=np.int64)
    if loop.max_images is not None and len(frame) > loop.max_images:
        frame = frame.sample(n=loop.max_images, random_state=0).sort_values("store_row")
    dev = torch.device(loop.device)
    _reset_peak(dev)
    with tempfile.TemporaryDirectory(prefix="leukopipe-bench-") as tmp:
        sub = Path(tmp) / "train.parquet"
        frame.to_parquet(sub)
        cfg = TrainConfig(backbone=loop.backbone, strategy="full", epochs=loop.epochs,
                          patience=loop.epochs, batch_size=loop.batch_size,
                          eval_batch_size=max(loop.batch_size, 256), workers=loop.workers,
                          amp=loop.amp, compile=loop.compile)
        result = train(cfg, sub, loop.pixels, loop.val_manifest, loop.val_pixels,
                       Path(tmp) / "out", Path(tmp) / "state", device=loop.device)
        history = pd.read_parquet(result["history"])
    # epoch 1 pays loader start-up, cuDNN autotuning and compilation
    history = history.iloc[1:] if len(history) > 1 else history
    steady = history["images_per_s"]
    rate = float(np.median(steady))
    n = len(frame)
    size = int(open_store(loop.pixels).shape[1])
    extra = {"peak_gpu_mb": _peak_mb(dev), "epochs": loop.epochs,
             "val_images": len(pd.read_parquet(loop.val_manifest, columns=["label"])),
             **epoch_split(history, n)}
    setting = _train_setting(loop.backbone, size, loop.batch_size, dev, loop.amp,
                             dev.type == "cuda", loop.compile)
    return Row("train loop (real)", setting, n * len(steady), n * len(steady) / rate, rate,
               "img/s", None, load_average(), f"{n} images/epoch, loader workers "
               f"{loop.workers}, median of epochs 2..{loop.epochs}", extra)


# history columns of the epoch split, where the training loop records them
SPLIT_COLUMNS = ("train_seconds", "val_seconds", "save_seconds")


def epoch_split(history: pd.DataFrame, n_train: int) -> dict[str, Any]:
    """Median seconds of an epoch's training pass, validation pass and checkpoint save.

    Read from the history where it records them; otherwise the training pass is derived from
    its images/s and the validation pass is the rest of the epoch's ``seconds`` (which do not
    include the save: ``save_seconds`` is then None and is measured apart, see
    :func:`checkpoint_save_seconds`).
    """
    if all(c in history.columns for c in SPLIT_COLUMNS[:2]):
        out = {c: float(history[c].median()) for c in SPLIT_COLUMNS if c in history.columns}
        out.setdefault("save_seconds", None)
        return {**out, "split_source": "history"}
    train_s = n_train / history["images_per_s"]
    return {"train_seconds": float(train_s.median()),
            "val_seconds": float((history["seconds"] - train_s).median()),
            "save_seconds": None, "split_source": "derived from seconds and images_per_s"}


def checkpoint_save_seconds(backbone: str, out_dir: Path, device: str = "cpu",
                            repeats: int = 3) -> Row:
    """Seconds of the training loop's per-epoch resume-state save for ``backbone`` (model and
    Adam state from the device, a CPU copy of the best weights, atomic write): the median of
    ``repeats`` saves of the loop's own state layout."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from leukopipe.train.checkpoint_saver import _cpu_state_dict, _save
    from leukopipe.train.models import build_model

    dev = torch.device(device)
    model = build_model(backbone).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(2, 3, 64, 64, device=dev)
    F.cross_entropy(model(x), torch.tensor([0, 1], device=dev)).backward()
    opt.step()  # Adam's moments exist from the first step on, as in every saved epoch
    out_dir.mkdir(parents=True, exist_ok=True)
    times = []
    for _ in range(repeats):
        _sync(dev)
        start = time.perf_counter()
        _save({"model": model.state_dict(), "optimizer": opt.state_dict(),
               "best_state": _cpu_state_dict(model)}, out_dir / "state.pt")
        times.append(time.perf_counter() - start)
    size_mb = (out_dir / "state.pt").stat().st_size / 2**20
    secs = float(np.median(times))
    return Row("checkpoint save", f"{backbone}, {dev.type}", 1, secs, 1 / secs, "saves/s", None,
               load_average(), f"{size_mb:.0f} MB per save, median of {repeats}")


def step_breakdown(backbone: str, pixels: Path, batch_size: int, device: str = "cpu",
                   workers: int = 0, amp: str = "bf16", steps: int = 20) -> Row:
    """Where a training step's time goes: waiting for the loader versus compute.

    The training loop's own loader, device transform and numerics, one step at a time with the
    device synchronised after each, so that ``wait`` (blocked in the loader) and ``compute``
    (transform + forward + backward + Adam) add up to the step. The first batches (worker
    start-up, cuDNN autotuning) are not counted.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    from leukopipe.train.device import numerics
    from leukopipe.train.loader import BatchDataset, DeviceTransform, EpochBatchSampler, make_loader
    from leukopipe.train.models import build_model, normalisation

    dev = torch.device(device)
    n = len(open_store(pixels))
    warmup = 2
    sampler = EpochBatchSampler(n, batch_size, shuffle=True, seed=0,
                                drop_last=n % batch_size == 1)
    loader = make_loader(BatchDataset(pixels, np.arange(n) % 2), sampler, workers, dev)
    cl = dev.type == "cuda"
    use_amp = cl and amp != "none"
    waits, computes = [], []
    with numerics(dev):
        model = build_model(backbone, image_size=int(open_store(pixels).shape[1])).to(dev).train()
        if cl:
            model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        transform = DeviceTransform(*normalisation(backbone), dev, cl)
        epoch = 0
        while len(waits) < steps + warmup:
            sampler.set_epoch(epoch)
            it = iter(loader)
            while len(waits) < steps + warmup:
                t0 = time.perf_counter()
                try:
                    images, labels = next(it)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                x, y = transform(images, labels, augment=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _sync(dev)
                waits.append(t1 - t0)
                computes.append(time.perf_counter() - t1)
            epoch += 1
    wait, compute = np.mean(waits[warmup:]) * 1e3, np.mean(computes[warmup:]) * 1e3
    secs = float(np.sum(waits[warmup:]) + np.sum(computes[warmup:]))
    return Row("train step breakdown", f"{backbone}, batch {batch_size}, {workers} worker(s), "
               f"{dev.type}", steps * batch_size, secs, steps * batch_size / secs, "img/s", None,
               load_average(), f"loader wait {wait:.1f} ms + compute {compute:.1f} ms per step",
               {"wait_ms": round(float(wait), 2), "compute_ms": round(float(compute), 2),
                "wait_fraction": round(float(wait / (wait + compute)), 3)})


def inference_rate(backbone: str, pixels: Path, batch_size: int, device: str = "cpu",
                   max_images: int | None = None) -> Row:
    """images/s of :func:`~leukopipe.evaluate.inference.predict_store` (random weights)."""
    import torch

    from leukopipe.evaluate.inference import Classifier
    from leukopipe.train.models import build_model, normalisation

    store = open_store(pixels)
    if max_images is not None:
        store = store[:max_images]
    dev = torch.device(device)
    model = build_model(backbone, image_size=int(store.shape[1])).to(dev).eval()
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    mean, std = normalisation(backbone)
    shape = (1, 3, 1, 1)
    clf = Classifier(model, {"image_size": store.shape[1]}, dev,
                     torch.tensor(mean, device=dev).view(shape) * 255.0,
                     torch.tensor(std, device=dev).view(shape) * 255.0)
    from leukopipe.evaluate.inference import predict_store

    predict_store(clf, store[: min(len(store), batch_size)], batch_size)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    predict_store(clf, store, batch_size)
    _sync(dev)
    secs = time.perf_counter() - start
    return Row("evaluate (batched inference)",
               f"{backbone}, {store.shape[1]}px, batch {batch_size}, {dev.type}", len(store), secs,
               len(store) / secs, "img/s", None, load_average())


def estimate_study_a(train_rates: dict[str, float], eval_rates: dict[str, float],
                     n_train: int = 20000, n_val: int = 1250, epochs: int = 50,
                     save_seconds: dict[str, float] | None = None) -> dict[str, float]:
    """Hours per backbone (and total) for Study A at most ``epochs`` epochs (early stopping
    only shortens it): each epoch = one training pass + one validation pass (+ the resume-state
    save, where ``save_seconds`` gives it)."""
    hours = {}
    for b, rate in train_rates.items():
        per_epoch = n_train / rate + n_val / eval_rates.get(b, rate * 3)
        per_epoch += (save_seconds or {}).get(b, 0.0)
        hours[b] = epochs * per_epoch / 3600
    hours["total"] = sum(hours.values())
    return hours


# ----------------------------------------------------------------------------------- output


def markdown(rows: Sequence[Row], info: dict[str, Any], command: str, title: str) -> str:
    """A section for docs/benchmarks.md: stamp (machine, versions, command, date) + table."""
    gpu = info.get("gpu") or "none"
    out = [
        f"### {title}",
        "",
        f"- date: {info['date']}; host {info['host']}; load average at start "
        f"{info['load_average']}",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB RAM, GPU: {gpu}",
        f"- versions: Python {info['python']}, torch {info['torch']}, timm {info['timm']}, "
        f"numpy {info['numpy']}, Pillow {info['pillow']}",
        f"- command: `{command}`",
        "",
        "| stage | setting | items | seconds | rate | peak PSS (MB) | load | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        peak = f"{r.peak_mb:.0f}" if r.peak_mb is not None else ""
        load = f"{r.load:.2f}" if r.load is not None else ""
        out.append(f"| {r.stage} | {r.setting} | {r.items} | {r.seconds:.2f} | "
                   f"{r.rate:.1f} {r.unit} | {peak} | {load} | {r.note} |")
    return "\n".join(out) + "\n"


def rows_json(rows: Sequence[Row], info: dict[str, Any], command: str) -> dict[str, Any]:
    """The same measurements as plain data."""
    return {"machine": info, "command": command, "rows": [asdict(r) for r in rows]}


def random_store(out_dir: Path, n: int, size: int, name: str, seed: int = 0) -> tuple[Path, Path]:
    """A store of random pixels + manifest (speed does not depend on the pixel values), so
    training and inference can be measured without running the data stage first."""
    from leukopipe.plumbing.atomic import write_parquet

    out_dir.mkdir(parents=True, exist_ok=True)
    pixels, manifest = out_dir / f"{name}_pixels.npy", out_dir / f"{name}.parquet"
    if pixels.is_file() and manifest.is_file():
        arr = open_store(pixels)
        if arr.shape == (n, size, size, 3):
            return pixels, manifest
    rng = np.random.default_rng(seed)
    with create_store(pixels, n, size) as store:
        for start in range(0, n, 256):
            stop = min(n, start + 256)
            store[start:stop] = rng.integers(0, 256, (stop - start, size, size, 3), dtype=np.uint8)
    labels = np.arange(n) % 2
    write_parquet(manifest, pd.DataFrame({"image_id": [f"r{i}" for i in range(n)],
                                          "label": labels.astype(np.int64),
                                          "store_row": np.arange(n, dtype=np.int64)}))
    return pixels, manifest


# ------------------------------------------------------------------------------ the whole run

STAGES = ("data", "percore", "loader", "train", "eval")
# the log lines keep the name they had when this logic lived in scripts/benchmark.py
log = logging.getLogger("benchmark")


@dataclass(frozen=True)
class BenchmarkRun:
    """What scripts/benchmark.py measures: one field per command-line option (the script's
    parser holds their defaults and help), plus the command as typed and the measured checkout."""

    stages: str
    raw_dir: Path | None
    fraction: float
    work_dir: Path
    workers: list[int]
    image_size: int
    target_per_class: int | None
    device: str
    backbones: list[str]
    train_size: int | None
    batch_size: int
    eval_batch_sizes: list[int]
    train_images: int
    steps: int
    loader_workers: list[int]
    amp: str
    compile: str
    append: Path | None
    json_out: Path | None
    title: str | None
    command: str
    repo: Path


def _stage_list(text: str) -> list[str]:
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise InvalidInputError(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    return stages


def _data_rows(run: BenchmarkRun, stages: list[str]) -> list[Row]:
    """The data-stage and per-core rows, on --raw-dir or a generated synthetic copy."""
    rows: list[Row] = []
    raw = run.raw_dir
    if ("data" in stages or "percore" in stages) and raw is None:
        from leukopipe.data.synthetic import generate

        raw = run.work_dir / f"raw-{run.fraction:g}"
        log.info("generating a synthetic C-NMC at %g x size in %s", run.fraction, raw)
        generate(raw, synthetic_spec(run.fraction), workers=max(run.workers))
    if "data" in stages:
        target = run.target_per_class
        if target is None:
            target = 10000 if run.raw_dir else max(10, round(10000 * run.fraction))
        rows += data_stage(raw, run.work_dir / "data", run.workers, run.image_size, target,
                           repo=run.repo)
    if "percore" in stages:
        rows += per_core(sorted(raw.rglob("*.bmp"))[:200], run.image_size)
    return rows


def _model_rows(run: BenchmarkRun, stages: list[str]
                ) -> tuple[list[Row], dict[str, float], dict[str, float]]:
    """Loader, training and evaluation rows on random stores; the fastest training and
    evaluation rate per backbone."""
    rows: list[Row] = []
    train_rates: dict[str, float] = {}
    eval_rates: dict[str, float] = {}
    if not {"loader", "train", "eval"} & set(stages):
        return rows, train_rates, eval_rates
    size = run.train_size or run.image_size
    stores = run.work_dir / f"stores-{size}"
    n_val = max(64, run.train_images // 4)
    pixels, manifest = random_store(stores, run.train_images, size, "train")
    vpix, vman = random_store(stores, n_val, size, "val", seed=1)
    if "loader" in stages:
        for w in run.loader_workers:
            rows.append(loader_rate(pixels, run.batch_size, w, device=run.device))
    compiles = {"off": [False], "on": [True], "both": [False, True]}[run.compile]
    for backbone in run.backbones:
        if "train" in stages:
            for comp in compiles:
                real = real_loop_rate(RealLoop(backbone, pixels, manifest, vpix, vman,
                                               run.batch_size, run.device,
                                               workers=run.loader_workers[-1], amp=run.amp,
                                               compile=comp))
                pure = pure_step_rate(backbone, size, run.batch_size, run.device,
                                      steps=run.steps, amp=run.amp, compile=comp)
                real.note += f"; ratio real/pure = {real.rate / pure.rate:.2f}"
                real.extra["ratio"] = round(real.rate / pure.rate, 3)
                rows += [real, pure]
                train_rates[backbone] = max(train_rates.get(backbone, 0.0), real.rate)
        if "eval" in stages:
            for bs in run.eval_batch_sizes:
                row = inference_rate(backbone, vpix, bs, run.device)
                rows.append(row)
                eval_rates[backbone] = max(eval_rates.get(backbone, 0.0), row.rate)
        log.info("%s done", backbone)
    return rows, train_rates, eval_rates


def study_a_line(train_rates: dict[str, float], eval_rates: dict[str, float]) -> str:
    """The estimated wall time at 50 epochs per measured backbone (and Study A's sum)."""
    hours = estimate_study_a(train_rates, eval_rates)
    study_a = [b for b in STUDY_A if b in train_rates]
    return ("\nEstimated wall time at 50 epochs (upper bound: early stopping only "
            "shortens it), 20,000 training + 1,250 validation images per epoch, fastest "
            "measured setting per backbone: "
            + ", ".join(f"{b} {h:.2f} h" for b, h in hours.items() if b != "total")
            + (f"; Study A ({len(study_a)}/5 backbones measured) "
               f"{sum(hours[b] for b in study_a):.2f} h" if study_a else "") + "\n")


def run_benchmark(run: BenchmarkRun) -> int:
    """Measure the chosen stages, print the stamped markdown section, append it to
    ``run.append`` and write the rows as JSON to ``run.json_out`` where given; exit code 0."""
    stages = _stage_list(run.stages)
    info = machine_info()
    run.work_dir.mkdir(parents=True, exist_ok=True)
    rows = _data_rows(run, stages)
    model_rows, train_rates, eval_rates = _model_rows(run, stages)
    rows += model_rows
    title = run.title or f"{', '.join(stages)} on {info['host']}"
    section = markdown(rows, info, run.command, title)
    if train_rates:
        section += study_a_line(train_rates, eval_rates)
    print(section)
    if run.append:
        with open(run.append, "a") as fh:
            fh.write("\n" + section)
    if run.json_out:
        atomic.write_json(run.json_out, rows_json(rows, info, run.command))
    return 0
