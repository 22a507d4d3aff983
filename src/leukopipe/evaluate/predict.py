"""Predict on new images with a trained checkpoint, flagging uncertain cells for an expert."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leukopipe.data.cnmc_names import CLASS_NAMES
from leukopipe.data.imageio import (
    MissingImageError,
    UnreadableImageError,
    UnsuitableImageError,
    read_rgb,
)
from leukopipe.evaluate.eval_record import read_metrics
from leukopipe.evaluate.inference import Classifier, load_classifier, predict_batch
from leukopipe.plumbing import atomic
from leukopipe.plumbing.errors import InvalidInputError, MissingInputError, UserError
from leukopipe.plumbing.hashing import sha256_file

log = logging.getLogger(__name__)
# the predict command's own name, which its log lines have always carried
step_log = logging.getLogger("predict")
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


class NoImagesError(UserError, ValueError):
    """The given folder or CSV holds no image to score."""


class ImageToScoreError(UserError, ValueError):
    """One of the user's images cannot be scored, and --keep-going was not given."""


def list_images(source: str | Path, column: str = "path") -> list[Path]:
    """Image paths from a folder (sorted, recursive), a CSV column of paths, or one image.

    Raises NoImagesError when there is nothing to score.
    """
    source = Path(source)
    kinds = ", ".join(IMAGE_SUFFIXES)
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return [source]
    if source.is_dir():
        files = [p for p in source.rglob("*") if p.is_file()]
        images = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            others = f" ({len(files)} other file(s) there)" if files else ""
            raise NoImagesError(
                f"no images in {source}{others}: looked for files ending in {kinds} "
                "(upper or lower case), in sub-folders too"
            )
        return images
    if source.suffix.lower() == ".csv" and source.is_file():
        df = pd.read_csv(source)
        if column not in df:
            raise InvalidInputError(
                f"{source}: no column {column!r} (columns: {', '.join(df.columns)})"
            )
        paths = [Path(p) for p in df[column].dropna().astype(str)]
        if not paths:
            raise NoImagesError(f"{source}: its column {column!r} lists no image paths")
        return paths
    if source.exists():
        raise NoImagesError(
            f"{source}: not an image ({kinds}), a folder of images or a .csv of image paths"
        )
    raise MissingInputError(f"{source}: no such image, folder or .csv file")


class ForeignMetricsError(UserError, ValueError):
    """A metrics.json whose referral threshold was chosen for another checkpoint."""


def referral_threshold(
    metrics_json: str | Path | None,
    explicit: float | None,
    checkpoint: str | Path,
    backbone: str,
) -> float | None:
    """The confidence below which a cell is referred: explicit, or the one chosen on validation.

    A threshold is a property of one model's confidences, so ``metrics_json`` must record this
    ``checkpoint`` (its sha256) and ``backbone``; an ensemble's or pooled record names none.
    """
    if explicit is not None:
        return explicit
    if metrics_json is None:
        return None
    path = Path(metrics_json)
    try:
        record = read_metrics(path)
        threshold = float(record["referral"]["threshold"])
    except FileNotFoundError as exc:
        raise MissingInputError(f"{path}: no such metrics.json") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"{path}: not an evaluate step's metrics.json (no referral threshold: {exc})"
        ) from exc
    recorded = record.get("checkpoint") or {}
    recorded_backbone = (record.get("training") or {}).get("backbone")
    if not recorded.get("sha256") or not recorded_backbone:
        raise ForeignMetricsError(
            f"{path}: records no single checkpoint (an ensemble or pooled folds?), so its "
            "referral threshold cannot be checked against --checkpoint; pass the metrics.json "
            "of the checkpoint's own experiment, or --refer-below"
        )
    digest = sha256_file(checkpoint)
    if recorded["sha256"] != digest or recorded_backbone != backbone:
        raise ForeignMetricsError(
            f"{path}: its referral threshold was chosen for {recorded.get('path')} "
            f"(sha256 {recorded['sha256'][:12]}, {recorded_backbone}), not for {checkpoint} "
            f"(sha256 {digest[:12]}, {backbone}); pass the metrics.json of the checkpoint's "
            "own experiment, or --refer-below"
        )
    return threshold


