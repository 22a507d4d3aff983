"""Smoke tests of the benchmark functions on tiny inputs (the real measurements are in
docs/benchmarks.md; here: every function runs, counts what it ran, and reports sane numbers)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukopipe_tools import benchmark as bm


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stores")
    pixels, manifest = bm.random_store(d, 16, 32, "train")
    vpix, vman = bm.random_store(d, 12, 32, "val", seed=1)
    return {"pixels": pixels, "manifest": manifest, "vpix": vpix, "vman": vman}


def test_random_store_shape_and_reuse(stores: dict[str, Path]) -> None:
    arr = np.load(stores["pixels"], mmap_mode="r")
    assert arr.shape == (16, 32, 32, 3) and arr.dtype == np.uint8
    assert arr.std() > 50  # random pixels, not an empty file
    mtime = stores["pixels"].stat().st_mtime_ns
    bm.random_store(stores["pixels"].parent, 16, 32, "train")
    assert stores["pixels"].stat().st_mtime_ns == mtime  # same shape: reused, not rewritten


def test_loader_counts_batches(stores: dict[str, Path]) -> None:
    row = bm.loader_rate(stores["pixels"], batch_size=4, workers=0, batches=5)
    assert row.items == 5 and row.unit == "batch/s"
    assert row.rate == pytest.approx(5 / row.seconds)


def test_pure_step_and_real_loop(stores: dict[str, Path]) -> None:
    pure = bm.pure_step_rate("resnet18", 32, 4, "cpu", steps=2, warmup=1)
    assert pure.items == 8 and pure.rate > 0 and "resnet18" in pure.setting
    real = bm.real_loop_rate(bm.RealLoop("resnet18", stores["pixels"], stores["manifest"],
                                         stores["vpix"], stores["vman"], batch_size=8,
                                         epochs=2, workers=0))
    assert real.items == 16  # one steady epoch (epoch 2) of 16 images
    assert real.rate > 0 and real.seconds == pytest.approx(16 / real.rate)


def test_inference_rate_covers_the_store(stores: dict[str, Path]) -> None:
    row = bm.inference_rate("resnet18", stores["vpix"], batch_size=5)
    assert row.items == 12 and "batch 5" in row.setting and row.rate > 0


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Two OpenMP threads fighting over a shared machine's cores run a small ViT ~10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_vision_transformer_is_measured_at_the_store_size(
    stores: dict[str, Path], one_thread: None
) -> None:
    # Study C's ViTs have a fixed input size: built at timm's default 224 px they would refuse
    # these 32 px images
    pure = bm.pure_step_rate("vit_tiny_patch16_224", 32, 4, "cpu", steps=1, warmup=1)
    assert pure.items == 4 and pure.rate > 0 and "32px" in pure.setting
    row = bm.inference_rate("vit_tiny_patch16_224", stores["vpix"], batch_size=6)
    assert row.items == 12 and row.rate > 0
    assert len(bm.STUDY_C_BACKBONES) == 4
    assert not set(bm.STUDY_C_BACKBONES) & set(bm.GPU_BACKBONES)  # the defaults stay as they were


def test_per_core_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        p = tmp_path / f"{i}.bmp"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    rows = bm.per_core(paths, image_size=24, n=3)
    assert [r.items for r in rows] == [3] * 7
    settings = " | ".join(r.setting for r in rows)
    for part in ("read + sha256", "full decode", "perceptual hash", "nine transforms",
                 "store write"):
        assert part in settings
    assert all(r.unit == "img/s/core" and r.rate > 0 for r in rows)
    with pytest.raises(ValueError, match="no image files"):
        bm.per_core([], 24)


def test_run_step_measures_time_and_memory(tmp_path: Path) -> None:
    script = tmp_path / "hog.py"
    # ~200 MB touched, held for a second: the sampled peak must see it
    script.write_text("import time\nb = bytearray(200 * 2**20)\ntime.sleep(1.2)\n"
                      "t = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n")
    secs, peak, cpu = bm.run_step([str(script)], tmp_path / "hog.log", interval=0.1)
    assert secs >= 1.5 and peak > 150 and 0.3 <= cpu < secs
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('broken input')\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match="broken input"):
        bm.run_step([str(bad)], tmp_path / "bad.log")


def test_run_step_runs_in_the_given_folder_with_this_leukopipe(tmp_path: Path) -> None:
    # the caller names the checkout (relative script paths), the package never guesses it
    import leukopipe

    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "scripts" / "where.py").write_text(
        "import os, leukopipe\nprint(os.getcwd())\nprint(leukopipe.__file__)\n")
    log = tmp_path / "where.log"
    bm.run_step(["scripts/where.py"], log, interval=0.05, cwd=checkout)
    cwd, imported = log.read_text().splitlines()[:2]
    assert Path(cwd).resolve() == checkout.resolve()
    assert Path(imported).resolve() == Path(leukopipe.__file__).resolve()


def test_synthetic_spec_scales_cells_not_donors() -> None:
    full, small = bm.synthetic_spec(1.0), bm.synthetic_spec(0.1)
    assert full.cells_per_subject == bm.CNMC_CELLS and full.image_size == 450
    assert small.cells_per_subject == (11, 14)
    assert small.train_all_subjects == full.train_all_subjects == 47
    subjects = sum(bm.CNMC_SUBJECTS.values())
    assert 12000 < subjects * sum(full.cells_per_subject) / 2 < 13000  # C-NMC's ~12,500
    with pytest.raises(ValueError, match="fraction"):
        bm.synthetic_spec(0)


def test_study_a_estimate() -> None:
    hours = bm.estimate_study_a({"resnet50": 100.0, "efficientnet_b0": 200.0},
                                {"resnet50": 1250.0, "efficientnet_b0": 2500.0},
                                n_train=20000, n_val=1250, epochs=50)
    assert hours["resnet50"] == pytest.approx(50 * (200 + 1) / 3600)
    assert hours["efficientnet_b0"] == pytest.approx(50 * (100 + 0.5) / 3600)
    assert hours["total"] == pytest.approx(hours["resnet50"] + hours["efficientnet_b0"])


def test_markdown_stamp_and_rows() -> None:
    info = bm.machine_info()
    assert info["cores"] >= 1 and info["torch"] and info["date"].endswith("UTC")
    rows = [bm.Row("merge", "2 worker(s)", 10, 2.0, 5.0, "img/s", 123.4, 1.5, "n"),
            bm.Row("loader", "batch 8", 4, 1.0, 4.0, "batch/s")]
    text = bm.markdown(rows, info, "python scripts/benchmark.py --x", "t")
    assert "`python scripts/benchmark.py --x`" in text and f"torch {info['torch']}" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 3  # header + two rows
    assert "| 5.0 img/s | 123 | 1.50 |" in table[1]
    data = bm.rows_json(rows, info, "cmd")
    assert data["rows"][1]["rate"] == 4.0 and data["machine"]["python"] == sys.version.split()[0]


def test_resize_path_does_not_import_torch(tmp_path: Path) -> None:
    # the measured speed-up of the resize step (docs/benchmarks.md): its 'spawn' workers
    # re-import leukopipe.augment.plan, which must not pull in torch for resize-only work
    img = tmp_path / "a.bmp"
    Image.fromarray(np.full((40, 40, 3), 7, np.uint8)).save(img)
    sha = hashlib.sha256(img.read_bytes()).hexdigest()
    code = (
        "import sys, pandas as pd\n"
        "from leukopipe.augment.plan import materialise_plain\n"
        f"df = pd.DataFrame({{'path': [{str(img)!r}], 'sha256': [{sha!r}]}})\n"
        f"materialise_plain(df, 16, {str(tmp_path / 's.npy')!r})\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert np.load(tmp_path / "s.npy").shape == (1, 16, 16, 3)
