"""The uint8 pixel store (atomic creation, read-only access, shape checks) and image decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukopipe.data.imageio import load_rgb
from leukopipe.data.pixel_store import check_store, create_store, open_store


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- store
def test_create_open_roundtrip(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "store.npy"
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    with create_store(target, 5, 8) as arr:
        assert arr.shape == (5, 8, 8, 3) and arr.dtype == np.uint8
        assert not target.exists()  # only the temporary sibling exists while writing
        arr[:] = data
    assert _leftovers(target.parent) == ["store.npy"]
    plain = np.load(target, mmap_mode="r")
    assert np.array_equal(plain, data)
    opened = open_store(target)
    assert isinstance(opened, np.memmap) and np.array_equal(opened, data)
    with pytest.raises(ValueError):
        opened[0, 0, 0, 0] = 1  # read-only
    check_store(target, 5, 8)


def test_exception_inside_create_store_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "store.npy"
    with pytest.raises(RuntimeError, match="boom"), create_store(target, 3, 4) as arr:
        arr[0] = 7
        raise RuntimeError("boom")
    assert _leftovers(tmp_path) == []


def test_failed_rewrite_keeps_the_previous_store(tmp_path: Path) -> None:
    target = tmp_path / "store.npy"
    with create_store(target, 2, 4) as arr:
        arr[:] = 9
    with pytest.raises(KeyError), create_store(target, 6, 4) as arr:
        arr[:] = 1
        raise KeyError("interrupted")
    assert _leftovers(tmp_path) == ["store.npy"]
    kept = open_store(target)
    assert kept.shape == (2, 4, 4, 3) and (np.asarray(kept) == 9).all()


def test_empty_store(tmp_path: Path) -> None:
    target = tmp_path / "empty.npy"
    with create_store(target, 0, 16) as arr:
        assert arr.shape == (0, 16, 16, 3)
    assert _leftovers(tmp_path) == ["empty.npy"]
    check_store(target, 0, 16)


def test_check_store_names_file_on_mismatch(tmp_path: Path) -> None:
    target = tmp_path / "store.npy"
    with create_store(target, 4, 8):
        pass
    with pytest.raises(ValueError, match=r"store\.npy.*\(4, 8, 8, 3\).*\(5, 8, 8, 3\)"):
        check_store(target, 5, 8)
    with pytest.raises(ValueError, match=r"store\.npy"):
        check_store(target, 4, 16)


def test_open_store_rejects_non_stores(tmp_path: Path) -> None:
    floats = tmp_path / "floats.npy"
    np.save(floats, np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"floats\.npy.*uint8"):
        open_store(floats)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((2, 48), np.uint8))
    with pytest.raises(ValueError, match=r"flat\.npy"):
        check_store(flat, 2, 4)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not a numpy file at all")
    with pytest.raises(ValueError, match=r"junk\.npy"):
        open_store(junk)
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        open_store(tmp_path / "missing.npy")


# --------------------------------------------------------------------------- imageio
def _write(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    img = Image.fromarray(arr)
    if mode is not None:
        img = img.convert(mode)
    img.save(path)
    return path


def test_load_rgb_resizes_with_pil_bilinear(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _write(tmp_path / "a.bmp", arr)
    same = load_rgb(path, 64)
    assert same.dtype == np.uint8 and same.flags.c_contiguous and same.flags.writeable
    assert np.array_equal(same, arr)
    small = load_rgb(path, 24)
    expected = np.asarray(Image.fromarray(arr).resize((24, 24), Image.Resampling.BILINEAR))
    assert small.shape == (24, 24, 3) and np.array_equal(small, expected)
    # bilinear with antialias averages: a 2x downscale of a checkerboard is flat grey-ish
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    flat = load_rgb(_write(tmp_path / "c.bmp", np.stack([checker] * 3, -1)), 32)
    assert flat.std() < 20


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_load_rgb_converts_other_modes(tmp_path: Path, mode: str) -> None:
    arr = np.zeros((40, 30, 3), np.uint8)
    arr[10:20, 5:25] = (200, 100, 50)
    path = _write(tmp_path / f"m_{mode}.png", arr, mode)
    out = load_rgb(path, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8  # non-square -> square
    assert out.max() > 0


def test_load_rgb_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.bmp"):
        load_rgb(tmp_path / "nothere.bmp", 32)
    bad = tmp_path / "UID_1_2_3_all.bmp"
    bad.write_bytes(b"BM garbage that is not a bitmap")
    with pytest.raises(ValueError, match=r"UID_1_2_3_all\.bmp.*replace it"):
        load_rgb(bad, 32)
    good = _write(tmp_path / "t.bmp", np.full((64, 64, 3), 100, np.uint8))
    truncated = tmp_path / "truncated.bmp"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"truncated\.bmp"):
        load_rgb(truncated, 32)
