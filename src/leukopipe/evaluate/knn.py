"""k-nearest-neighbour probe: cosine k-NN on a frozen backbone's features, k from validation.

The standard evaluation of self-supervised and foundation models (DINO, DINOv2, DinoBloom all
report it): no training at all, so it shows what the pretrained features alone separate. A
frozen experiment's ``best.pt`` holds the pretrained backbone unchanged (only its head
trained), so its features are the pretrained ones. Each query's probability of ALL is the
neighbours' vote weighted by exp(cosine / 0.07), the weighting of DINO's k-NN evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from leukopipe.errors import InvalidInputError
from leukopipe.evaluate import metrics
from leukopipe.evaluate.eval_record import build_record
from leukopipe.evaluate.inference import Classifier

KS: tuple[int, ...] = (1, 3, 5, 10, 20, 50, 100, 200)
TEMPERATURE = 0.07


@torch.inference_mode()
def store_features(clf: Classifier, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """L2-normalised pre-logit features (what the head sees) for every row of a uint8 store."""
    if clf.meta.get("strategy") not in (None, "frozen"):
        raise InvalidInputError(
            f"k-NN probe needs a frozen backbone; this checkpoint was trained"
            f" '{clf.meta.get('strategy')}'"
        )
    out = []
    for start in range(0, len(pixels), batch_size):
        x = torch.from_numpy(np.array(pixels[start:start + batch_size], dtype=np.uint8))
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
    *,
    ks: Sequence[int] = KS,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    referral_target: float = 0.95,
    referral_criterion: str = "accuracy",
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(test predictions, validation predictions, metrics record) of the k-NN probe; each part
    is (manifest, features in manifest order). The training part is the neighbour bank,
    validation chooses k, test is scored once with it, like every other row of the tables."""
    y = {name: part[0]["label"].to_numpy(dtype=np.int64) for name, part in
         (("train", train), ("val", val), ("test", test))}
    k, scores = choose_k(train[1], y["train"], val[1], y["val"], ks, threshold)
    p_val = knn_prob_all(train[1], y["train"], val[1], k)
    p_test = knn_prob_all(train[1], y["train"], test[1], k)
    pred, val_pred, record = build_record(
        test[0], p_test, val[0], p_val, threshold=threshold, n_boot=n_boot, seed=seed,
        referral_target=referral_target, referral_criterion=referral_criterion,
    )
    record["knn"] = {
        "k": k, "chosen_on": "validation macro_f1", "val_macro_f1_by_k": scores,
        "similarity": "cosine", "vote_weight": f"exp(cos / {TEMPERATURE})",
        "bank_images": len(train[1]),
    }
    return pred, val_pred, record
