"""Local pretrained weights: written, really loaded (head fresh), and clear errors offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from leukopipe.plumbing import cli
from leukopipe.train import weights
from leukopipe.train.models import build_model
from leukopipe.train.weight_files import meta_path, weights_path
from leukopipe.train.weights import (
    WeightsError,
    WeightsNotFoundError,
    fetch,
    load_pretrained,
    save_weights,
)

ROOT = Path(__file__).resolve().parents[2]
_CREATE_MODEL = timm.create_model  # the real one, also while a test monkeypatches timm


def _imagenet_like(backbone: str, seed: int) -> torch.nn.Module:
    """What timm's pretrained=True returns: a 1000-class model (here randomly initialised)."""
    torch.manual_seed(seed)
    return _CREATE_MODEL(backbone, pretrained=False)


def test_weights_path_layout():
    assert weights_path("resources/weights", "resnet50") == Path(
        "resources/weights/resnet50.safetensors"
    )
    assert meta_path(Path("w/resnet50.a1_in1k.safetensors")) == Path("w/resnet50.a1_in1k.json")


@pytest.mark.parametrize(("backbone", "head"), [("resnet18", "fc"), ("efficientnet_b0", "classifier")])
def test_weights_written_by_the_test_are_really_loaded_and_head_stays_fresh(
    tmp_path, backbone, head
):
    path = save_weights(_imagenet_like(backbone, seed=1), tmp_path / f"{backbone}.safetensors",
                        backbone)
    file = load_file(str(path))
    assert json.loads(meta_path(path).read_text())["backbone"] == backbone

    torch.manual_seed(2)
    model = build_model(backbone)
    fresh_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(head + ".")}
    report = load_pretrained(model, path, backbone)

    state = model.state_dict()
    backbone_keys = [k for k in state if not k.startswith(head + ".")]
    assert report["loaded"] == len(backbone_keys)
    assert sorted(report["dropped_head_keys"]) == [f"{head}.bias", f"{head}.weight"]
    for key in backbone_keys:  # parameters and BatchNorm buffers alike
        assert torch.equal(state[key], file[key]), key
    # the head is the freshly initialised 2-class one, not (a slice of) ImageNet's classifier
    assert state[f"{head}.weight"].shape[0] == 2
    for key, value in fresh_head.items():
        assert torch.equal(state[key], value)
    assert not torch.equal(state[f"{head}.weight"], file[f"{head}.weight"][:2])


def test_missing_weights_file_names_the_file_and_the_fetch_command(tmp_path):
    path = tmp_path / "resnet50.safetensors"
    with pytest.raises(WeightsNotFoundError) as err:
        load_pretrained(build_model("resnet18"), path, "resnet50")
    message = str(err.value)
    assert str(path) in message
    assert f"scripts/fetch_weights.py --backbone resnet50 --out {path}" in message
    assert isinstance(err.value, FileNotFoundError)  # the CLIs turn it into one clear line


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = save_weights(_imagenet_like("resnet34", 0), tmp_path / "resnet18.safetensors", "resnet34")
    with pytest.raises(WeightsError, match=r"does not fit backbone 'resnet18'.*unexpected"):
        load_pretrained(build_model("resnet18"), path, "resnet18")


def test_a_backbone_tensor_missing_from_the_file_is_refused(tmp_path):
    path = tmp_path / "resnet18.safetensors"
    state = {k: v.contiguous() for k, v in _imagenet_like("resnet18", 0).state_dict().items()}
    del state["layer2.0.bn1.running_var"]
    save_file(state, str(path))
    with pytest.raises(WeightsError, match=r"missing \(1\): layer2\.0\.bn1\.running_var"):
        load_pretrained(build_model("resnet18"), path, "resnet18")


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "resnet18.safetensors"
    path.write_bytes(b"not safetensors at all")
    with pytest.raises(WeightsError, match=r"cannot read weights file .*fetch_weights\.py"):
        load_pretrained(build_model("resnet18"), path, "resnet18")


def test_fetch_saves_timm_pretrained_state_and_config(tmp_path, monkeypatch):
    calls = []

    def fake_create_model(name, pretrained=False, **kwargs):
        calls.append((name, pretrained))
        return _imagenet_like(name, seed=3)

    monkeypatch.setattr(weights.timm, "create_model", fake_create_model)
    dest = tmp_path / "w" / "resnet18.safetensors"
    assert fetch("resnet18", dest) == dest
    assert calls == [("resnet18", True)]
    meta = json.loads(meta_path(dest).read_text())
    assert meta["pretrained_cfg"]["classifier"] == "fc"
    assert meta["pretrained_cfg"]["mean"] == [0.485, 0.456, 0.406]
    expected = _imagenet_like("resnet18", seed=3).state_dict()
    file = load_file(str(dest))
    assert file.keys() == expected.keys()
    assert all(torch.equal(file[k], expected[k]) for k in expected)
    assert not list(dest.parent.glob(".*tmp"))  # no temporary left behind

    # present: no second download
    assert fetch("resnet18", dest) == dest
    assert len(calls) == 1