def predict_paths(
    clf: Classifier,
    paths: Iterable[Path],
    *,
    threshold: float = 0.5,
    refer_below: float | None = None,
    batch_size: int = 64,
    keep_going: bool = False,
) -> pd.DataFrame:
    """One row per image: probability of ALL, predicted class, confidence, refer flag, error."""
    rows: list[dict] = []
    batch: list[np.ndarray] = []
    batch_rows: list[dict] = []

    def flush() -> None:
        if not batch:
            return
        probs = predict_batch(clf, np.stack(batch))
        for r, p in zip(batch_rows, probs, strict=True):
            conf = max(p, 1.0 - p)
            r.update(
                prob_all=float(p),
                predicted=CLASS_NAMES[int(p >= threshold)],
                confidence=float(conf),
                refer_to_expert=bool(refer_below is not None and conf < refer_below),
            )
        batch.clear()
        batch_rows.clear()

    for path in paths:
        row: dict = {"path": str(path), "error": ""}
        rows.append(row)
        try:
            # the rule merge applies to the raw data: what it would refuse is not scored either
            batch.append(read_rgb(path, clf.image_size, check=True))
        except (MissingImageError, UnreadableImageError, UnsuitableImageError) as exc:
            if not keep_going:
                raise ImageToScoreError(
                    f"{exc}; fix or remove it, or rerun with --keep-going to score the other "
                    "images and list this one in the error column"
                ) from exc
            log.warning("skipping %s: %s", path, exc)
            row.update(
                prob_all=np.nan,
                predicted="",
                confidence=np.nan,
                refer_to_expert=True,
                error=str(exc),
            )
            continue
        batch_rows.append(row)
        if len(batch) == batch_size:
            flush()
    flush()
    cols = ["path", "prob_all", "predicted", "confidence", "refer_to_expert", "error"]
    return pd.DataFrame(rows, columns=cols)


def gradcam_image(
    clf: Classifier, path: Path, out: Path, *, stage: int = -1, alpha: float = 0.45
) -> float:
    """Grad-CAM of the called class for one image, saved beside the input as a PNG figure;
    returns the probability of ALL."""
    from leukopipe.evaluate import (
        gradcam,
        gradcam_figures,  # deferred: matplotlib only for this option
    )

    image = read_rgb(path, clf.image_size)
    cam, prob = gradcam.gradcam(clf, image[None], stage=stage)
    gradcam_figures.gradcam_single_figure(image, cam[0], float(prob[0]), path.name, out, alpha)
    return float(prob[0])


@dataclass(frozen=True, kw_only=True)
class PredictJob:
    """What the predict command scores and writes: its flags, one field each (their defaults
    live with the flags)."""

    checkpoint: Path
    images: Path
    out: Path
    column: str
    metrics: Path | None
    refer_below: float | None
    threshold: float
    batch_size: int
    device: str | None
    keep_going: bool
    gradcam_out: Path | None
    gradcam_stage: int
    gradcam_alpha: float


def predict_images(job: PredictJob) -> pd.DataFrame:
    """The predict command: score every image, write the CSV atomically, the Grad-CAM figure
    of a single image when asked, log a summary; returns the table.

    Raises NoImagesError when no image could be scored (the CSV still lists why)."""
    paths = list_images(job.images, job.column)  # before the model: no images fails at once
    clf = load_classifier(job.checkpoint, job.device)
    if job.gradcam_out and len(paths) != 1:
        raise InvalidInputError(
            f"--gradcam-out explains a single image; {job.images} holds {len(paths)}"
        )
    refer = referral_threshold(job.metrics, job.refer_below, job.checkpoint, clf.meta["backbone"])
    df = predict_paths(
        clf,
        paths,
        threshold=job.threshold,
        refer_below=refer,
        batch_size=job.batch_size,
        keep_going=job.keep_going,
    )
    with atomic.atomic_path(job.out) as tmp:
        df.to_csv(tmp, index=False)
    if job.gradcam_out:
        gradcam_image(
            clf, paths[0], job.gradcam_out, stage=job.gradcam_stage, alpha=job.gradcam_alpha
        )
        step_log.info("Grad-CAM of %s -> %s", paths[0], job.gradcam_out)
    failed = int((df["error"] != "").sum())
    if failed == len(df):
        raise NoImagesError(
            f"none of the {failed} image(s) could be scored; {job.out} lists why in its error "
            "column"
        )
    step_log.info(
        "%d image(s) scored, %d unreadable, %d referred -> %s",
        len(df) - failed,
        failed,
        int(df["refer_to_expert"].sum()),
        job.out,
    )
    return df
