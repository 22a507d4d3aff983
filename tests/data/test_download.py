"""Tests of leukopipe.data.download against a real HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import socket
import sys
import tarfile
import threading
import time
import types
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from leukopipe.data.download import (
    ChecksumError,
    DownloadError,
    RawDataMissingError,
    UnsafeArchiveError,
    download_file,
    ensure_raw,
    extract_archive,
    sha256_file,
)

# --------------------------------------------------------------------------------------------
# A local HTTP server with Range support, a "cut after K bytes" switch and a request log
# --------------------------------------------------------------------------------------------


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    ignore_range: bool = False
    cut_after: list[int] = field(default_factory=list)  # per request: body bytes before a drop
    fail_status: list[int] = field(default_factory=list)  # statuses answered before serving
    stall: list[float] = field(default_factory=list)  # per request: seconds before the body
    base: str = ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a drop ends only that request

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        entry: dict[str, Any] = {"path": self.path, "range": self.headers.get("Range"),
                                 "status": None, "sent": 0}
        state.log.append(entry)
        if state.fail_status:
            entry["status"] = state.fail_status.pop(0)
            self.send_response(entry["status"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = state.files.get(self.path)
        if data is None:
            entry["status"] = 404
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, status = 0, 200
        if entry["range"] and not state.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", entry["range"])
            assert m, entry["range"]
            start = int(m.group(1))
            if start >= len(data):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if state.stall:
            time.sleep(state.stall.pop(0))
            with contextlib.suppress(OSError):  # the client has given up by now
                self.wfile.write(body)
            return
        cut = state.cut_after.pop(0) if state.cut_after else None
        if cut is not None and cut < len(body):
            self.wfile.write(body[:cut])
            self.wfile.flush()
            entry["sent"] = cut
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)
        entry["sent"] = len(body)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment must never see (or reroute) the test traffic.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[ServerState]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = ServerState()
    httpd.state = state  # type: ignore[attr-defined]
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _payload(n: int = 300_000, seed: int = 0) -> bytes:
    # Deterministic, incompressible-looking bytes (random.randbytes is seeded, hence stable).
    import random

    return random.Random(seed).randbytes(n)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".extracting",
                                                                       ".generating", ".part")))


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under root (folders too) with mtime, size and content hash."""
    snap: dict[str, tuple[int, int, str]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.stat()
        digest = _sha(path.read_bytes()) if path.is_file() else "dir"
        snap[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_size, digest)
    return snap


# --------------------------------------------------------------------------------------------
# download_file
# --------------------------------------------------------------------------------------------


def test_full_download_verifies_checksum(server: ServerState, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a/C-NMC.zip"] = data
    dest = tmp_path / "archives" / "C-NMC.zip"
    out = download_file(f"{server.base}/a/C-NMC.zip", dest, _sha(data).upper(),
                        progress=False, chunk_size=4096)
    assert out == dest
    assert dest.read_bytes() == data
    assert not (tmp_path / "archives" / "C-NMC.zip.part").exists()
    assert [(e["range"], e["status"], e["sent"]) for e in server.log] == [(None, 200, len(data))]


def test_resume_after_cut_within_one_call(server: ServerState, tmp_path: Path) -> None:
    data = _payload()
    server.files["/x.tar.gz"] = data
    server.cut_after = [100_000]
    dest = tmp_path / "x.tar.gz"
    download_file(f"{server.base}/x.tar.gz", dest, _sha(data), progress=False, backoff=0)
    assert dest.read_bytes() == data
    assert [(e["range"], e["status"], e["sent"]) for e in server.log] == [
        (None, 200, 100_000),
        ("bytes=100000-", 206, len(data) - 100_000),
    ]


def test_a_link_that_keeps_dropping_still_finishes(server: ServerState, tmp_path: Path) -> None:
    # Attempts that received data do not use up the retries: 5 drops with retries=1 succeed.
    data = _payload()
    server.files["/x.zip"] = data
    server.cut_after = [50_000] * 5
    dest = tmp_path / "x.zip"
    download_file(f"{server.base}/x.zip", dest, _sha(data), progress=False, retries=1, backoff=0)
    assert dest.read_bytes() == data
    assert [e["range"] for e in server.log] == [None] + [f"bytes={k * 50_000}-" for k in
                                                         range(1, 6)]
    assert sum(e["sent"] for e in server.log) == len(data)


def test_resume_of_part_left_by_an_earlier_run(server: ServerState, tmp_path: Path) -> None:
    data = _payload()
    server.files["/x.zip"] = data
    server.cut_after = [123_457]
    dest = tmp_path / "x.zip"
    url = f"{server.base}/x.zip"
    with pytest.raises(DownloadError, match="rerun to resume"):
        download_file(url, dest, _sha(data), progress=False, retries=0, backoff=0)
    part = tmp_path / "x.zip.part"
    assert part.read_bytes() == data[:123_457]
    assert not dest.exists()

    # A new call (a new process) resumes: the prefix on disk is hashed, only the rest is sent.
    download_file(url, dest, _sha(data), progress=False, backoff=0)
    assert dest.read_bytes() == data
    assert not part.exists()
    assert len(server.log) == 2
    assert server.log[1]["range"] == "bytes=123457-"
    assert server.log[1]["status"] == 206
    assert server.log[1]["sent"] == len(data) - 123_457


def test_server_ignoring_range_restarts_cleanly(server: ServerState, tmp_path: Path) -> None:
    data = _payload()
    server.files["/x.zip"] = data
    server.ignore_range = True
    dest = tmp_path / "x.zip"
    # A stale .part whose bytes do not even match: if it were kept the checksum would fail.
    (tmp_path / "x.zip.part").write_bytes(b"\xff" * 5000)
    download_file(f"{server.base}/x.zip", dest, _sha(data), progress=False, backoff=0)
    assert dest.read_bytes() == data
    assert [(e["range"], e["status"], e["sent"]) for e in server.log] == [
        ("bytes=5000-", 200, len(data)),
    ]


def test_complete_part_answered_416_is_verified(server: ServerState, tmp_path: Path) -> None:
    data = _payload()
    server.files["/x.zip"] = data
    (tmp_path / "x.zip.part").write_bytes(data)
    dest = tmp_path / "x.zip"
    download_file(f"{server.base}/x.zip", dest, _sha(data), progress=False)
    assert dest.read_bytes() == data
    assert [(e["status"], e["sent"]) for e in server.log] == [(416, 0)]


def test_part_longer_than_remote_file_restarts(server: ServerState, tmp_path: Path) -> None:
    data = _payload(50_000)
    server.files["/x.zip"] = data
    (tmp_path / "x.zip.part").write_bytes(data + b"junk" * 100)
    dest = tmp_path / "x.zip"
    download_file(f"{server.base}/x.zip", dest, _sha(data), progress=False, backoff=0)
    assert dest.read_bytes() == data
    assert [(e["range"], e["status"]) for e in server.log] == [
        (f"bytes={len(data) + 400}-", 416), (None, 200),
    ]


def test_checksum_mismatch_raises_and_keeps_no_final_file(
    server: ServerState, tmp_path: Path
) -> None:
    data = _payload()
    server.files["/x.zip"] = data
    wrong = "0" * 64
    dest = tmp_path / "x.zip"
    with pytest.raises(ChecksumError) as info:
        download_file(f"{server.base}/x.zip", dest, wrong, progress=False)
    message = str(info.value)
    assert wrong in message
    assert _sha(data) in message
    assert "data.sha256" in message
    assert not dest.exists()
    assert not (tmp_path / "x.zip.part").exists()
    assert (tmp_path / "x.zip.bad").read_bytes() == data


def test_existing_matching_file_skips_the_network(server: ServerState, tmp_path: Path) -> None:
    data = _payload(10_000)
    dest = tmp_path / "x.zip"
    dest.write_bytes(data)
    # The server does not even have the file: any request would fail with 404.
    assert download_file(f"{server.base}/x.zip", dest, _sha(data), progress=False) == dest
    assert server.log == []
    assert dest.read_bytes() == data


def test_existing_mismatching_file_is_reported_not_replaced(
    server: ServerState, tmp_path: Path
) -> None:
    dest = tmp_path / "x.zip"
    dest.write_bytes(b"old archive")
    with pytest.raises(ChecksumError, match=_sha(b"old archive")):
        download_file(f"{server.base}/x.zip", dest, "1" * 64, progress=False)
    assert dest.read_bytes() == b"old archive"
    assert server.log == []


def test_transient_errors_are_retried(server: ServerState, tmp_path: Path) -> None:
    data = _payload(20_000)
    server.files["/x.zip"] = data
    server.fail_status = [503, 502]
    dest = tmp_path / "x.zip"
    download_file(f"{server.base}/x.zip", dest, _sha(data), progress=False, backoff=0)
    assert dest.read_bytes() == data
    assert [e["status"] for e in server.log] == [503, 502, 200]


def test_read_timeout_is_retried(server: ServerState, tmp_path: Path) -> None:
    data = _payload(20_000)
    server.files["/x.zip"] = data
    server.stall = [1.0]
    dest = tmp_path / "x.zip"
    download_file(f"{server.base}/x.zip", dest, _sha(data), progress=False, timeout=0.2,
                  backoff=0)
    assert dest.read_bytes() == data
    assert len(server.log) == 2


def test_file_url_is_supported(tmp_path: Path) -> None:
    # An archive already on a shared file system can be "downloaded" with a file:// URL.
    data = _payload(30_000)
    src = tmp_path / "shared" / "C-NMC.zip"
    src.parent.mkdir()
    src.write_bytes(data)
    dest = tmp_path / "arch" / "C-NMC.zip"
    download_file(src.as_uri(), dest, _sha(data), progress=False)
    assert dest.read_bytes() == data


def test_retries_are_bounded(server: ServerState, tmp_path: Path) -> None:
    server.files["/x.zip"] = b"data"
    server.fail_status = [503] * 10
    with pytest.raises(DownloadError, match="503") as info:
        download_file(f"{server.base}/x.zip", tmp_path / "x.zip", None, progress=False,
                      retries=2, backoff=0)
    assert len(server.log) == 3
    assert not (tmp_path / "x.zip").exists()
    # nothing arrived: the message names no .part file, which does not exist
    assert ".part" not in str(info.value) and "Nothing was received" in str(info.value)
    assert not (tmp_path / "x.zip.part").exists()


def test_404_is_not_retried_and_names_the_url(server: ServerState, tmp_path: Path) -> None:
    url = f"{server.base}/missing.zip"
    with pytest.raises(DownloadError) as info:
        download_file(url, tmp_path / "missing.zip", None, progress=False, backoff=0)
    assert "404" in str(info.value)
    assert url in str(info.value)
    assert len(server.log) == 1


def test_without_sha256_warns_with_the_actual_digest(
    server: ServerState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _payload(10_000)
    server.files["/x.zip"] = data
    with caplog.at_level(logging.WARNING, logger="leukopipe.data.download"):
        download_file(f"{server.base}/x.zip", tmp_path / "x.zip", None, progress=False)
    text = caplog.text
    assert "cannot be verified" in text
    assert _sha(data) in text
    assert (tmp_path / "x.zip").read_bytes() == data


def test_malformed_sha256_is_rejected_before_any_request(
    server: ServerState, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="64 hexadecimal"):
        download_file(f"{server.base}/x.zip", tmp_path / "x.zip", "abc123", progress=False)
    assert server.log == []


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_bytes_and_rate_on_a_tty_only(
    server: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _payload(200_000)
    server.files["/x.zip"] = data
    tty = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    download_file(f"{server.base}/x.zip", tmp_path / "a.zip", _sha(data), chunk_size=8192)
    assert "B/s" in tty.getvalue()
    assert "195k" in tty.getvalue()  # 200,000 bytes in binary kilo-units

    quiet = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", quiet)
    download_file(f"{server.base}/x.zip", tmp_path / "b.zip", _sha(data), progress=False)
    assert quiet.getvalue() == ""

    not_tty = io.StringIO()
    monkeypatch.setattr(sys, "stderr", not_tty)
    download_file(f"{server.base}/x.zip", tmp_path / "c.zip", _sha(data), progress=True)
    assert not_tty.getvalue() == ""


# --------------------------------------------------------------------------------------------
# extract_archive
# --------------------------------------------------------------------------------------------

TREE = {
    "C-NMC_training_data/fold_0/all/UID_11_10_1_all.bmp": b"all-image",
    "C-NMC_training_data/fold_0/hem/UID_H11_10_1_hem.bmp": b"hem-image",
    "C-NMC_test_prelim_phase_data/1.bmp": b"prelim",
}


def _make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _make_tar(path: Path, members: dict[str, bytes], mode: str) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize(
    ("name", "mode"),
    [("d.zip", None), ("d.tar", "w"), ("d.tar.gz", "w:gz"), ("d.tgz", "w:gz")],
)
def test_extract_archive_formats(tmp_path: Path, name: str, mode: str | None) -> None:
    archive = tmp_path / name
    if mode is None:
        _make_zip(archive, TREE)
    else:
        _make_tar(archive, TREE, mode)
    dest = tmp_path / "raw" / "C-NMC"
    assert extract_archive(archive, dest) == dest
    assert _read_tree(dest) == TREE
    assert _leftovers(dest.parent) == []


def test_extract_into_existing_empty_folder(tmp_path: Path) -> None:
    archive = _make_zip(tmp_path / "d.zip", TREE)
    dest = tmp_path / "raw"
    dest.mkdir()
    extract_archive(archive, dest)
    assert _read_tree(dest) == TREE


def test_extract_never_overwrites_a_non_empty_folder(tmp_path: Path) -> None:
    archive = _make_zip(tmp_path / "d.zip", TREE)
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    before = _snapshot(dest)
    with pytest.raises(FileExistsError, match="not empty"):
        extract_archive(archive, dest)
    assert _snapshot(dest) == before
    assert _leftovers(tmp_path) == []


def _evil_zip(path: Path, name: str) -> Path:
    return _make_zip(path, {"ok/file.txt": b"ok", name: b"evil"})


def _evil_tar(path: Path, name: str) -> Path:
    return _make_tar(path, {"ok/file.txt": b"ok", name: b"evil"}, "w:gz")


def _symlink_tar(path: Path, name: str) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = "../../outside"
        tf.addfile(info)
    return path


@pytest.mark.parametrize(
    ("maker", "member"),
    [
        (_evil_zip, "../evil.txt"),
        (_evil_zip, "ok/../../evil.txt"),
        (_evil_zip, "/abs/evil.txt"),
        (_evil_tar, "../evil.txt"),
        (_evil_tar, "/tmp/leukopipe-test-evil.txt"),
        (_symlink_tar, "ok/link"),
    ],
)
def test_unsafe_members_are_refused_by_name(tmp_path: Path, maker: Any, member: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = maker(tmp_path / "evil.archive", member)
    dest = work / "raw"
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, dest)
    assert repr(member) in str(info.value)
    assert str(archive) in str(info.value)
    assert not dest.exists()
    assert sorted(p.name for p in work.iterdir()) == []  # no temp folder, nothing escaped
    assert not (tmp_path / "evil.txt").exists()


def test_not_an_archive_is_named(tmp_path: Path) -> None:
    page = tmp_path / "C-NMC.zip"
    page.write_text("<html>Please log in</html>")
    with pytest.raises(DownloadError, match=re.escape(str(page))):
        extract_archive(page, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# ensure_raw
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_empty", [False, True])
def test_existing_missing_folder_gives_instructions(tmp_path: Path, make_empty: bool) -> None:
    raw = tmp_path / "data" / "raw" / "C-NMC"
    if make_empty:
        raw.mkdir(parents=True)
    with pytest.raises(RawDataMissingError) as info:
        ensure_raw("existing", raw, archive_dir=tmp_path / "archives")
    message = str(info.value)
    assert str(raw) in message
    assert "C-NMC 2019" in message
    assert "10.7937/tcia.2019.dc64i46r" in message
    assert "data.raw_dir" in message
    assert ("is empty" if make_empty else "does not exist") in message
    assert not (tmp_path / "archives").exists()


def _populate(raw: Path) -> None:
    for rel, data in TREE.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data)


def test_existing_folder_is_described_and_untouched(tmp_path: Path) -> None:
    raw = tmp_path / "C-NMC"
    _populate(raw)
    os.utime(raw / "C-NMC_test_prelim_phase_data" / "1.bmp", ns=(1, 1))
    before = _snapshot(raw)
    info = ensure_raw("existing", raw, archive_dir=tmp_path / "archives")
    assert _snapshot(raw) == before
    assert info == {
        "source": "existing", "raw_dir": str(raw), "url": None, "sha256": None,
        "archive": None, "files": len(TREE), "bytes": sum(len(v) for v in TREE.values()),
        "synthetic": None,
        "kaggle": None,
    }


def test_url_downloads_extracts_then_reuses(server: ServerState, tmp_path: Path) -> None:
    archive_bytes = _make_zip(tmp_path / "src.zip", TREE).read_bytes()
    # The query string is not part of the local name; %20 is unquoted.
    server.files["/dl/C-NMC%202019.zip?token=abc"] = archive_bytes
    url = f"{server.base}/dl/C-NMC%202019.zip?token=abc"
    raw = tmp_path / "data" / "raw" / "C-NMC"
    archives = tmp_path / "data" / "archives"
    info = ensure_raw("url", raw, url=url, sha256=_sha(archive_bytes), archive_dir=archives,
                      progress=False)
    assert info == {
        "source": "url", "raw_dir": str(raw), "url": url, "sha256": _sha(archive_bytes),
        "archive": str(archives / "C-NMC 2019.zip"), "files": len(TREE),
        "bytes": sum(len(v) for v in TREE.values()), "synthetic": None, "kaggle": None,
    }
    assert _read_tree(raw) == TREE
    assert len(server.log) == 1
    assert _leftovers(raw.parent) == [] and _leftovers(archives) == []

    # Second run: the folder is there, so no request is made and nothing inside changes.
    before = _snapshot(raw)
    again = ensure_raw("url", raw, url=url, sha256=_sha(archive_bytes), archive_dir=archives,
                       progress=False)
    assert len(server.log) == 1
    assert _snapshot(raw) == before
    assert again["files"] == len(TREE) and again["archive"] is None


def test_url_without_sha256_reports_the_actual_digest(server: ServerState, tmp_path: Path) -> None:
    archive_bytes = _make_tar(tmp_path / "src.tgz", TREE, "w:gz").read_bytes()
    server.files["/C-NMC.tgz"] = archive_bytes
    info = ensure_raw("url", tmp_path / "raw", url=f"{server.base}/C-NMC.tgz",
                      archive_dir=tmp_path / "arch", progress=False)
    assert info["sha256"] == _sha(archive_bytes) == sha256_file(tmp_path / "arch" / "C-NMC.tgz")
    assert _read_tree(tmp_path / "raw") == TREE


def test_url_bad_checksum_leaves_raw_dir_absent(server: ServerState, tmp_path: Path) -> None:
    server.files["/C-NMC.zip"] = _make_zip(tmp_path / "src.zip", TREE).read_bytes()
    raw = tmp_path / "raw"
    with pytest.raises(ChecksumError):
        ensure_raw("url", raw, url=f"{server.base}/C-NMC.zip", sha256="a" * 64,
                   archive_dir=tmp_path / "arch", progress=False)
    assert not raw.exists()
    assert not (tmp_path / "arch" / "C-NMC.zip").exists()


def test_url_needs_a_url_and_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.url"):
        ensure_raw("url", tmp_path / "raw", archive_dir=tmp_path / "arch")
    with pytest.raises(ValueError, match="file name"):
        ensure_raw("url", tmp_path / "raw", url="http://127.0.0.1:9/", archive_dir=tmp_path)


def test_unknown_source_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="existing, url, kaggle, synthetic"):
        ensure_raw("ftp", tmp_path / "raw", archive_dir=tmp_path)


def _fake_synthetic(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[Any]:
    """A stand-in for leukopipe.data.synthetic with the same contract: a complete folder made with
    the same spec is returned as is, a different spec raises, a fresh one is written."""
    calls: list[Any] = []
    fake = types.ModuleType("leukopipe.data.synthetic")

    def spec_from_dict(d: dict[str, Any]) -> tuple[str, int]:
        calls.append(("spec", d))
        return ("spec", d["n"])

    def generate(root: Path, spec: tuple[str, int], workers: int = 1) -> dict[str, Any]:
        calls.append(("generate", spec))
        root = Path(root)
        marker = root / "SPEC"
        if any(root.iterdir()):
            if marker.read_text() == repr(spec):
                return {"stored": True}
            raise ValueError(f"{root} holds a dataset made with different settings")
        for i in range(spec[1]):
            (root / f"img_{i}.bmp").write_bytes(b"x" * 10)
            if fail and i == 1:
                raise RuntimeError("generator crashed")
        marker.write_text(repr(spec))
        return {"stored": False}

    fake.spec_from_dict = spec_from_dict  # type: ignore[attr-defined]
    fake.generate = generate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "leukopipe.data.synthetic", fake)
    return calls


def test_synthetic_generates_then_reuses_only_the_same_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_synthetic(monkeypatch)
    raw = tmp_path / "data" / "raw" / "synthetic"
    info = ensure_raw("synthetic", raw, archive_dir=tmp_path / "arch", synthetic={"n": 3})
    assert calls == [("spec", {"n": 3}), ("generate", ("spec", 3))]
    assert sorted(p.name for p in raw.iterdir()) == ["SPEC", "img_0.bmp", "img_1.bmp",
                                                     "img_2.bmp"]
    assert info["files"] == 4 and info["bytes"] == 30 + len(repr(("spec", 3)))
    assert info["source"] == "synthetic" and info["synthetic"] == {"n": 3}
    assert info["url"] is None and info["archive"] is None and info["sha256"] is None
    assert _leftovers(raw.parent) == []

    before = _snapshot(raw)
    ensure_raw("synthetic", raw, archive_dir=tmp_path / "arch", synthetic={"n": 3})
    assert calls[-1] == ("generate", ("spec", 3))  # asked, and it found the same spec
    assert _snapshot(raw) == before

    # A changed spec must not silently reuse stale data, nor touch it.
    with pytest.raises(ValueError, match="different settings"):
        ensure_raw("synthetic", raw, archive_dir=tmp_path / "arch", synthetic={"n": 5})
    assert _snapshot(raw) == before


def test_synthetic_crash_leaves_no_partial_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_synthetic(monkeypatch, fail=True)
    raw = tmp_path / "raw"
    with pytest.raises(RuntimeError, match="generator crashed"):
        ensure_raw("synthetic", raw, archive_dir=tmp_path, synthetic={"n": 5})
    assert not raw.exists()
    assert _leftovers(tmp_path) == []


def test_synthetic_with_the_real_generator(tmp_path: Path) -> None:
    synthetic = pytest.importorskip("leukopipe.data.synthetic")
    settings = {"image_size": 32, "cells_per_subject": [1, 2], "final_images": 2,
                "train_all_subjects": 3, "train_hem_subjects": 3, "prelim_all_subjects": 1,
                "prelim_hem_subjects": 1}
    raw = tmp_path / "raw"
    info = ensure_raw("synthetic", raw, archive_dir=tmp_path, synthetic=settings)
    assert (raw / synthetic.MARKER_NAME).is_file()
    assert info["files"] == sum(1 for p in raw.rglob("*") if p.is_file())
    assert info["files"] >= 3 * 2 + 2  # subjects x >=1 cell, plus final images
    before = _snapshot(raw)
    ensure_raw("synthetic", raw, archive_dir=tmp_path, synthetic=settings)
    assert _snapshot(raw) == before