def test_fetch_offline_names_the_file_and_how_to_get_it(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(weights.timm, "create_model", offline)
    dest = tmp_path / "resnet50.safetensors"
    with pytest.raises(WeightsError) as err:
        fetch("resnet50", dest)
    message = str(err.value)
    assert str(dest) in message and "Name or service not known" in message
    assert "scripts/fetch_weights.py --backbone resnet50" in message
    assert "internet" in message and "copy" in message
    assert not dest.exists()


def test_fetch_weights_cli_reports_failure_in_one_line(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import fetch_weights as script
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    monkeypatch.setattr(weights.timm, "create_model", lambda *a, **k: (_ for _ in ()).throw(
        OSError("offline")))
    dest = tmp_path / "efficientnet_b0.safetensors"
    argv = ["--backbone", "efficientnet_b0", "--out", str(dest)]
    assert cli.run(script.main, argv) == 1  # the step's entry point: one line, exit 1
    assert f"error: could not download ImageNet weights for 'efficientnet_b0' into {dest}" in (
        capsys.readouterr().err
    )


def test_a_named_tag_is_trained_from_recorded_and_shown_in_the_tables(tmp_path):
    """resnet18.tv_in1k: the weights record names the tag and its pretraining data, the
    checkpoint normalises as the tag does, and evaluate's metrics.json carries the record into
    the table row's label (real train and evaluate scripts on a tiny split)."""
    import pandas as pd
    from train_fixtures import write_data, write_split

    from leukopipe.report.compare import flat_rows
    from leukopipe.train.checkpoint_saver import read_torch_file
    from leukopipe.train.weights import weights_record

    backbone = "resnet18.tv_in1k"
    path = save_weights(_CREATE_MODEL(backbone, pretrained=False),
                        weights_path(tmp_path / "w", backbone), backbone)
    record = tmp_path / "weights" / f"{backbone}.json"
    record.parent.mkdir()
    record.write_text(json.dumps(weights_record(path, backbone)))
    assert json.loads(record.read_text())["pretraining_data"] == "ImageNet-1k"
    data = write_data(tmp_path, n_train=16, n_val=8)
    data["test_manifest"], data["test_pixels"] = write_split(tmp_path, "test", 8, seed=3)
    for key in ("val_manifest", "test_manifest"):  # one class per subject, as in C-NMC
        df = pd.read_parquet(data[key])
        df["subject"] = [f"{'' if y else 'H'}{i % 2}" for i, y in enumerate(df["label"])]
        df.to_parquet(data[key], index=False)
    run = lambda args: subprocess.run(  # noqa: E731
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    proc = run([
        "scripts/train.py", "--backbone", backbone, "--strategy", "frozen", "--epochs", "1",
        "--batch-size", "8", "--workers", "0", "--amp", "none", "--device", "cpu",
        "--pretrained-weights", str(path), "--weights-record", str(record),
        "--train-manifest", str(data["train_manifest"]),
        "--train-pixels", str(data["train_pixels"]),
        "--val-manifest", str(data["val_manifest"]), "--val-pixels", str(data["val_pixels"]),
        "--out-dir", str(tmp_path / "run"), "--resume-dir", str(tmp_path / "resume"),
    ])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = read_torch_file(tmp_path / "run" / "best.pt", "cpu")
    cfg = timm.models.get_pretrained_cfg(backbone)
    assert meta["mean"] == list(cfg.mean) and meta["std"] == list(cfg.std)
    out = tmp_path / "eval"
    proc = run([
        "scripts/evaluate.py", "--checkpoint", str(tmp_path / "run" / "best.pt"),
        "--test-manifest", str(data["test_manifest"]), "--test-pixels", str(data["test_pixels"]),
        "--val-manifest", str(data["val_manifest"]), "--val-pixels", str(data["val_pixels"]),
        "--threshold", "0.5", "--bootstrap", "10", "--referral-target", "0.9",
        "--referral-criterion", "accuracy", "--batch-size", "8", "--device", "cpu",
        "--experiment-json", json.dumps({"name": "x", "split": "official", "backbone": backbone,
                                         "strategy": "frozen"}),
        "--predictions-out", str(out / "predictions.parquet"),
        "--metrics-out", str(out / "metrics.json"),
    ])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["weights"]["pretrained_tag"] == "tv_in1k"
    rec = {**metrics, "_path": str(out / "metrics.json")}
    row = flat_rows([rec]).iloc[0]
    assert row["backbone"] == "resnet18" and row["weights_tag"] == "tv_in1k"
    assert row["model"] == "resnet18 (frozen) · tv_in1k"
    assert pd.notna(row["temperature"])
