"""Offline class-balanced augmentation: the plan (which sample comes from where, with which seed)
and its materialisation into the uint8 pixel store.

The plan is pure bookkeeping (no pixels), so it is cheap, reviewable and deterministic. Every
generated row carries its own ``aug_seed``; its pixels depend on nothing else (not on worker
count, chunking or order), and :func:`regenerate` rebuilds any of them from the manifest alone.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leukopipe.data.cnmc_names import DISPLAY_NAMES
from leukopipe.data.imageio import load_rgb
from leukopipe.data.pixel_store import create_store
from leukopipe.plumbing.atomic import write_json, write_parquet
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.interrupt import stop_on_signals
from leukopipe.plumbing.progress import Progress
from leukopipe.plumbing.readers import read_parquet
from leukopipe.plumbing.workers import run_pool

if TYPE_CHECKING:
    from leukopipe.augment.transforms import AugmentConfig

# torch (through leukopipe.augment.transforms) is imported only where samples are augmented: the
# resize step's 'spawn' workers re-import this module, and importing torch in each of them
# cost ~2-3 s and ~350 MB per worker for nothing (docs/benchmarks.md).

TRAIN_COLUMNS = (
    "image_id", "path", "subject", "label", "class_name", "subset", "width", "height", "sha256",
)
PLAN_COLUMNS = ("generated", "source_image_id", "aug_seed", "aug_params")

# Distinct first spawn-key words keep the permutation stream and the per-sample seeds apart.
_PERMUTATION_KEY = 0
_SAMPLE_KEY = 1


def _sample_seed(seed: int, label: int, k: int) -> int:
    """Non-negative int64 seed of generated sample k of class ``label``."""
    state = np.random.SeedSequence(seed, spawn_key=(_SAMPLE_KEY, label, k)).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0] & np.uint64(0x7FFF_FFFF_FFFF_FFFF))


def _originals(train: pd.DataFrame, fn: str) -> pd.DataFrame:
    """The checked training manifest as plan rows: every original once, in input order."""
    missing = [c for c in TRAIN_COLUMNS if c not in train.columns]
    if missing:
        raise InvalidInputError(f"{fn}: training manifest lacks column(s) {missing}")
    clash = [c for c in (*PLAN_COLUMNS, "store_row") if c in train.columns]
    if clash:
        raise InvalidInputError(
            f"{fn}: input already has plan column(s) {clash}; pass the training split "
            "manifest, not an augmented one"
        )
    labels = set(pd.unique(train["label"]).tolist())
    if not labels <= set(range(len(DISPLAY_NAMES))):
        raise InvalidInputError(
            f"{fn}: labels must be 0 (Hem) or 1 (ALL); found {sorted(labels, key=str)}"
        )
    dup = train["image_id"][train["image_id"].duplicated()]
    if len(dup):
        raise InvalidInputError(
            f"{fn}: image_id must be unique; duplicated: {dup.head(5).tolist()} "
            "(rerun the merge/split steps)"
        )
    originals = train.loc[:, list(train.columns)].reset_index(drop=True).copy()
    originals["generated"] = False
    originals["source_image_id"] = originals["image_id"].astype(str)
    originals["aug_seed"] = np.int64(-1)
    originals["aug_params"] = ""
    return originals


def plan_originals(train: pd.DataFrame) -> pd.DataFrame:
    """No offline augmentation (a group's ``augment: none``): the training part as it is, every
    original once, no generated rows, the classes as many as the split gives them.

    The same columns as :func:`plan_balanced`, so the store and training read it alike.
    """
    plan = _originals(train, "plan_originals")
    for label, name in enumerate(DISPLAY_NAMES):
        if not (plan["label"] == label).any():
            raise InvalidInputError(
                f"plan_originals: class {name} (label {label}) has no training images: check "
                "the split."
            )
    return plan


def plan_balanced(train: pd.DataFrame, target_per_class: int, seed: int) -> pd.DataFrame:
    """Originals first (input order), then per class (Hem, ALL) target - n_c generated rows.

    Sources cycle through a seeded permutation of the class's originals (sorted by image_id, so
    the plan does not depend on the input's row order), which uses each original floor or ceil
    of (target - n_c) / n_c times.
    """
    originals = _originals(train, "plan_balanced")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"plan_balanced: seed must be a non-negative integer, got {seed!r}")
    if isinstance(target_per_class, bool) or not isinstance(target_per_class, int | np.integer):
        raise ValueError(f"target_per_class must be an integer, got {target_per_class!r}")

    parts = [originals]
    for label, name in enumerate(DISPLAY_NAMES):
        members = originals[originals["label"] == label]
        n_c = len(members)
        if n_c == 0:
            raise InvalidInputError(
                f"plan_balanced: class {name} (label {label}) has no training images; "
                "augmentation cannot create a class from nothing: check the split."
            )
        if target_per_class < n_c:
            raise InvalidInputError(
                f"plan_balanced: class {name} (label {label}) already has {n_c} original training "
                f"images, more than target_per_class={target_per_class}; undersampling is not "
                f"done: set augment.target_per_class to at least {n_c}."
            )
        n_gen = int(target_per_class - n_c)
        if n_gen == 0:
            continue
        ordered = members.sort_values("image_id", kind="mergesort")
        perm_seq = np.random.SeedSequence(seed, spawn_key=(_PERMUTATION_KEY, label))
        rng = np.random.default_rng(perm_seq)
        perm = rng.permutation(n_c)
        k = np.arange(n_gen)
        gen = ordered.iloc[perm[k % n_c]].copy()
        gen["generated"] = True
        gen["source_image_id"] = gen["image_id"].astype(str).to_numpy()
        gen["image_id"] = [
            f"{src}#aug{i}" for src, i in zip(gen["source_image_id"], k, strict=True)
        ]
        gen["aug_seed"] = np.array([_sample_seed(int(seed), label, int(i)) for i in k],
                                   dtype=np.int64)
        gen["aug_params"] = ""
        parts.append(gen)
    plan = pd.concat(parts, ignore_index=True)
    plan["generated"] = plan["generated"].astype(bool)
    plan["aug_seed"] = plan["aug_seed"].astype(np.int64)
    return plan


# ----------------------------------------------------------------------------- materialisation
# A task is one source image (decoded once) plus the store rows it feeds: (path, the sha256 the
# index recorded for it, [(row, aug_seed)]) with aug_seed -1 for "the resized original itself".
_Task = tuple[str, str, list[tuple[int, int]]]

_worker_store: np.ndarray | None = None
_worker_size = 0
_worker_cfg: AugmentConfig | None = None


def _init_worker(store_file: str, size: int, cfg: dict[str, Any] | None) -> None:
    global _worker_store, _worker_size, _worker_cfg
    _worker_store = np.load(store_file, mmap_mode="r+")
    _worker_size = size
    _worker_cfg = None
    if cfg is not None:
        import torch

        from leukopipe.augment.transforms import AugmentConfig

        # One intra-op thread per worker: many small images, parallel across processes.
        torch.set_num_threads(1)
        _worker_cfg = AugmentConfig.from_dict(cfg)


def _run_chunk(chunk: Sequence[_Task]) -> list[tuple[int, str]]:
    """Fill the store rows of ``chunk``; return (row, params JSON or "") for each."""
    assert _worker_store is not None
    done: list[tuple[int, str]] = []
    for path, sha256, rows in chunk:
        # the pixels must be those the index hashed: a raw file changed since is an error
        img = load_rgb(path, _worker_size, sha256=sha256)
        for row, aug_seed in rows:
            if aug_seed < 0:
                _worker_store[row] = img
                done.append((row, ""))
            else:
                assert _worker_cfg is not None
                from leukopipe.augment.transforms import augment_one

                out, params = augment_one(img, aug_seed, _worker_cfg)
                _worker_store[row] = out
                done.append((row, json.dumps(params, separators=(",", ":"))))
    # No per-chunk msync: the rows are in the shared page cache already, and the parent's
    # flush before the atomic rename writes back every dirty page of the file.
    return done


def _make_tasks(paths: Iterable[str], sha256s: Iterable[str], seeds: Iterable[int]) -> list[_Task]:
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for row, (path, sha256, seed) in enumerate(zip(paths, sha256s, seeds, strict=True)):
        groups.setdefault((path, sha256), []).append((row, int(seed)))
    return [(path, sha256, rows) for (path, sha256), rows in groups.items()]


def _chunk(tasks: list[_Task], workers: int) -> list[list[_Task]]:
    # Several chunks per worker balance the load; each keeps its source images whole.
    total = sum(len(rows) for _, _, rows in tasks)
    per_chunk = int(np.clip(total // max(1, workers * 16), 8, 256))
    chunks: list[list[_Task]] = []
    current: list[_Task] = []
    count = 0
    for task in tasks:
        current.append(task)
        count += len(task[2])
        if count >= per_chunk:
            chunks.append(current)
            current, count = [], 0
    if current:
        chunks.append(current)
    return chunks


def _fill_store(
    df: pd.DataFrame,
    seeds: Sequence[int],
    size: int,
    cfg: AugmentConfig | None,
    store_path: str | os.PathLike[str],
    workers: int,
    progress: bool,
    desc: str,
    finish: Callable[[list[str]], pd.DataFrame],
    raw_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Write row i of the store from (df.path[i], seeds[i]); then ``finish(params JSON of each
    row)``, which builds (and writes) the manifest, before the store gets its name: a failing
    ``finish`` removes the store, so a store never stands without its manifest. Returns what
    ``finish`` returned.

    On SIGTERM/SIGUSR1 it stops the workers, deletes the half-written store and raises
    StepInterrupted (the step exits 128 + signal).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    n = len(df)
    params_json = [""] * n
    tasks = _make_tasks(_source_paths(df, raw_dir), [str(h) for h in df["sha256"]], seeds)
    chunks = _chunk(tasks, workers)
    cfg_dict = cfg.to_dict() if cfg is not None else None
    # log lines, not a terminal bar: the rule's log is where users look
    bar = Progress(n, f"{desc} {Path(store_path).name}") if progress else None

    def record(done: list[tuple[int, str]]) -> None:
        for row, pj in done:
            params_json[row] = pj
        if bar is not None:
            bar.update(len(done))

    with stop_on_signals() as stop, create_store(store_path, n, size) as store:
        if n == 0:
            if bar is not None:
                bar.close()
            return finish(params_json)
        store_file = str(store.filename)
        if workers == 1:
            torch = sys.modules.get("torch") if cfg is None else _import_torch()
            previous_threads = torch.get_num_threads() if torch is not None else None
            try:
                _init_worker(store_file, size, cfg_dict)
                for chunk in chunks:
                    stop.check()
                    record(_run_chunk(chunk))
            finally:
                _reset_worker()
                if torch is not None and previous_threads is not None:
                    torch.set_num_threads(previous_threads)
        else:
            # 'spawn': forking a process that has already started torch's thread pools can hang.
            run_pool(
                _run_chunk, chunks, workers, lambda _i, done: record(done),
                what=f"writing {store_path}", context="spawn", initializer=_init_worker,
                initargs=(store_file, size, cfg_dict), stop=stop,
                writes_to=Path(store_path).parent,
            )
        if bar is not None:
            bar.close()
        return finish(params_json)


def _import_torch() -> Any:
    import torch

    return torch


def _reset_worker() -> None:
    global _worker_store, _worker_cfg
    if _worker_store is not None:
        _worker_store.flush()
    _worker_store = None
    _worker_cfg = None


def _source_paths(df: pd.DataFrame, raw_dir: str | os.PathLike[str] | None) -> list[str]:
    """Image files of a manifest: its ``path`` column is relative to the raw folder, which is
    given at run time (the data are known by content, so the folder may move)."""
    root = Path(raw_dir) if raw_dir is not None else None
    return [str(root / p) if root is not None else str(p) for p in df["path"]]


def _check_paths_column(df: pd.DataFrame, fn: str) -> None:
    missing = [c for c in ("path", "sha256") if c not in df.columns]
    if missing:
        raise InvalidInputError(
            f"{fn}: manifest lacks the column(s) {missing} (each image's path and the content "
            "hash the index recorded for it, which is checked before its pixels are stored)"
        )
    for column, what in (("path", "image path"), ("sha256", "content hash")):
        bad = df[column].isna()
        if bad.any():
            raise InvalidInputError(
                f"{fn}: {int(bad.sum())} row(s) have no {what} (e.g. row {bad.idxmax()})"
            )


def materialise(
    plan: pd.DataFrame,
    size: int,
    cfg: AugmentConfig | None,
    store_path: str | os.PathLike[str],
    workers: int = 1,
    progress: bool = False,
    raw_dir: str | os.PathLike[str] | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Write originals and augmented samples into the store in plan order.

    Returns the plan with ``aug_params`` (JSON of each generated row's params, "" for
    originals) and ``store_row`` filled; with ``manifest_path`` it is also written there
    (atomically), before the store is published, so the two appear together or not at all.
    Generated pixels are always drawn from ``aug_seed``;
    a plan without generated rows (:func:`plan_originals`) needs no ``cfg``.
    Each source file must still have the ``sha256`` the index recorded (ChangedImageError).
    With ``workers`` > 1 the work runs in 'spawn' processes, which re-import the calling
    script: call this from under ``if __name__ == "__main__":``.
    """
    missing = [c for c in ("path", "generated", "aug_seed") if c not in plan.columns]
    if missing:
        raise ValueError(
            f"materialise: plan lacks column(s) {missing}; build it with plan_balanced"
        )
    _check_paths_column(plan, "materialise")
    generated = plan["generated"].astype(bool).to_numpy()
    seeds = plan["aug_seed"].astype(np.int64).to_numpy()
    if (seeds[generated] < 0).any():
        raise ValueError("materialise: generated rows need a non-negative aug_seed")
    if cfg is None and generated.any():
        raise ValueError("materialise: generated rows need the transforms' settings (cfg)")
    seeds = np.where(generated, seeds, -1)

    def finish(params_json: list[str]) -> pd.DataFrame:
        out = plan.reset_index(drop=True).copy()
        out["aug_params"] = params_json
        out["store_row"] = np.arange(len(out), dtype=np.int64)
        return _written(out, manifest_path)

    return _fill_store(
        plan, seeds.tolist(), size, cfg, store_path, workers, progress, desc="augment",
        finish=finish, raw_dir=raw_dir,
    )


def _written(manifest: pd.DataFrame, path: str | os.PathLike[str] | None) -> pd.DataFrame:
    if path is not None:
        write_parquet(path, manifest)
    return manifest


def materialise_plain(
    df: pd.DataFrame,
    size: int,
    store_path: str | os.PathLike[str],
    workers: int = 1,
    progress: bool = False,
    raw_dir: str | os.PathLike[str] | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Resize-only store for validation/test (never augmented); returns df plus ``store_row``
    (with ``manifest_path`` also written there before the store is published, as materialise).

    Each file must still have the ``sha256`` the index recorded (ChangedImageError).
    """
    _check_paths_column(df, "materialise_plain")

    def finish(_params_json: list[str]) -> pd.DataFrame:
        out = df.reset_index(drop=True).copy()
        out["store_row"] = np.arange(len(out), dtype=np.int64)
        return _written(out, manifest_path)

    return _fill_store(
        df, [-1] * len(df), size, None, store_path, workers, progress, desc="resize",
        finish=finish, raw_dir=raw_dir,
    )


def regenerate(
    row: pd.Series, size: int, cfg: AugmentConfig, raw_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Rebuild one manifest row's pixels from its source file (bit-for-bit on the same stack).

    Uses the recorded ``aug_params`` when present, else draws them again from ``aug_seed``;
    an original row gives the resized source image.
    """
    from leukopipe.augment.transforms import apply_params, augment_one

    img = load_rgb(Path(raw_dir) / row["path"] if raw_dir is not None else row["path"], size)
    if not bool(row["generated"]):
        return img
    recorded = row.get("aug_params", "")
    if isinstance(recorded, str) and recorded:
        return apply_params(img, json.loads(recorded), cfg)
    return augment_one(img, int(row["aug_seed"]), cfg)[0]


@dataclass(frozen=True)
class AugmentRequest:
    """What the augment step is asked for (the script's flags, by the same names).

    ``target_per_class`` None: no balancing, the store holds the resized originals; otherwise
    ``seed`` and ``transforms_json`` (the nine transforms' parameters, JSON) are needed.
    """

    train_manifest: Path
    raw_dir: Path
    image_size: int
    target_per_class: int | None
    manifest_out: Path
    pixels_out: Path
    seed: int | None = None
    transforms_json: str | None = None
    workers: int = 1
    stats_out: Path | None = None


def augment_step(req: AugmentRequest) -> None:
    """The augment step: plan the training set, materialise its store and manifest, write the
    optional stats (counts and throughput) and log a summary line."""
    train = read_parquet(req.train_manifest)
    if req.target_per_class is None:
        cfg = None
        plan = plan_originals(train)
    else:
        if req.seed is None or req.transforms_json is None:
            raise ValueError("augment_step: balancing needs seed and transforms_json")
        from leukopipe.augment.transforms import AugmentConfig

        cfg = AugmentConfig.from_dict(json.loads(req.transforms_json))
        plan = plan_balanced(train, req.target_per_class, req.seed)
    start = time.perf_counter()
    manifest = materialise(
        plan,
        req.image_size,
        cfg,
        req.pixels_out,
        workers=req.workers,
        progress=True,
        raw_dir=req.raw_dir,
        # written before the store is published: a store never stands without its manifest
        manifest_path=req.manifest_out,
    )
    seconds = time.perf_counter() - start
    n_gen = int(manifest["generated"].sum())
    stats = {
        "per_class": {k: int(v) for k, v in manifest["class_name"].value_counts().items()},
        "generated": n_gen,
        "originals": len(manifest) - n_gen,
        "seconds": round(seconds, 3),
        "images_per_s": round(len(manifest) / seconds, 1) if seconds else None,
        "workers": req.workers,
    }
    if req.stats_out:
        write_json(req.stats_out, stats)
    logging.getLogger("augment").info(
        "training set: %s (%d generated) in %.1f s", stats["per_class"], n_gen, seconds
    )


def resize_step(
    manifest: Path,
    raw_dir: Path,
    image_size: int,
    workers: int,
    manifest_out: Path,
    pixels_out: Path,
) -> None:
    """The resize step: a validation or test manifest's resized store and its manifest copy
    (with ``store_row``), then a summary log line."""
    out = materialise_plain(
        read_parquet(manifest), image_size, pixels_out, workers=workers, raw_dir=raw_dir,
        progress=True,
        manifest_path=manifest_out,
    )
    # the log line keeps the name it had when the script logged it
    logging.getLogger("resize").info(
        "stored %d images at %d px in %s", len(out), image_size, pixels_out
    )
