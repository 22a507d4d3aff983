"""The training stage on CPU with tiny synthetic data: strategies, resume, determinism, learning."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from train_fixtures import write_data, write_split

from leukopipe.plumbing.hashing import sha256_file
from leukopipe.train.loader import BatchDataset, DeviceTransform, EpochBatchSampler, make_loader
from leukopipe.train.loop import (
    TrainConfig,
    TrainingInterrupted,
    load_checkpoint,
    prepare_model,
    train,
)
from leukopipe.train.weights import save_weights

ROOT = Path(__file__).resolve().parents[2]
HISTORY_METRICS = [
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1",
    "val_auc", "lr",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CI machine two OpenMP threads competing with
    other jobs for two cores run these tiny batches ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """16 train / 8 val images of 32 px: enough for a couple of optimiser steps."""
    return write_data(tmp_path_factory.mktemp("tiny"), n_train=16, n_val=8)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Path]:
    """64 train / 32 val images of 32 px."""
    return write_data(tmp_path_factory.mktemp("small"), n_train=64, n_val=32)


def _train(tmp_path: Path, data: dict[str, Path], name: str, **overrides) -> tuple[dict, Path]:
    settings = {"backbone": "resnet18", "strategy": "full", "epochs": 1, "batch_size": 8,
                "eval_batch_size": 16, "lr": 1e-3, "workers": 0, **overrides}
    out = tmp_path / name
    summary = train(TrainConfig(**settings), **data, out_dir=out / "run",
                    resume_dir=out / "resume", extra_meta={"experiment": name})
    return summary, out / "run"


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# --------------------------------------------------------------------------------- strategies

STRATEGY_CASES = [
    ("resnet18", "frozen", 2, ("fc.",)),
    ("resnet18", "partial", 1, ("layer4.", "fc.")),
    ("resnet18", "full", 2, None),
    ("efficientnet_b0", "frozen", 2, ("classifier.",)),
    ("efficientnet_b0", "partial", 2,
     ("blocks.5.", "blocks.6.", "conv_head.", "bn2.", "classifier.")),
    ("efficientnet_b0", "full", 2, None),
]


@pytest.mark.parametrize(("backbone", "strategy", "n", "trained"), STRATEGY_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in STRATEGY_CASES])
def test_strategy_changes_exactly_its_tensors(tmp_path, tiny, backbone, strategy, n, trained):
    torch.manual_seed(7)
    weights = save_weights(timm.create_model(backbone), tmp_path / f"{backbone}.safetensors",
                           backbone)
    cfg = dict(backbone=backbone, strategy=strategy, partial_stages=n, pretrained_weights=weights)
    initial = {k: v.clone() for k, v in prepare_model(TrainConfig(**cfg))[0].state_dict().items()}
    _, out = _train(tmp_path, tiny, "run", **cfg)
    final = _state(out / "last.pt")
    assert final.keys() == initial.keys()

    changed = {k for k in final if not torch.equal(final[k], initial[k])}
    expected = {k for k in final if trained is None or k.startswith(trained)}
    # every tensor of the trained part moves (weights, BN statistics), nothing else does —
    # in particular no BatchNorm running statistic of a frozen layer
    assert changed == expected
    assert any("running_mean" in k for k in expected) == (strategy != "frozen")
    if strategy == "full":
        stem = "conv1.weight" if backbone == "resnet18" else "conv_stem.weight"
        assert stem in changed


# ----------------------------------------------------------------------- outputs & checkpoint


def test_outputs_are_enough_for_inference(tmp_path, tiny):
    summary, out = _train(tmp_path, tiny, "run", epochs=2, strategy="partial", partial_stages=1)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert best["backbone"] == "resnet18" and best["strategy"] == "partial"
    assert best["partial_stages"] == 1 and best["class_names"] == ["hem", "all"]
    assert best["image_size"] == 32
    assert best["mean"] == [0.485, 0.456, 0.406] and best["std"] == [0.229, 0.224, 0.225]
    assert best["extra_meta"] == {"experiment": "run"}
    assert best["train_config"]["epochs"] == 2
    assert best["code_version"] == best["provenance"]["code_version"]
    assert best["best_epoch"] == summary["best_epoch"] in (1, 2)
    assert set(best["best_val_metrics"]) == {"val_loss", "val_accuracy", "val_macro_f1", "val_auc"}
    # after success the resume folder holds nothing: no state, no log, no lock file
    assert [p.name for p in (out.parent / "resume").iterdir()] == []

    history = pd.read_parquet(out / "history.parquet")
    assert list(history["epoch"]) == [1, 2]
    assert {*HISTORY_METRICS, "seconds", "images_per_s"} <= set(history.columns)
    assert (history["images_per_s"] > 0).all()
    best_row = history.loc[history["epoch"] == best["best_epoch"]].iloc[0]
    assert best_row["val_macro_f1"] == best["best_val_metrics"]["val_macro_f1"]
    assert history["val_macro_f1"].max() == best_row["val_macro_f1"]

    last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and last["kind"] == "last"
    model, meta = load_checkpoint(out / "best.pt")
    assert meta["best_epoch"] == best["best_epoch"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, best["state_dict"][key])
    assert not (tmp_path / "run" / "resume" / "state.pt").exists()  # removed after success


def test_history_splits_each_epochs_time(tmp_path, tiny):
    _, out = _train(tmp_path, tiny, "run", epochs=2, strategy="frozen")
    history = pd.read_parquet(out / "history.parquet")
    timing = ["train_seconds", "val_seconds", "loader_wait_seconds", "save_seconds"]
    assert list(history.columns[-len(timing) - 1:]) == ["improved", *timing[:3], "save_seconds"]
    assert (history[timing] > 0).all().all()
    assert (history["loader_wait_seconds"] < history["train_seconds"]).all()
    # seconds is the training and validation passes together; the save comes after it
    total = history["train_seconds"] + history["val_seconds"]
    assert ((total <= history["seconds"]) & (history["seconds"] - total < 0.2)).all()


# ------------------------------------------------------------------------- early stop & learn


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path, tiny, caplog):
    # lr 0 and a frozen backbone: validation metrics can never improve after epoch 1
    caplog.set_level("INFO", logger="leukopipe")
    summary, out = _train(tmp_path, tiny, "run", strategy="frozen", lr=0.0, epochs=10, patience=2)
    history = pd.read_parquet(out / "history.parquet")
    assert list(history["epoch"]) == [1, 2, 3]
    assert summary["stopped_early"] and summary["best_epoch"] == 1
    assert list(history["improved"]) == [True, False, False]
    # every epoch's line is followed by how long the rest can take and when it would end
    finish = [r.getMessage() for r in caplog.records if "estimated finish" in r.getMessage()]
    assert [m.split(" more")[0] for m in finish] == [
        "at most 9", "at most 8", "at most 7"
    ], finish


def test_model_learns_an_easy_task(tmp_path, small):
    summary, out = _train(tmp_path, small, "run", epochs=3, batch_size=16)
    assert summary["best_val_metrics"]["val_macro_f1"] > 0.9
    history = pd.read_parquet(out / "history.parquet")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_same_seed_same_history_other_seed_differs(tmp_path, tiny):
    runs = [
        pd.read_parquet(_train(tmp_path, tiny, name, epochs=2, seed=seed, flips=True)[1]
                        / "history.parquet")[HISTORY_METRICS]
        for name, seed in (("a", 5), ("b", 5), ("c", 6))
    ]
    pd.testing.assert_frame_equal(runs[0], runs[1], check_exact=True)
    assert not runs[0]["train_loss"].equals(runs[2]["train_loss"])


def test_identical_runs_write_identical_checkpoint_bytes(tmp_path, tiny):
    """Host and time live in provenance.json beside the checkpoints, not inside them."""
    first = _train(tmp_path / "first", tiny, "run", epochs=2, seed=4)[1]
    # the second run starts in a later second: a recorded time would differ
    time.sleep(1.0 - time.time() % 1.0 + 0.05)
    second = _train(tmp_path / "second", tiny, "run", epochs=2, seed=4)[1]
    for name in ("best.pt", "last.pt"):
        assert sha256_file(first / name) == sha256_file(second / name), name
    records = [json.loads((run / "provenance.json").read_text()) for run in (first, second)]
    assert records[0]["time_utc"] != records[1]["time_utc"]
    for run, record in zip((first, second), records, strict=True):
        assert record["host"] == socket.gethostname()
        assert record["sha256"] == {n: sha256_file(run / n) for n in ("best.pt", "last.pt")}
        meta = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
        assert meta["provenance"]["code_version"] == record["code_version"]
        assert "host" not in meta["provenance"] and "time_utc" not in meta["provenance"]


# ------------------------------------------------------------------------------------- resume


def _cli(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    args = [sys.executable, str(ROOT / "scripts" / "train.py"),
            "--backbone", "resnet18", "--strategy", "full", "--epochs", "3", "--batch-size", "16",
            "--lr", "1e-3", "--seed", "3", "--flips", "--device", "cpu",
            "--out-dir", str(out / "run"), "--resume-dir", str(out / "resume"), *extra]
    for key, path in data.items():
        args += ["--" + key.replace("_", "-"), str(path)]
    return args


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}  # see one_thread()


def test_resume_after_sigterm_equals_uninterrupted_run(tmp_path, small):
    # the uninterrupted reference runs in-process (same settings as _cli) to save an import
    reference = tmp_path / "reference"
    cfg = TrainConfig(backbone="resnet18", strategy="full", epochs=3, batch_size=16, lr=1e-3,
                      seed=3, flips=True, workers=0)
    train(cfg, **small, out_dir=reference / "run", resume_dir=reference / "resume",
          device="cpu")

    interrupted = tmp_path / "interrupted"
    state = interrupted / "resume" / "state.pt"
    # a worker process too: it must ignore the signal and leave the stopping to the main process
    proc = subprocess.Popen(_cli(small, interrupted, "--workers", "1"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "SIGTERM" in err
    saved = torch.load(state, map_location="cpu", weights_only=True)
    assert 1 <= saved["epochs_done"] < 3 and not saved["finished"]
    assert not (interrupted / "run" / "best.pt").exists()

    resumed = subprocess.run(_cli(small, interrupted, "--workers", "1"), env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {state} after epoch {saved['epochs_done']}" in resumed.stderr

    for name in ("best.pt", "last.pt"):
        a, b = _state(reference / "run" / name), _state(interrupted / "run" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"
    pd.testing.assert_frame_equal(
        pd.read_parquet(reference / "run" / "history.parquet")[HISTORY_METRICS],
        pd.read_parquet(interrupted / "run" / "history.parquet")[HISTORY_METRICS],
        check_exact=True,
    )


def test_in_process_interrupt_keeps_last_epoch_and_resumes(tmp_path, tiny, monkeypatch):
    import leukopipe.train.loop as train_module

    real = train_module.classification_metrics
    calls = []

    def metrics_then_sigusr1(*args):
        calls.append(1)
        if len(calls) == 2:  # during epoch 2's validation
            os.kill(os.getpid(), signal.SIGUSR1)
        return real(*args)

    monkeypatch.setattr(train_module, "classification_metrics", metrics_then_sigusr1)
    with pytest.raises(TrainingInterrupted) as err:
        _train(tmp_path, tiny, "run", epochs=4)
    # epoch 2 had finished when the signal came, so it is saved; exit code 128 + SIGUSR1
    assert err.value.epochs_done == 2 and err.value.exit_code == 128 + signal.SIGUSR1
    monkeypatch.setattr(train_module, "classification_metrics", real)
    summary, out = _train(tmp_path, tiny, "run", epochs=4)
    assert summary["resumed_from_epoch"] == 2
    assert list(pd.read_parquet(out / "history.parquet")["epoch"]) == [1, 2, 3, 4]


def test_resume_state_of_another_config_is_set_aside(tmp_path, tiny):
    settings = {"epochs": 1, "strategy": "frozen"}
    cfg = TrainConfig(backbone="resnet18", workers=0, **settings)
    paths = {"out_dir": tmp_path / "run", "resume_dir": tmp_path / "resume"}
    train(cfg, **tiny, **paths, keep_state=True)
    # same config: the finished state is reused, nothing is trained again
    again = train(cfg, **tiny, **paths, keep_state=True)
    assert again["resumed_from_epoch"] == 1
    other = TrainConfig(backbone="resnet18", workers=0, lr=5e-4, **settings)
    with pytest.raises(RuntimeError, match="another configuration or data"):
        train(other, **tiny, **paths, on_mismatch="error")
    fresh = train(other, **tiny, **paths)
    assert fresh["resumed_from_epoch"] is None
    assert (tmp_path / "resume" / "state.stale.pt").exists()


# ------------------------------------------------------------------------------ data & loader


def test_loader_batches_and_order(tmp_path):
    manifest, store = write_split(tmp_path, "d", n=10, size=8)
    pixels = np.load(store)
    labels = pd.read_parquet(manifest)["label"].to_numpy()
    data = BatchDataset(store, labels)
    images, y = data[[7, 2, 5]]
    assert images.dtype == torch.uint8 and images.shape == (3, 8, 8, 3)
    assert torch.equal(images, torch.from_numpy(pixels[[2, 5, 7]]))
    assert y.tolist() == labels[[2, 5, 7]].tolist()

    sampler = EpochBatchSampler(10, 4, shuffle=True, seed=1)
    epoch0 = list(sampler)
    assert [len(b) for b in epoch0] == [4, 4, 2]
    assert sorted(i for batch in epoch0 for i in batch) == list(range(10))
    assert list(sampler) == epoch0
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0  # a resumed epoch sees the same batches

    loader = make_loader(data, sampler, workers=1, device=torch.device("cpu"))
    got = [(x.clone(), y.clone()) for x, y in loader]
    assert len(got) == 3 and sum(len(y) for _, y in got) == 10
    for (x, _), batch in zip(got, epoch0, strict=True):
        assert torch.equal(x, torch.from_numpy(pixels[sorted(batch)]))

    # rows mapped through the manifest's store_row column
    shuffled = BatchDataset(store, labels[::-1], rows=np.arange(10)[::-1])
    x, y = shuffled[[0]]
    assert torch.equal(x[0], torch.from_numpy(pixels[9])) and y.item() == labels[9]


def test_device_transform_normalises_and_flips_reproducibly():
    images = torch.randint(0, 256, (16, 4, 4, 3), dtype=torch.uint8)
    labels = torch.zeros(16, dtype=torch.int64)
    plain = DeviceTransform((0.5, 0.4, 0.3), (0.2, 0.25, 0.5), torch.device("cpu"), False)
    x, _ = plain(images, labels, augment=True)
    expected = (images.permute(0, 3, 1, 2).float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(
        1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)

    flips = DeviceTransform((0.5, 0.4, 0.3), (0.2, 0.25, 0.5), torch.device("cpu"), False,
                            flips=True, seed=3)
    flips.set_epoch(0)
    a, _ = flips(images, labels, augment=True)
    flips.set_epoch(0)
    b, _ = flips(images, labels, augment=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, x)  # some images flipped
    candidates = [x, x.flip(3), x.flip(2), x.flip(2).flip(3)]
    for i in range(16):  # each image is one of its four flips, content unchanged otherwise
        assert any(torch.equal(a[i], c[i]) for c in candidates)
    assert torch.equal(flips(images, labels)[0], x)  # validation: never flipped


def test_bad_inputs_name_the_file(tmp_path):
    data = write_data(tmp_path, n_train=8, n_val=4, size=8)
    frame = pd.read_parquet(data["train_manifest"])
    frame.loc[0, "label"] = 3
    bad = tmp_path / "bad.parquet"
    frame.to_parquet(bad)
    cfg = TrainConfig(backbone="resnet18", strategy="frozen", epochs=1, workers=0)
    with pytest.raises(ValueError, match=r"bad\.parquet: labels must be 0"):
        train(cfg, **{**data, "train_manifest": bad}, out_dir=tmp_path / "o",
              resume_dir=tmp_path / "r")
    with pytest.raises(ValueError, match=r"val\.npy has 4 rows but its manifest has 8"):
        train(cfg, **{**data, "val_pixels": data["val_pixels"].parent / "val.npy",
                      "val_manifest": data["train_manifest"]},
              out_dir=tmp_path / "o", resume_dir=tmp_path / "r")
    with pytest.raises(ValueError, match="partial_stages"):
        TrainConfig(backbone="resnet18", strategy="partial", partial_stages=0)


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    import random

    from leukopipe.train.loop import _rng_state, _set_rng_state

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    path = tmp_path / "rng.pt"
    torch.save(_rng_state(), path)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)
    _set_rng_state(torch.load(path, weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_cli_has_a_flag_for_every_config_field():
    import argparse
    import dataclasses

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train as script
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    parser = argparse.ArgumentParser()
    script._add_config_flags(parser)
    args = parser.parse_args([
        "--backbone", "efficientnet_b3", "--strategy", "partial", "--partial-stages", "3",
        "--epochs", "7", "--patience", "2", "--lr", "0.01", "--batch-size", "5",
        "--eval-batch-size", "9", "--weight-decay", "0.1", "--layer-decay", "0.75", "--flips",
        "--workers", "3", "--compile", "--amp", "fp16", "--seed", "4",
        "--pretrained-weights", "w.safetensors",
    ])
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    assert cfg == TrainConfig(
        backbone="efficientnet_b3", strategy="partial", partial_stages=3, epochs=7, patience=2,
        lr=0.01, batch_size=5, eval_batch_size=9, weight_decay=0.1, layer_decay=0.75, flips=True,
        workers=3, compile=True, amp="fp16", seed=4, pretrained_weights="w.safetensors",
    )
    defaults = parser.parse_args(["--backbone", "resnet18", "--strategy", "full"])
    cfg = TrainConfig(**{f.name: getattr(defaults, f.name) for f in dataclasses.fields(TrainConfig)})
    assert cfg == TrainConfig(backbone="resnet18", strategy="full")
    assert cfg.pretrained_weights is None and cfg.epochs == 50 and cfg.patience == 15
    assert cfg.layer_decay is None  # off unless asked for
    none = parser.parse_args(["--backbone", "x", "--strategy", "full", "--layer-decay", "none"])
    assert none.layer_decay is None
    assert all(action.help for action in parser._actions)
