"""data.raw_dir naming a downloaded archive: extracted once into data.archive_dir, never modified."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from leukopipe.data.download import raw_folder
from leukopipe.data.raw_identity import download_identity
from leukopipe.data.synthetic import SyntheticSpec, generate

REPO = Path(__file__).resolve().parents[2]


def _mac_zip(tmp_path: Path) -> Path:
    """A layout-B copy zipped the way macOS's Archive Utility does it: with __MACOSX/ debris."""
    src = tmp_path / "src"
    generate(src, SyntheticSpec(seed=1, layout="B", image_size=32, train_all_subjects=3,
                                train_hem_subjects=3, prelim_all_subjects=1,
                                prelim_hem_subjects=1, cells_per_subject=(2, 2), final_images=1))
    archive = tmp_path / "downloads" / "C-NMC_Leukemia.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*")):
            rel = p.relative_to(src).as_posix()
            zf.write(p, rel)
            if p.is_file():
                parent, _, name = rel.rpartition("/")
                zf.writestr(f"__MACOSX/{parent}/._{name}".replace("//", "/"), b"\x00\x05\x16\x07")
        zf.writestr(".DS_Store", b"\x00" * 10)
    return archive


def _download(archive: Path, dest: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, str(REPO / "scripts" / "download.py"), "--source", "existing",
            "--raw-dir", str(dest), "--raw-archive", str(archive),
            "--archive-dir", str(dest.parent), "--synthetic-json", "{}", "--out", str(out),
        ],
        capture_output=True, text=True, check=False,
    )


def test_archive_is_extracted_once_and_never_modified(tmp_path: Path) -> None:
    archive = _mac_zip(tmp_path)
    before = (archive.stat().st_mtime_ns, hashlib.sha256(archive.read_bytes()).hexdigest())
    data = {"source": "existing", "raw_dir": str(archive), "archive_dir": str(tmp_path / "ext")}
    dest = raw_folder(data)
    assert dest == tmp_path / "ext" / "C-NMC_Leukemia"
    identity = download_identity(data, tmp_path / "results" / "raw_hashes.json")
    assert identity == f"existing:archive:{before[1]}"

    first = _download(archive, dest, tmp_path / "r1" / "raw.json")
    assert first.returncode == 0, first.stderr
    record = json.loads((tmp_path / "r1" / "raw.json").read_text())
    assert record["layout"]["layout"] == "B" and record["raw_dir"] == str(dest)
    assert not list((tmp_path / "ext").glob(".*extracting"))  # atomic: no leftovers
    made = dest.stat().st_mtime_ns
    second = _download(archive, dest, tmp_path / "r2" / "raw.json")
    assert second.returncode == 0, second.stderr
    assert dest.stat().st_mtime_ns == made, "the extraction is reused, not redone"
    again = json.loads((tmp_path / "r2" / "raw.json").read_text())
    assert again["content_digest"] == record["content_digest"]
    after = (archive.stat().st_mtime_ns, hashlib.sha256(archive.read_bytes()).hexdigest())
    assert after == before, "the source archive is only read"


def test_a_missing_archive_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "C-NMC.tar.gz"
    result = _download(missing, tmp_path / "ext" / "C-NMC", tmp_path / "raw.json")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(missing) in lines[0] and "does not exist" in lines[0]
