"""The checkpoint saver (counters, files, resume) and the one checkpoint loader, without training
a network: a linear layer stands in for the model, so each test takes milliseconds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn

from leukopipe.plumbing.errors import UserError
from leukopipe.train import checkpoint_saver as cs
from leukopipe.train.checkpoint_saver import CheckpointError, CheckpointSaver, load_checkpoint


def _parts(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()


def _epoch(saver: CheckpointSaver, model: nn.Module, optimizer: torch.optim.Optimizer,
           f1: float) -> bool:
    _step(model, optimizer)
    val = {"loss": 1.0 - f1, "accuracy": f1, "macro_f1": f1, "auc": f1}
    row = {"epoch": saver.epochs_done + 1, **{f"val_{k}": v for k, v in val.items()}}
    improved = saver.end_epoch(row, val, model, {"train_seconds": 0.5})
    saver.save_state(model, optimizer, None, {"marker": saver.epochs_done})
    return improved


def _saver(tmp_path: Path, fingerprint: str = "fp-a", **kwargs) -> CheckpointSaver:
    settings = {"max_epochs": 10, "patience": 2, **kwargs}
    return CheckpointSaver(tmp_path / "run", tmp_path / "resume", fingerprint, **settings)


def test_counters_track_best_and_stop_after_patience(tmp_path):
    saver = _saver(tmp_path)
    model, optimizer = _parts()
    f1s = [0.5, 0.7, 0.7, 0.6]  # equal is not better: two epochs without improvement
    improved = []
    for f1 in f1s:
        improved.append(_epoch(saver, model, optimizer, f1))
        if f1 == 0.7 and improved[-1]:
            best_weights = {k: v.clone() for k, v in model.state_dict().items()}
        if saver.finished:
            break
    assert improved == [True, True, False, False]
    assert (saver.best_epoch, saver.best_metric, saver.epochs_done) == (2, 0.7, 4)
    assert saver.epochs_without_improvement == 2
    assert saver.stopped_early and saver.finished
    assert saver.best_metrics == {"val_loss": pytest.approx(0.3), "val_accuracy": 0.7,
                                  "val_macro_f1": 0.7, "val_auc": 0.7}
    for key, value in best_weights.items():  # a copy taken at the best epoch, not a reference
        assert torch.equal(saver.best_state[key], value)
    assert not torch.equal(saver.best_state["weight"], model.state_dict()["weight"])


def test_max_epochs_finishes_without_early_stop(tmp_path):
    saver = _saver(tmp_path, max_epochs=2, patience=5)
    model, optimizer = _parts()
    _epoch(saver, model, optimizer, 0.5)
    assert not saver.finished
    _epoch(saver, model, optimizer, 0.4)
    assert saver.finished and not saver.stopped_early


def test_history_rows_carry_timings_and_save_seconds(tmp_path):
    saver = _saver(tmp_path)
    model, optimizer = _parts()
    _epoch(saver, model, optimizer, 0.5)
    row = saver.history[-1]
    assert list(row)[-3:] == ["improved", "train_seconds", "save_seconds"]
    assert row["save_seconds"] > 0
    # the row inside state.pt was written before its own write could be timed
    assert math.isnan(torch.load(saver.state_path, weights_only=True)["history"][-1]
                      ["save_seconds"])


def test_state_resumes_counters_weights_and_optimiser(tmp_path):
    first = _saver(tmp_path)
    model, optimizer = _parts()
    for f1 in (0.5, 0.6, 0.55):
        _epoch(first, model, optimizer, f1)

    again = _saver(tmp_path)
    fresh_model, fresh_optimizer = _parts(seed=1)
    rng = again.resume(fresh_model, fresh_optimizer, None)
    assert rng == {"marker": 3}
    assert again.resumed_from == 3 and again.epochs_done == 3
    assert (again.best_epoch, again.best_metric, again.epochs_without_improvement) == (2, 0.6, 1)
    assert [r["epoch"] for r in again.history] == [1, 2, 3]
    for key, value in model.state_dict().items():
        assert torch.equal(fresh_model.state_dict()[key], value)
    # the optimiser continues too: one more identical step keeps both models identical
    _step(model, optimizer)
    _step(fresh_model, fresh_optimizer)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh_model.state_dict()[key], value)


def test_state_of_another_fingerprint_is_moved_aside_or_refused(tmp_path):
    model, optimizer = _parts()
    _epoch(_saver(tmp_path, "fp-a"), model, optimizer, 0.5)
    state = tmp_path / "resume" / "state.pt"
    with pytest.raises(RuntimeError, match="another configuration or data"):
        _saver(tmp_path, "fp-b", on_mismatch="error").resume(model, optimizer, None)
    assert state.is_file()
    other = _saver(tmp_path, "fp-b")
    assert other.resume(model, optimizer, None) is None and other.resumed_from is None
    assert not state.exists() and (tmp_path / "resume" / "state.stale.pt").is_file()
    with pytest.raises(ValueError, match="on_mismatch"):
        _saver(tmp_path, on_mismatch="ignore")


def test_unreadable_state_starts_afresh(tmp_path):
    state = tmp_path / "resume" / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"not a torch file")
    model, optimizer = _parts()
    saver = _saver(tmp_path)
    assert saver.resume(model, optimizer, None) is None
    assert (tmp_path / "resume" / "state.stale.pt").read_bytes() == b"not a torch file"


def test_a_failed_write_keeps_the_previous_state(tmp_path, monkeypatch):
    saver = _saver(tmp_path)
    model, optimizer = _parts()
    _epoch(saver, model, optimizer, 0.5)
    before = saver.state_path.read_bytes()

    def half_written(obj, stream):
        stream.write(b"trunc")
        raise OSError("disk full")

    monkeypatch.setattr(cs.torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        _epoch(saver, model, optimizer, 0.6)
    assert saver.state_path.read_bytes() == before
    assert sorted(p.name for p in saver.state_path.parent.iterdir()) == ["state.pt"]


def test_outputs_hold_meta_outcome_and_weights(tmp_path):
    saver = _saver(tmp_path, max_epochs=2)
    model, optimizer = _parts()
    _epoch(saver, model, optimizer, 0.6)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    _epoch(saver, model, optimizer, 0.5)
    paths = saver.save_outputs({"backbone": "x", "fingerprint": "fp-a"}, model)
    assert paths == {"best": tmp_path / "run" / "best.pt", "last": tmp_path / "run" / "last.pt",
                     "history": tmp_path / "run" / "history.parquet",
                     "provenance": tmp_path / "run" / "provenance.json"}
    best_pt = torch.load(paths["best"], weights_only=True)
    last_pt = torch.load(paths["last"], weights_only=True)
    assert list(best_pt) == ["backbone", "fingerprint", "best_epoch", "best_val_metrics",
                             "epochs_run", "stopped_early", "kind", "epoch", "val_metrics",
                             "state_dict"]
    assert (best_pt["kind"], best_pt["epoch"], best_pt["epochs_run"]) == ("best", 1, 2)
    assert (last_pt["kind"], last_pt["epoch"]) == ("last", 2)
    assert last_pt["val_metrics"]["val_macro_f1"] == 0.5
    assert best_pt["val_metrics"]["val_macro_f1"] == 0.6
    for key, value in best.items():
        assert torch.equal(best_pt["state_dict"][key], value)
        assert torch.equal(last_pt["state_dict"][key], model.state_dict()[key])
    history = pd.read_parquet(paths["history"])
    assert list(history["epoch"]) == [1, 2] and history["save_seconds"].notna().all()
    assert not saver.state_path.exists()  # removed after success (keep_state=False)


# ------------------------------------------------------------------------------ the one loader


def test_loader_refuses_a_pickle_that_is_not_allow_listed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"backbone": "resnet18", "state_dict": {}, "payload": np.arange(3)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: cannot be loaded with weights_only"):
        load_checkpoint(path)
    assert issubclass(CheckpointError, UserError)  # one line for the user, no traceback


def test_loader_names_a_file_that_is_not_a_checkpoint(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match=r"plain\.pt: not a leukopipe checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_loader_rebuilds_the_model_also_from_compiled_weights(tmp_path):
    torch.manual_seed(0)
    net = timm.create_model("resnet18", num_classes=2)
    path = tmp_path / "best.pt"
    # torch.compile'd modules name their weights _orig_mod.<name>
    torch.save({"backbone": "resnet18", "class_names": ["hem", "all"], "mean": [0.5] * 3,
                "std": [0.2] * 3, "image_size": 32,
                "state_dict": {f"_orig_mod.{k}": v for k, v in net.state_dict().items()}}, path)
    model, meta = load_checkpoint(path)
    assert not model.training and "state_dict" not in meta and meta["image_size"] == 32
    for key, value in net.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
