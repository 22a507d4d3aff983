"""Merge step: one index of every labelled C-NMC image, checked, content-hashed (sha256) and
perceptually hashed (near-duplicates, compared across splits by the split audit).

Training folds and the labelled preliminary test are indexed; the unlabelled final-phase
images are only counted. Every image is decoded once to prove it is readable, RGB and of the
expected size; problems are collected and reported together, each naming its file.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from PIL import Image

from leukopipe.data.cnmc_names import CLASS_NAMES, parse_name
from leukopipe.data.debris import find_debris, is_debris
from leukopipe.data.imageio import image_problem
from leukopipe.data.near_duplicates import perceptual_hash
from leukopipe.data.raw_layout import RawDataError, RawLayout, locate
from leukopipe.plumbing import atomic
from leukopipe.plumbing.errors import MissingInputError
from leukopipe.plumbing.progress import Progress
from leukopipe.plumbing.provenance import provenance
from leukopipe.plumbing.workers import run_pool

INDEX_COLUMNS = [
    "image_id",
    "path",
    "file_name",
    "subject",
    "label",
    "class_name",
    "subset",
    "width",
    "height",
    "sha256",
    "phash",
]
CSV_HEADER = ["Patient_ID", "new_names", "labels"]
MAX_LISTED = 20
CHUNK = 64  # images per task sent to a worker


@dataclass(frozen=True)
class Entry:
    """A labelled image before decoding: where it is and what it is said to be."""

    image_id: str
    path: Path
    subject: str
    label: int
    subset: str


def _bmp_files(folder: Path) -> tuple[list[Path], list[Path]]:
    files, ignored = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir() or is_debris(p):
            continue  # hidden files and archive debris are skipped, counted by find_debris
        (files if p.suffix.lower() == ".bmp" else ignored).append(p)
    return files, ignored


def training_entries(layout: RawLayout) -> tuple[list[Entry], list[Path], list[str]]:
    """Entries of the training folds, files that are not images, and naming problems."""
    entries, ignored, problems = [], [], []
    for fold, folder in layout.folds.items():
        for cls in CLASS_NAMES:
            files, skip = _bmp_files(folder / cls)
            ignored += skip
            for p in files:
                try:
                    name = parse_name(p.name)
                except ValueError as exc:
                    problems.append(f"{p}: {exc}")
                    continue
                if name.class_name != cls:
                    problems.append(
                        f"{p}: named as {name.class_name.upper()} but stored in {cls}/;"
                        " move it or re-extract the archive"
                    )
                    continue
                entries.append(Entry(p.name, p, name.subject, name.label, fold))
    return entries, ignored, problems


def prelim_entries(layout: RawLayout) -> tuple[list[Entry], list[Path], list[str]]:
    """Entries of the labelled preliminary test, mapped through the labels CSV."""
    if layout.prelim_dir is None:
        raise RawDataError(
            f"{layout.root}: no {Path('C-NMC_test_prelim_phase_data')} folder; the preliminary"
            " test set is part of the protocol (re-extract the archive)"
        )
    if layout.prelim_labels is None:
        raise RawDataError(
            f"{layout.prelim_dir}: no labels CSV (C-NMC_test_prelim_phase_data_labels.csv) in the"
            " folder or one level up; it ships with the archive: copy it next to the images"
        )
    files, ignored = _bmp_files(layout.prelim_dir)
    on_disk = {p.name: p for p in files}
    csv_path = layout.prelim_labels
    entries, problems, seen = [], [], set()
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header != CSV_HEADER:
            raise RawDataError(
                f"{csv_path}: header is {','.join(header)!r}, expected {','.join(CSV_HEADER)!r}"
            )
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                problems.append(f"{csv_path}:{lineno}: expected 3 fields, got {len(row)}")
                continue
            original, new_name, label_text = (x.strip() for x in row)
            where = f"{csv_path}:{lineno}"
            if new_name in seen:
                problems.append(f"{where}: {new_name} listed twice")
                continue
            seen.add(new_name)
            if new_name not in on_disk:
                problems.append(
                    f"{where}: lists {new_name} but {layout.prelim_dir / new_name} does not exist"
                )
                continue
            try:
                name = parse_name(original)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            if label_text not in ("0", "1") or int(label_text) != name.label:
                problems.append(
                    f"{where}: label {label_text!r} for {original} disagrees with its name"
                    f" ({name.class_name.upper()} = {name.label})"
                )
                continue
            entries.append(Entry(original, on_disk[new_name], name.subject, name.label, "prelim"))
    for file_name in sorted(set(on_disk) - seen):
        problems.append(f"{layout.prelim_dir / file_name}: has no row in {csv_path}")
    return entries, ignored, problems


def relative_paths(paths: pd.Series, root: str | os.PathLike[str]) -> pd.Series:
    """``paths`` relative to ``root`` (POSIX form), so an index stays valid when the copy moves."""
    base = Path(root)
    return paths.map(lambda p: Path(p).relative_to(base).as_posix())


class Inspection(NamedTuple):
    """What decoding one image found: content hashes, size, mode, or the problem."""

    sha256: str
    phash: str
    width: int
    height: int
    mode: str
    problem: str | None


def inspect_image(path: Path) -> Inspection:
    """Hash and fully decode one image; its perceptual hash comes from the decoded pixels."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Inspection(
            "", "", 0, 0, "", f"{path}: cannot be read ({exc.strerror}); check permissions"
        )
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(path) as im:
            im.load()  # decodes every pixel: a truncated file fails here, not in training
            return Inspection(digest, perceptual_hash(im), im.width, im.height, im.mode, None)
    except Exception as exc:  # PIL raises many types for broken files
        return Inspection(
            digest, "", 0, 0, "", f"{path}: unreadable or truncated image ({exc}); re-extract it"
        )


