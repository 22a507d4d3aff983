"""The raw copy known by content: its hash cache must see every edit, even a disguised one."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from leukopipe.data.raw_identity import content_digest


def _raw(folder: Path) -> Path:
    raw = folder / "raw"
    (raw / "all").mkdir(parents=True)
    for i in range(3):
        (raw / "all" / f"{i}.bmp").write_bytes(bytes([i]) * 100)
    return raw


def test_an_edit_with_size_and_mtime_put_back_changes_the_digest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw, cache = _raw(tmp_path), tmp_path / "raw_hashes.json"
    before = content_digest(raw, cache)
    caplog.set_level(logging.INFO, logger="leukopipe.data.raw_identity")
    caplog.clear()
    assert content_digest(raw, cache) == before
    assert "hashing" not in caplog.text  # an untouched copy is not read again

    image = raw / "all" / "1.bmp"
    stat = image.stat()
    image.write_bytes(b"\xff" * stat.st_size)  # same size...
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and the old mtime
    assert image.stat().st_size == stat.st_size and image.stat().st_mtime_ns == stat.st_mtime_ns
    changed = content_digest(raw, cache)
    assert changed != before
    assert "hashing 1 raw file(s)" in caplog.text

    image.write_bytes(bytes([1]) * 100)  # the original bytes again: the original digest
    assert content_digest(raw, cache) == before
