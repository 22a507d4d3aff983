"""data.source: kaggle against a local stand-in for Kaggle's API (kagglehub itself runs unmodified).

kagglehub 1.0.3 takes its API host from KAGGLE_API_ENVIRONMENT (LOCALHOST: http://localhost) and
sends its requests through the environment's HTTP proxy, as requests does; the stand-in is that
proxy, bound to 127.0.0.1 on a free port, answering the two calls a dataset download makes
(GetDataset, DownloadDataset) and serving the archive with Range support, as Kaggle's storage
does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pipeline_workspace import make_workspace, planned_jobs, snakemake

from leukopipe.data.kaggle import file_list
from leukopipe.data.synthetic import SyntheticSpec, generate

REPO = Path(__file__).resolve().parents[2]
HANDLE = "andrewmvd/leukemia-classification"
# 40 BMPs of 160 px (77 kB each) stored uncompressed: over kagglehub's 1 MiB write chunk, so a
# download killed half-way leaves a partial archive
SPEC = SyntheticSpec(seed=3, layout="B", image_size=160, train_all_subjects=3, train_hem_subjects=3,
                     prelim_all_subjects=1, prelim_hem_subjects=1, cells_per_subject=(4, 4),
                     final_images=2)


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, archive: bytes, version: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.archive = archive
        self.version = version
        self.require_auth = False
        self.delay = 0.0  # seconds between 64 kB pieces of the archive
        self.calls: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)

    def named(self, suffix: str) -> list[dict[str, str]]:
        return [h for _, path, h in self.calls if path.endswith(suffix)]


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        self.server.calls.append(("POST", path, dict(self.headers)))
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.server.require_auth and "Authorization" not in self.headers:
            return self._json(401, {"code": 401, "message": "Unauthenticated"})
        if f"{body.get('ownerSlug')}/{body.get('datasetSlug')}" != HANDLE:
            return self._json(404, {"code": 404, "message": "Not found"})
        if path.endswith("/datasets.DatasetApiService/GetDataset"):
            return self._json(200, {"currentVersionNumber": self.server.version})
        if path.endswith("/datasets.DatasetApiService/DownloadDataset"):
            if body.get("datasetVersionNumber") != self.server.version:
                return self._json(404, {"code": 404, "message": "No such version"})
            self.send_response(302)
            self.send_header("Location", f"http://localhost/files/v{self.server.version}.zip")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._json(404, {"code": 404, "message": "Unknown call"})

    def do_GET(self) -> None:
        self.server.calls.append(("GET", urlsplit(self.path).path, dict(self.headers)))
        data = self.server.archive
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        self.send_header("X-Goog-Hash", f"md5={md5}")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        try:
            for i in range(start, len(data), 1 << 16):
                self.wfile.write(data[i : i + (1 << 16)])
                time.sleep(self.server.delay)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed or hung up: that is what one test does


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A layout-B copy and its zip, packaged as the Kaggle mirror's archive is."""
    root = tmp_path_factory.mktemp("kaggle-src")
    generate(root / "tree", SPEC)
    archive = root / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((root / "tree").rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root / "tree").as_posix())
    return root / "tree", archive.read_bytes()


