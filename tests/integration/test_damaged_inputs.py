"""A damaged (truncated) JSON, parquet or .npy input ends a step with one line naming the file,
not a traceback that names none. The steps run as real processes, as their rules run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leukopipe.data.pixel_store import open_store
from leukopipe.plumbing.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[2]


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _step(script: str, *args: str | Path) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )
    return proc.returncode, proc.stderr


def _one_line_naming(stderr: str, path: Path) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert str(path) in errors[0] and "truncated" in errors[0], stderr


def test_truncated_metrics_json_is_named(tmp_path: Path) -> None:
    metrics = tmp_path / "eval" / "image.resnet18.full.s0" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"experiment": {"name": "image.resnet18.full.s0", "split": "image"}, '
                       '"metrics": {"accuracy": 0.9, "n_all": 3}}')
    _truncate(metrics)
    audit = tmp_path / "audit.json"
    audit.write_text("{}")
    rc, err = _step("compare.py", "--metrics", metrics, "--audits", audit,
                    "--tables-dir", tmp_path / "tables", "--figures-dir", tmp_path / "figures")
    assert rc == 1, err
    _one_line_naming(err, metrics)


def test_metrics_json_holding_no_record_is_named(tmp_path: Path) -> None:
    # valid JSON, but not the object evaluate writes (an overwritten file): one line naming it
    folds = [tmp_path / f"cv2-f{f}" for f in range(2)]
    for fold in folds:
        fold.mkdir()
        (fold / "metrics.json").write_text("[1, 2]")
    rc, err = _step("pool_folds.py",
                    "--member-predictions", *[f / "predictions.parquet" for f in folds],
                    "--member-metrics", *[f / "metrics.json" for f in folds],
                    "--threshold", "0.5", "--bootstrap", "10",
                    "--predictions-out", tmp_path / "p.parquet",
                    "--metrics-out", tmp_path / "m.json")  # fmt: skip
    assert rc == 1 and "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and str(folds[0] / "metrics.json") in errors[0], err
    assert "not a metrics.json record" in errors[0], err


def test_truncated_parquet_manifest_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "test.parquet"
    pd.DataFrame({"image_id": [f"c{i}" for i in range(200)], "path": ["x.bmp"] * 200,
                  "label": [i % 2 for i in range(200)]}).to_parquet(manifest)
    _truncate(manifest)
    rc, err = _step("resize.py", "--manifest", manifest, "--raw-dir", tmp_path,
                    "--image-size", "32", "--manifest-out", tmp_path / "out.parquet",
                    "--pixels-out", tmp_path / "out.npy")
    assert rc == 1, err
    _one_line_naming(err, manifest)


def test_truncated_pixel_store_is_named(tmp_path: Path) -> None:
    store = tmp_path / "train_pixels.npy"
    np.save(store, np.zeros((20, 16, 16, 3), np.uint8))
    _truncate(store)
    with pytest.raises(InvalidInputError, match=r"train_pixels\.npy") as info:
        open_store(store)
    assert "\n" not in str(info.value)
