"""k-NN probe: cosine neighbours on a frozen backbone's real features, k chosen on validation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from leukopipe.evaluate.eval_record import ScoringSettings
from leukopipe.evaluate.inference import Classifier
from leukopipe.evaluate.knn import choose_k, knn_prob_all, knn_probe, store_features
from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.train.models import build_model


def test_vote_is_weighted_by_cosine_similarity():
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    labels = np.array([1, 0, 0])
    query = np.array([[1.0, 0.0]])
    assert knn_prob_all(bank, labels, query, k=1)[0] == 1.0
    w_all, w_hem = math.exp(1 / 0.07), math.exp(math.sqrt(0.5) / 0.07)
    assert knn_prob_all(bank, labels, query, k=2)[0] == pytest.approx(w_all / (w_all + w_hem))
    with pytest.raises(InvalidInputError, match="k = 4"):
        knn_prob_all(bank, labels, query, k=4)


def _part(rng: np.random.Generator, n: int, first_subject: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Cells of two kinds: ALL images are bright, Hem images dark (with noise)."""
    labels = np.arange(n) % 2
    pixels = rng.integers(0, 80, size=(n, 48, 48, 3), dtype=np.uint8)
    pixels[labels == 1] += 150
    manifest = pd.DataFrame({"image_id": [f"i{first_subject}_{i}" for i in range(n)],
                             "subject": [f"s{first_subject + i % 4}" for i in range(n)],
                             "label": labels})
    return manifest, pixels


def test_probe_on_a_frozen_backbones_features():
    torch.manual_seed(0)
    model = build_model("resnet18", image_size=48).eval()
    shape = (1, 3, 1, 1)
    clf = Classifier(model, {"strategy": "frozen", "image_size": 48}, torch.device("cpu"),
                     torch.full(shape, 0.45 * 255), torch.full(shape, 0.25 * 255))
    rng = np.random.default_rng(0)
    parts = [_part(rng, n, s) for n, s in ((40, 0), (16, 10), (16, 20))]
    feats = [store_features(clf, pixels, batch_size=16) for _, pixels in parts]
    assert feats[0].shape == (40, 512)
    np.testing.assert_allclose(np.linalg.norm(feats[0], axis=1), 1.0, rtol=1e-5)
    # a manifest's store rows, in its order (how the probe reads a store)
    picked = store_features(clf, parts[0][1], batch_size=16, rows=np.array([5, 0, 5]))
    np.testing.assert_allclose(picked, feats[0][[5, 0, 5]], rtol=1e-5, atol=1e-6)
    k, scores = choose_k(feats[0], parts[0][0]["label"].to_numpy(), feats[1],
                         parts[1][0]["label"].to_numpy(), ks=(1, 3, 5, 100))
    assert set(scores) == {1, 3, 5}  # 100 neighbours do not fit a bank of 40
    pred, val_pred, record = knn_probe(*((m, f) for (m, _), f in zip(parts, feats, strict=True)),
                                       ScoringSettings.from_config(n_boot=20), ks=(1, 3, 5))
    assert record["knn"]["k"] == k and record["knn"]["bank_images"] == 40
    assert record["metrics"]["accuracy"] > 0.9 and len(pred) == 16 and len(val_pred) == 16
    assert record["ci"]["bootstrap"]["unit"] == "subject"  # intervals like every other row
    assert len(record["ci"]["accuracy"]) == 2

    clf.meta["strategy"] = "full"
    with pytest.raises(InvalidInputError, match="frozen backbone"):
        store_features(clf, parts[2][1])