@pytest.fixture
def standin(source_tree: tuple[Path, bytes]) -> Iterator[StandIn]:
    server = StandIn(source_tree[1], version=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def kaggle_env(server: StandIn, home: Path) -> dict[str, str]:
    """The environment that routes kagglehub to the stand-in; no credentials anywhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("KAGGLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"))
    }
    home.mkdir(parents=True, exist_ok=True)
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    env.update(
        HOME=str(home),
        KAGGLE_API_ENVIRONMENT="LOCALHOST",
        http_proxy=proxy,
        HTTP_PROXY=proxy,
    )
    return env


def download(env: dict[str, str], cache: Path, out: Path, handle: str = HANDLE, **popen: object):
    """scripts/download.py as the download rule runs it for source: kaggle."""
    cmd = [
        sys.executable, str(REPO / "scripts" / "download.py"), "--source", "kaggle",
        "--raw-dir", str(cache / "current" / handle), "--kaggle-handle", handle,
        "--kaggle-cache-dir", str(cache), "--archive-dir", str(cache / "unused"),
        "--synthetic-json", "{}", "--no-progress", "--out", str(out),
    ]
    if popen:
        return subprocess.Popen(cmd, env=env, **popen)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def test_pipeline_fetches_from_kaggle_once_and_merges_the_link(
    tmp_path: Path, standin: StandIn, source_tree: tuple[Path, bytes], monkeypatch
) -> None:
    cache = tmp_path / "kaggle-cache"
    data = {
        "source": "kaggle",
        "raw_dir": "unused",
        "expected_image_size": SPEC.image_size,
        "kaggle": {"cache_dir": str(cache)},
    }
    ws = make_workspace(tmp_path / "ws", {"data": data})
    for key, value in kaggle_env(standin, tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.upper().startswith("NO_PROXY")]:
        monkeypatch.delenv(key)

    proc = snakemake(ws, "--cores", "1", "results/tiny/data/summary.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    link = cache / "current" / HANDLE
    version_dir = cache / "datasets" / HANDLE / "versions" / "2"
    assert link.is_symlink() and link.resolve() == version_dir.resolve()
    assert not os.path.isabs(os.readlink(link)), "relative: the cache folder may move"
    raw = json.loads((ws / "results/tiny/data/raw.json").read_text())
    expected_files, expected_digest = file_list(source_tree[0])
    assert raw["kaggle"]["handle"] == HANDLE and raw["kaggle"]["version"] == 2
    assert (raw["kaggle"]["files"], raw["kaggle"]["file_list_sha256"]) == (
        expected_files, expected_digest,
    )
    assert raw["layout"]["layout"] == "B"
    summary = json.loads((ws / "results/tiny/data/summary.json").read_text())
    assert summary, "merge read the images through the link"
    assert len(standin.named("/GetDataset")) == 1 and len(standin.named("/DownloadDataset")) == 1

    assert planned_jobs(ws, "results/tiny/data/summary.json") == {}, "nothing reruns"

    # another run of the same version: kagglehub asks for the latest version, downloads nothing
    ws2 = make_workspace(tmp_path / "ws2", {"data": data, "run": "again"})
    proc = snakemake(ws2, "--cores", "1", "results/again/data/raw.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(standin.named("/DownloadDataset")) == 1 and len(standin.named("/GetDataset")) == 2
    again = json.loads((ws2 / "results/again/data/raw.json").read_text())
    assert again["content_digest"] == raw["content_digest"]

    # a pinned version that is already here: Kaggle is not asked at all
    calls = len(standin.calls)
    pinned = {**data, "kaggle": {"cache_dir": str(cache), "version": 2}}
    ws3 = make_workspace(tmp_path / "ws3", {"data": pinned, "run": "pinned"})
    proc = snakemake(ws3, "--cores", "1", "results/pinned/data/raw.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(standin.calls) == calls


def test_a_killed_download_resumes(
    tmp_path: Path, standin: StandIn, source_tree: tuple[Path, bytes]
) -> None:
    env = kaggle_env(standin, tmp_path / "home")
    cache = tmp_path / "cache"
    partial = cache / "datasets" / HANDLE / "2.archive"
    standin.delay = 0.05
    proc = download(env, cache, tmp_path / "r1" / "raw.json",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 0):
        assert proc.poll() is None, "the download finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = partial.stat().st_size
    assert 0 < kept < len(source_tree[1])
    assert not (cache / "current" / HANDLE).exists(), "no link to a half-fetched version"

    standin.delay = 0.0
    done = download(env, cache, tmp_path / "r2" / "raw.json")
    assert done.returncode == 0, done.stderr
    ranges = [h.get("Range") for _, path, h in standin.calls if path.endswith(".zip")]
    assert f"bytes={kept}-" in ranges, ranges
    record = json.loads((tmp_path / "r2" / "raw.json").read_text())["kaggle"]
    assert (record["files"], record["file_list_sha256"]) == file_list(source_tree[0])


def test_credentials_are_asked_for_only_when_kaggle_wants_them(
    tmp_path: Path, standin: StandIn
) -> None:
    env = kaggle_env(standin, tmp_path / "home")
    standin.require_auth = True
    refused = download(env, tmp_path / "cache", tmp_path / "raw.json")
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.stderr
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "~/.kaggle/", "kaggle.json", HANDLE):
        assert name in lines[0], lines[0]

    env.update(KAGGLE_USERNAME="someone", KAGGLE_KEY="secret")
    accepted = download(env, tmp_path / "cache", tmp_path / "raw.json")
    assert accepted.returncode == 0, accepted.stderr
    sent = standin.named("/DownloadDataset")[-1]["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"someone:secret").decode()


def test_an_unknown_handle_is_one_line(tmp_path: Path, standin: StandIn) -> None:
    env = kaggle_env(standin, tmp_path / "home")
    result = download(env, tmp_path / "cache", tmp_path / "raw.json", "someone/no-such-data")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "data.kaggle.handle" in lines[0] and "404" in lines[0], lines


def test_a_changed_cached_copy_is_named_not_used(tmp_path: Path, standin: StandIn) -> None:
    env = kaggle_env(standin, tmp_path / "home")
    cache = tmp_path / "cache"
    assert download(env, cache, tmp_path / "raw.json").returncode == 0
    version_dir = cache / "datasets" / HANDLE / "versions" / "2"
    victim = next(p for p in sorted(version_dir.rglob("*.bmp")))
    victim.unlink()
    result = download(env, cache, tmp_path / "raw.json")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(version_dir) in lines[0] and "delete" in lines[0], lines
