"""The raw copy known by content: its hash cache must see every edit, even a disguised one."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
from pipeline_workspace import TINY_CONFIG, make_workspace, snakemake

from leukopipe.data.raw_identity import content_digest
from leukopipe.data.raw_layout import RawDataError


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


@pytest.mark.parametrize("target", ["nowhere.bmp", "self.bmp"])
def test_a_broken_or_looping_link_is_named(tmp_path: Path, target: str) -> None:
    raw = _raw(tmp_path)
    (raw / "all" / "self.bmp").symlink_to(target)  # dangling, or pointing at itself
    with pytest.raises(RawDataError, match=re.escape(f"{raw / 'all' / 'self.bmp'}: cannot be")):
        content_digest(raw, tmp_path / "raw_hashes.json")


def test_snakemake_stops_on_a_broken_link_in_one_line(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", {"data": {**TINY_CONFIG["data"], "source": "existing",
                                                    "raw_dir": "raw"}})
    raw = _raw(ws)
    (raw / "all" / "gone.bmp").symlink_to("nowhere.bmp")
    proc = snakemake(ws, "--dry-run", "--cores", "1", timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "InputFunctionException" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert lines == ["error: raw/all/gone.bmp: cannot be read (No such file or directory): "
                     "a broken or looping symbolic link? Fix or remove it in the raw folder "
                     "(leukopipe never changes it), or point data.raw_dir at an intact copy"]
