"""k-nearest-neighbour probe: cosine k-NN on a frozen backbone's features, k from validation.

The standard evaluation of self-supervised and foundation models (DINO, DINOv2, DinoBloom all
report it): no training at all, so it shows what the pretrained features alone separate. A
frozen experiment's ``best.pt`` holds the pretrained backbone unchanged (only its head
trained), so its features are the pretrained ones. Each query's probability of ALL is the
neighbours' vote weighted by exp(cosine / 0.07), the weighting of DINO's k-NN evaluation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from leukopipe.data.cnmc_names import CLASS_NAMES
from leukopipe.data.pixel_store import open_store
from leukopipe.evaluate import metrics
from leukopipe.evaluate.eval_record import (
    OutputFiles,
    ScoringSettings,
    build_record,
    finish_record,
    write_outputs,
)
from leukopipe.evaluate.inference import Classifier
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.readers import read_json
from leukopipe.train.device import pick_device
from leukopipe.train.models import build_model, normalisation
from leukopipe.train.weights import check_against_record, load_pretrained

# the step's own name, which its log lines have always carried
log = logging.getLogger("knn_probe")
KS: tuple[int, ...] = (1, 3, 5, 10, 20, 50, 100, 200)
TEMPERATURE = 0.07


@torch.inference_mode()
def store_features(
    clf: Classifier, pixels: np.ndarray, batch_size: int = 256, rows: np.ndarray | None = None
) -> np.ndarray:
    """L2-normalised pre-logit features (what the head sees) for the ``rows`` of a uint8 store
    (all of them by default), in that order."""
    if clf.meta.get("strategy") not in (None, "frozen"):
        raise InvalidInputError(
            f"k-NN probe needs a frozen backbone; this checkpoint was trained"
            f" '{clf.meta.get('strategy')}'"
        )
    rows = np.arange(len(pixels)) if rows is None else np.asarray(rows)
    out = []
    for start in range(0, len(rows), batch_size):
        # batch by batch from the memory map: a training store need not fit in memory
        batch = np.stack([pixels[i] for i in rows[start:start + batch_size]])
        x = torch.from_numpy(batch.astype(np.uint8, copy=False))
        x = x.to(clf.device).permute(0, 3, 1, 2).float().sub_(clf.mean).div_(clf.std)
        feats = clf.model.forward_head(clf.model.forward_features(x), pre_logits=True)
        out.append(torch.nn.functional.normalize(feats.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def knn_prob_all(
    bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray, k: int, chunk: int = 1024
) -> np.ndarray:
    """Probability of ALL for each (normalised) query from its k most cosine-similar bank rows."""
    if not 1 <= k <= len(bank):
        raise InvalidInputError(f"k = {k} is not allowed; expected 1..{len(bank)} (bank size)")
    bank_t = torch.from_numpy(np.asarray(bank, dtype=np.float32))
    labels = torch.from_numpy(np.asarray(bank_labels, dtype=np.float32))
    out = []
    for start in range(0, len(queries), chunk):
        q = torch.from_numpy(np.asarray(queries[start:start + chunk], dtype=np.float32))
        sim, idx = (q @ bank_t.T).topk(k, dim=1)
        weight = (sim / TEMPERATURE).exp()
        out.append(((weight * labels[idx]).sum(1) / weight.sum(1)).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def choose_k(
    bank: np.ndarray,
    bank_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    ks: Sequence[int] = KS,
    threshold: float = 0.5,
) -> tuple[int, dict[int, float]]:
    """The k with the best validation macro-F1 (the training runs' model-selection metric);
    ties go to the smaller k. Returns it and every tried k's score."""
    scores: dict[int, float] = {}
    for k in ks:
        if k > len(bank):
            continue
        p = knn_prob_all(bank, bank_labels, val, k)
        scores[k] = float(metrics.binary_metrics(val_labels, p, threshold)["macro_f1"])
    if not scores:
        raise InvalidInputError(f"no k in {list(ks)} fits a bank of {len(bank)} images")
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def knn_probe(
    train: tuple[pd.DataFrame, np.ndarray],
    val: tuple[pd.DataFrame, np.ndarray],
    test: tuple[pd.DataFrame, np.ndarray],
    settings: ScoringSettings | None = None,
    *,
    ks: Sequence[int] = KS,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(test predictions, validation predictions, scored record) of the k-NN probe; each part
    is (manifest, features in manifest order). The training part is the neighbour bank,
    validation chooses k, test is scored once with it, like every other row of the tables;
    ``settings`` default to the config schema's."""
    s = settings or ScoringSettings.from_config()
    y = {name: part[0]["label"].to_numpy(dtype=np.int64) for name, part in
         (("train", train), ("val", val), ("test", test))}
    k, scores = choose_k(train[1], y["train"], val[1], y["val"], ks, s.threshold)
    p_val = knn_prob_all(train[1], y["train"], val[1], k)
    p_test = knn_prob_all(train[1], y["train"], test[1], k)
    pred, val_pred, record = build_record(test[0], p_test, val[0], p_val, s)
    record["knn"] = {
        "k": k, "chosen_on": "validation macro_f1", "val_macro_f1_by_k": scores,
        "similarity": "cosine", "vote_weight": f"exp(cos / {TEMPERATURE})",
        "bank_images": len(train[1]),
    }
    return pred, val_pred, record


def pretrained_classifier(
    backbone: str,
    image_size: int,
    weights: str | os.PathLike[str] | None,
    *,
    seed: int = 0,
    device: str | None = None,
) -> Classifier:
    """The backbone as a frozen experiment starts from: the pretrained weights file (or, without
    one, the random initialisation training draws from ``seed``), normalised as pretrained, in
    eval mode. No training: the probe reads the pretrained features themselves."""
    torch.manual_seed(seed)
    model = build_model(backbone, num_classes=len(CLASS_NAMES), image_size=image_size)
    if weights is not None:
        load_pretrained(model, weights, backbone)
    dev = pick_device(device)
    model.to(dev).eval()
    mean, std = normalisation(backbone)
    shape = (1, 3, 1, 1)
    meta = {"backbone": backbone, "strategy": "frozen", "image_size": image_size}
    return Classifier(
        model, meta, dev,
        torch.tensor(mean, dtype=torch.float32, device=dev).view(shape) * 255.0,
        torch.tensor(std, dtype=torch.float32, device=dev).view(shape) * 255.0,
    )


def _part(
    clf: Classifier, manifest: Path, pixels: Path, batch_size: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """(manifest, its rows' features in manifest order) of one store."""
    frame = pd.read_parquet(manifest)
    if "label" not in frame.columns or not frame["label"].isin([0, 1]).all() or frame.empty:
        raise InvalidInputError(
            f"manifest {manifest}: needs rows with labels 0 (Hem) or 1 (ALL); rerun the split step"
        )
    rows = frame["store_row"].to_numpy() if "store_row" in frame.columns else None
    return frame, store_features(clf, open_store(pixels), batch_size, rows)


@dataclass(frozen=True, kw_only=True)
class ProbeJob:
    """Everything the k-NN probe step reads and writes for one frozen experiment.

    ``stores`` maps train/val/test to (manifest, pixel store): the experiment's own training
    store is the neighbour bank, so the probe and the linear probe see the same cells.
    ``weights`` None: the random initialisation training draws from the experiment's seed.
    """

    experiment: dict[str, Any]
    image_size: int
    weights: Path | None
    weights_record: Path | None
    stores: dict[str, tuple[Path, Path]]
    outputs: OutputFiles
    settings: ScoringSettings
    batch_size: int = 256
    device: str | None = None


def run_probe(job: ProbeJob) -> dict[str, Any]:
    """The k-NN probe step: one frozen experiment's pretrained backbone scored by its nearest
    neighbours, written atomically, a summary logged; returns the record.

    The record is the one every other row has (``build_record``, ``finish_record``), named
    ``<experiment>.knn`` with variant ``knn``.
    """
    if job.weights is not None and job.weights_record is not None:
        check_against_record(job.weights, job.weights_record)
    experiment, weights = job.experiment, job.weights
    backbone = str(experiment["backbone"])
    clf = pretrained_classifier(
        backbone, job.image_size, weights, seed=int(experiment.get("seed", 0)), device=job.device
    )
    parts = {name: _part(clf, m, p, job.batch_size) for name, (m, p) in job.stores.items()}
    pred, val_pred, scored = knn_probe(parts["train"], parts["val"], parts["test"], job.settings)
    record = finish_record(
        scored,
        experiment={**experiment, "name": f"{experiment['name']}.knn", "variant": "knn"},
        outputs=job.outputs,
        training={
            "backbone": backbone,
            "strategy": "frozen",
            "image_size": job.image_size,
            "train_config": {"pretrained_weights": str(weights) if weights else None},
            # as a training run records them: the weights record it started from, None from
            # scratch (the tables name the tag, or "random init")
            "weights": read_json(job.weights_record)
            if weights is not None and job.weights_record is not None
            else None,
        },
    )
    write_outputs(job.outputs, pred, val_pred, record)
    log.info("k-NN probe, k=%d: test n=%d accuracy %.4f", record["knn"]["k"],
             record["n_test"], record["metrics"]["accuracy"])
    return record