def _inspect_chunk(paths: list[Path]) -> list[Inspection]:
    return [inspect_image(p) for p in paths]


def inspect_all(paths: list[Path], workers: int) -> list[Inspection]:
    """inspect_image over many files, in ``workers`` processes, in input order.

    A worker that dies (out of memory, killed) raises WorkerDiedError instead of hanging.
    """
    bar = Progress(len(paths), "merge: decoding and hashing")
    if workers <= 1 or len(paths) < 16:
        out = [inspect_image(p) for p in bar.wrap(paths)]
        bar.close()
        return out
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    results: list[list[Inspection]] = [[] for _ in chunks]

    def keep(i: int, result: list[Inspection]) -> None:
        results[i] = result
        bar.update(len(result))

    run_pool(
        _inspect_chunk, chunks, workers, keep, what="decoding the raw images", context="forkserver"
    )
    bar.close()
    return [r for chunk in results for r in chunk]


def _limited(problems: Iterable[str]) -> str:
    problems = list(problems)
    shown = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{len(problems)} problem(s) in the raw data:\n  {shown}{more}"


def build_index(
    layout: RawLayout,
    expected_size: int | None,
    workers: int = 1,
    raw_dir: Path | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Index every labelled image; return the index and a summary.

    The summary's ``skipped_debris`` lists the archive debris under ``raw_dir`` (default: the
    layout's root), which nothing counts.

    Raises RawDataError listing every problem (each naming its file) when any is found.
    """
    train, ignored_a, problems = training_entries(layout)
    prelim, ignored_b, problems_b = prelim_entries(layout)
    problems += problems_b
    entries = train + prelim
    results = inspect_all([e.path for e in entries], workers)
    rows = []
    for e, (digest, phash, w, h, mode, problem) in zip(entries, results, strict=True):
        if problem:
            problems.append(problem)
            continue
        unsuitable = image_problem(mode, w, h, expected_size)
        if unsuitable:
            problems.append(f"{e.path}: {unsuitable}")
            continue
        rows.append(
            {
                "image_id": e.image_id,
                "path": str(e.path),
                "file_name": e.path.name,
                "subject": e.subject,
                "label": e.label,
                "class_name": CLASS_NAMES[e.label],
                "subset": e.subset,
                "width": w,
                "height": h,
                "sha256": digest,
                "phash": phash,
            }
        )
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    problems += _duplicate_problems(index)
    if problems:
        raise RawDataError(_limited(problems))
    index = index.astype({"label": "int64", "width": "int64", "height": "int64"})
    index = index.sort_values(["subset", "label", "image_id"], kind="stable").reset_index(drop=True)
    final_count = len(_bmp_files(layout.final_dir)[0]) if layout.final_dir else 0
    summary = summarise(index, layout, final_count, ignored_a + ignored_b)
    summary["skipped_debris"] = find_debris(raw_dir if raw_dir is not None else layout.root)
    return index, summary


def _duplicate_problems(index: pd.DataFrame) -> list[str]:
    problems = []
    dup_ids = index[index.duplicated("image_id", keep=False)]
    for image_id, group in dup_ids.groupby("image_id"):
        problems.append(
            f"{image_id}: the same file name appears {len(group)} times: "
            + ", ".join(group["path"])
        )
    for digest, group in index.groupby("sha256"):
        if group["label"].nunique() > 1:
            problems.append(
                f"identical pixels labelled both ALL and Hem: {', '.join(group['path'])}"
                f" (sha256 {digest[:12]}); remove the mislabelled copy from your data"
            )
    return problems


def summarise(
    index: pd.DataFrame, layout: RawLayout, final_count: int, ignored: list[Path]
) -> dict[str, Any]:
    """Counts per class, subset and subject, plus duplicate and ignored-file notes."""
    per_subset: dict[str, dict[str, int]] = defaultdict(dict)
    for (subset, cls), n in index.groupby(["subset", "class_name"]).size().items():
        per_subset[subset][cls] = int(n)
    subjects = index.groupby("subject").agg(
        n=("image_id", "size"), class_name=("class_name", "first")
    )
    dup = index[index.duplicated("sha256", keep=False)]
    return {
        "layout": layout.describe(),
        "n_images": len(index),
        "per_class": {
            k: int(v) for k, v in index["class_name"].value_counts().sort_index().items()
        },
        "per_subset": dict(sorted(per_subset.items())),
        "n_subjects": {cls: int((subjects["class_name"] == cls).sum()) for cls in CLASS_NAMES},
        "per_subject": {
            s: {"n": int(r.n), "class_name": r.class_name} for s, r in subjects.iterrows()
        },
        "final_unlabelled": final_count,
        "ignored_files": [str(p) for p in ignored],
        "duplicate_content_same_class": [list(g["path"]) for _, g in dup.groupby("sha256")],
    }


# the step's log lines keep the name they had when the script logged them
_step_log = logging.getLogger("merge")


def merge_step(
    raw_json: Path,
    raw_dir: Path,
    expected_size: int,
    workers: int,
    index_out: Path,
    summary_out: Path,
) -> None:
    """The merge step: index the raw copy described by ``raw_json`` (which must exist: the
    download step's mark that the copy is ready) and write index.parquet and summary.json.

    ``expected_size`` 0 accepts any size; index paths are relative to ``raw_dir``.
    """
    if not raw_json.is_file():
        raise MissingInputError(f"{raw_json}: not found; run the download step first")
    layout = locate(raw_dir)
    start = time.perf_counter()
    index, summary = build_index(layout, expected_size or None, workers, raw_dir)
    # the data are known by content, not by place: paths relative to the raw folder
    index["path"] = relative_paths(index["path"], raw_dir)
    seconds = time.perf_counter() - start
    summary["throughput"] = {
        "images": len(index),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(index) / seconds, 1) if seconds else None,
        "workers": workers,
    }
    summary["provenance"] = provenance()
    debris = summary["skipped_debris"]
    if debris["count"]:
        _step_log.info(
            "skipped %d piece(s) of archive debris, %d bytes (%s)",
            debris["count"],
            debris["bytes"],
            ", ".join(f"{k}: {v['count']}" for k, v in debris["per_kind"].items()),
        )
    atomic.write_parquet(index_out, index)
    atomic.write_json(summary_out, summary)
    _step_log.info(
        "indexed %d images (%s) in %.1f s: %s",
        len(index),
        summary["per_class"],
        seconds,
        index_out,
    )
