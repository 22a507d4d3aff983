"""Faults a cluster meets: a full or read-only disk, a killed worker or step, a raw image changed
after the merge step, and nothing to predict on. Each must end quickly with one line that says
what is wrong, and leave no temp file behind.

The full and read-only disks are real file systems: a small tmpfs mounted for the test (root
only; elsewhere those tests are skipped).
"""

from __future__ import annotations

import errno
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fault_tasks import die_of_first
from PIL import Image

import leukopipe.data.merge as merge
import leukopipe.data.pixel_store as pixel_store
from leukopipe.augment.plan import materialise_plain
from leukopipe.data.imageio import ChangedImageError
from leukopipe.data.pixel_store import create_store, open_store
from leukopipe.data.raw_layout import locate
from leukopipe.data.synthetic import SyntheticSpec, generate
from leukopipe.evaluate.predict import NoImagesError, list_images
from leukopipe.plumbing import atomic, cli
from leukopipe.plumbing.diskspace import DiskFullError
from leukopipe.plumbing.interrupt import StepInterrupted
from leukopipe.plumbing.workers import WorkerDiedError, run_pool

ROOT = Path(__file__).resolve().parents[2]
SIZE = 48  # stored image side
TARGET = 300  # images per class after augmenting: enough work to signal a run mid-way
DEADLINE_S = 240  # "ends quickly": a hang fails the test (generous: the CI machine is shared)


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """mount(size, readonly=False) -> a fresh folder on its own small tmpfs."""
    mounted: list[Path] = []

    def mount(size: str, readonly: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True, text=True,
        )
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small raw data set in the C-NMC layout, its index and training manifest (real hashes)."""
    base = tmp_path_factory.mktemp("faults")
    raw = base / "cnmc"
    generate(raw, SyntheticSpec(
        seed=5, image_size=64, train_all_subjects=3, train_hem_subjects=3,
        prelim_all_subjects=1, prelim_hem_subjects=1, cells_per_subject=(4, 6), final_images=2,
    ))
    index, _ = merge.build_index(locate(raw), 64)
    paths = {"raw": raw, "index": base / "index.parquet", "train": base / "train.parquet"}
    index.to_parquet(paths["index"], index=False)
    index[index.subset != "prelim"].to_parquet(paths["train"], index=False)
    (base / "raw.json").write_text(f'{{"raw_dir": "{raw}"}}')
    paths["raw_json"] = base / "raw.json"
    return paths


def augment_cmd(train: Path, out: Path, workers: int) -> list[str]:
    # the fixture's manifests hold absolute paths, which any --raw-dir leaves as they are
    return [
        sys.executable, "scripts/augment.py", "--train-manifest", str(train), "--raw-dir", "/",
        "--seed", "0", "--transforms-json", "{}",
        "--image-size", str(SIZE), "--target-per-class", str(TARGET), "--workers", str(workers),
        "--manifest-out", str(out / "train_balanced.parquet"),
        "--pixels-out", str(out / "train_pixels.npy"), "--stats-out", str(out / "stats.json"),
    ]


def resize_cmd(manifest: Path, out: Path, workers: int) -> list[str]:
    return [
        sys.executable, "scripts/resize.py", "--manifest", str(manifest), "--raw-dir", "/",
        "--image-size", str(SIZE), "--workers", str(workers),
        "--manifest-out", str(out / "val.parquet"), "--pixels-out", str(out / "val_pixels.npy"),
    ]


def run_step(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp." in p.name)


def start_and_wait_for_temp(cmd: list[str], folder: Path) -> subprocess.Popen[str]:
    """Start ``cmd`` in its own process group; return once its pixel store's temp file exists."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + DEADLINE_S
    while not (folder.is_dir() and any(".npy.tmp." in p.name for p in folder.iterdir())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no temp store appeared: {proc.communicate()}")
        time.sleep(0.005)
    return proc


# ----------------------------------------------------------------------------- full disk
def test_store_reserves_its_space_up_front(tmpfs: Callable[..., Path]) -> None:
    disk = tmpfs("256k")
    n = 40  # 40 * 48 * 48 * 3 = 276,480 bytes of pixels: more than the whole disk
    with pytest.raises(DiskFullError) as err, create_store(disk / "s.npy", n, SIZE):
        pytest.fail("the block must not run: the space is reserved before it")
    message = str(err.value)
    needed, free = (int(x) for x in re.search(r"needs (\d+) bytes .*?, (\d+) bytes", message)
                    .groups())
    assert f"in {disk} " in message and "\n" not in message
    assert n * SIZE * SIZE * 3 <= needed < n * SIZE * SIZE * 3 + 4096
    assert 0 < free <= 256 * 1024
    assert list(disk.iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_augment_on_a_full_disk_stops_at_once_in_one_line(
    data: dict[str, Path], tmpfs: Callable[..., Path], workers: int
) -> None:
    disk = tmpfs("1m")  # the store needs 2 * 300 * 48 * 48 * 3 = 4.1 MB
    out = disk / "augment"
    start = time.monotonic()
    proc = run_step(augment_cmd(data["train"], out, workers))
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"not enough disk space in {out} " in line
    assert re.search(r"needs \d+ bytes .* \d+ bytes .*are free", line), line
    assert time.monotonic() - start < DEADLINE_S
    assert list(out.iterdir()) == []  # neither temp files nor outputs


@pytest.mark.timeout(DEADLINE_S)  # a pool that waits for a dead worker hangs
def test_worker_sigbus_on_a_full_disk_is_an_error_naming_the_folder(
    data: dict[str, Path], tmpfs: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the reservation (a file system that cannot preallocate, filled by someone else),
    # workers writing the memory map die of SIGBUS: the pool must raise, not wait forever.
    monkeypatch.setattr(pixel_store, "reserve", lambda *a, **k: None)
    disk = tmpfs("128k")
    manifest = pd.read_parquet(data["index"])
    assert len(manifest) * SIZE * SIZE * 3 > 2 * 128 * 1024
    with pytest.raises(WorkerDiedError, match=rf"SIGBUS.* are free in {disk}"):
        materialise_plain(manifest, SIZE, disk / "val.npy", workers=2)
    assert list(disk.iterdir()) == []


def test_full_disk_while_writing_any_output_is_one_line(
    tmpfs: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmpfs("64k")
    target = disk / "eval" / "metrics.json"

    def main(_argv: object) -> int:
        atomic.write_text(target, "x" * 200_000)
        return 0

    assert cli.run(main, []) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {target}: No space left on device (")
    assert f"bytes free in {target.parent})" in line and "larger disk" in line
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("step", ["augment", "resize"])
def test_a_failed_manifest_write_leaves_no_store_without_its_manifest(
    data: dict[str, Path], tmp_path: Path, step: str
) -> None:
    """Run by hand with a manifest that cannot be written (its folder is a file): the complete
    store must not stay behind, unnamed by any manifest and filling the disk."""
    out = tmp_path / "store"
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the manifest's folder should be\n")
    cmd = augment_cmd(data["train"], out, 1) if step == "augment" else resize_cmd(
        data["index"], out, 1)
    flag = cmd.index("--manifest-out") + 1
    cmd[flag] = str(blocked / Path(cmd[flag]).name)
    proc = run_step(cmd)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = error_lines(proc.stderr)
    assert f"cannot write {cmd[flag]}" in line
    assert list(out.iterdir()) == []  # neither the store nor its temp file


# ----------------------------------------------------------------------------- dead workers
@pytest.mark.timeout(DEADLINE_S)  # a pool that waits for a dead worker hangs
def test_a_killed_worker_raises_instead_of_hanging() -> None:
    start = time.monotonic()
    with pytest.raises(WorkerDiedError, match=r"SIGKILL.*out-of-memory"):
        run_pool(signal.raise_signal, [signal.SIGKILL], 1, lambda i, r: None,
                 what="testing", context="spawn")
    assert time.monotonic() - start < DEADLINE_S


def test_pool_results_and_task_errors() -> None:
    got: dict[int, float] = {}
    run_pool(math.sqrt, [4.0, 9.0, 16.0], 2, got.__setitem__, what="testing")
    assert got == {0: 2.0, 1: 3.0, 2: 4.0}
    with pytest.raises(ValueError, match="math domain error"):  # the task's own error, unchanged
        run_pool(math.sqrt, [4.0, -1.0], 2, lambda i, r: None, what="testing")


@pytest.mark.timeout(DEADLINE_S)  # a pool that waits for a dead worker hangs
def test_workers_stopped_by_sigterm_count_as_a_stop_request() -> None:
    with pytest.raises(StepInterrupted) as err:
        run_pool(signal.raise_signal, [signal.SIGTERM], 1, lambda i, r: None, what="testing")
    assert err.value.exit_code == 143


@pytest.mark.timeout(DEADLINE_S)  # a pool that waits for a dead worker hangs
def test_merge_pool_raises_when_a_worker_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    # merge's decoding pool (forkserver) goes through run_pool too
    monkeypatch.setattr(merge, "_inspect_chunk", die_of_first)
    with pytest.raises(WorkerDiedError, match=r"decoding the raw images.*SIGKILL"):
        merge.inspect_all([signal.SIGKILL] * 16, workers=2)  # type: ignore[list-item]


# ----------------------------------------------------------------------------- killed steps
@pytest.mark.parametrize("step", ["augment", "resize"])
def test_sigkill_mid_write_then_rerun_leaves_no_temp_file(
    data: dict[str, Path], tmp_path: Path, step: str
) -> None:
    # augment in-process, resize with a worker pool (spawning torch-importing augment workers
    # would only make the test slower: both steps write the store through the same code)
    out = tmp_path / "out"
    cmd = (augment_cmd(data["train"], out, 1) if step == "augment"
           else resize_cmd(data["index"], out, 2))
    proc = start_and_wait_for_temp(cmd, out)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers, as the scheduler does
    proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == -signal.SIGKILL  # it was killed mid-way, not finished
    assert temps(out), "a SIGKILL leaves its temp file (what the rerun must remove)"
    again = run_step(cmd)
    assert again.returncode == 0, again.stderr
    assert temps(out) == []
    assert "left by an earlier run that was killed" in again.stderr
    assert open_store(next(out.glob("*_pixels.npy"))).shape[1:] == (SIZE, SIZE, 3)


POOL_OF_LONG_TASKS = """
import sys
sys.path.insert(0, "tests")
from fault_tasks import sleep_for
from leukopipe.plumbing.workers import run_pool
run_pool(sleep_for, [[120], [120]], 2, print, what="sleeping")
"""


def test_pool_workers_die_with_a_step_killed_by_sigkill() -> None:
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", POOL_OF_LONG_TASKS], cwd=ROOT,
                            start_new_session=True)
    step = psutil.Process(proc.pid)
    deadline = time.monotonic() + DEADLINE_S
    while len(step.children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # the workers are in their long task now
    workers = step.children()
    proc.kill()  # the step alone: nobody signals its workers
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)  # their task would take 120 s
    for orphan in alive:
        orphan.kill()
    assert not alive, f"orphaned workers: {[p.pid for p in alive]}"


def test_killed_merge_writer_leaves_a_temp_the_rerun_removes(
    data: dict[str, Path], tmp_path: Path
) -> None:
    index, summary = tmp_path / "index.parquet", tmp_path / "summary.json"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal\n"
        "from leukopipe.plumbing.atomic import atomic_path\n"
        f"with atomic_path({str(index)!r}) as tmp:\n"
        "    tmp.write_bytes(b'half an index')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )], cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S)
    assert killed.returncode == -signal.SIGKILL and temps(tmp_path)
    done = run_step([sys.executable, "scripts/merge.py", "--raw-json", str(data["raw_json"]),
                     "--raw-dir", str(data["raw"]), "--expected-size", "64", "--workers", "2", "--index-out", str(index),
                     "--summary-out", str(summary)])
    assert done.returncode == 0, done.stderr
    assert temps(tmp_path) == []
    assert len(pd.read_parquet(index)) == len(pd.read_parquet(data["index"]))


def test_remove_stale_temps_touches_only_that_outputs_leftovers(tmp_path: Path) -> None:
    leftovers = [tmp_path / ".a.parquet.tmp.x1.parquet", tmp_path / ".a.parquet.tmp.y2.parquet"]
    others = [tmp_path / ".ab.parquet.tmp.z3.parquet", tmp_path / "a.parquet.tmp.txt"]
    for p in leftovers + others:
        p.write_bytes(b"x")
    assert sorted(atomic.remove_stale_temps(tmp_path / "a.parquet")) == sorted(leftovers)
    assert sorted(tmp_path.iterdir()) == sorted(others)
    assert atomic.remove_stale_temps(tmp_path / "missing" / "a.parquet") == []


@pytest.mark.parametrize(("step", "workers", "group"),
                         [("augment", 1, False), ("resize", 2, True), ("resize", 2, False)])
def test_sigterm_stops_the_step_with_143_and_no_temp_file(
    data: dict[str, Path], tmp_path: Path, step: str, workers: int, group: bool
) -> None:
    out = tmp_path / "out"
    cmd = (augment_cmd(data["train"], out, workers) if step == "augment"
           else resize_cmd(data["index"], out, workers))
    proc = start_and_wait_for_temp(cmd, out)
    if group:  # SLURM signals every process of the job, workers included
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------- changed raw data
def _copy_with_one_changed(data: dict[str, Path], folder: Path) -> tuple[pd.DataFrame, Path]:
    """Three indexed images copied to ``folder`` (index hashes kept); the second is then changed."""
    manifest = pd.read_parquet(data["index"]).head(3).copy()
    folder.mkdir()
    for i, src in enumerate(manifest["path"]):
        dst = folder / Path(src).name
        dst.write_bytes(Path(src).read_bytes())
        manifest.iloc[i, manifest.columns.get_loc("path")] = str(dst)
    changed = Path(manifest["path"].iloc[1])
    pixels = np.array(Image.open(changed))
    pixels[0, 0] ^= 0xFF  # one pixel differs: same size, still a valid image
    Image.fromarray(pixels).save(changed)
    return manifest, changed


@pytest.mark.timeout(DEADLINE_S)
@pytest.mark.parametrize("workers", [1, 2])
def test_raw_image_changed_after_merge_is_refused(
    data: dict[str, Path], tmp_path: Path, workers: int
) -> None:
    manifest, changed = _copy_with_one_changed(data, tmp_path / "raw")
    out = tmp_path / "out"
    with pytest.raises(ChangedImageError, match=rf"{re.escape(str(changed))} changed after"):
        materialise_plain(manifest, SIZE, out / "val.npy", workers=workers)
    assert list(out.iterdir()) == []


def test_resize_names_the_changed_image_in_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    manifest, changed = _copy_with_one_changed(data, tmp_path / "raw")
    manifest.to_parquet(tmp_path / "m.parquet", index=False)
    proc = run_step(resize_cmd(tmp_path / "m.parquet", tmp_path / "out", 1))
    assert proc.returncode == 1
    (line,) = error_lines(proc.stderr)
    assert f"{changed} changed after the merge step" in line and "merge reruns by itself" in line


# ----------------------------------------------------------------------------- OS errors
def test_read_only_results_folder_is_one_line(
    data: dict[str, Path], tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    if os.geteuid() == 0:  # root writes into any folder: a read-only file system stops it
        results, reason, advice = tmpfs("1m", readonly=True), "Read-only file system", "writable"
    else:
        results, reason, advice = tmp_path / "results", "Permission denied", "permissions"
        results.mkdir(mode=0o555)
    proc = run_step(resize_cmd(data["index"], results / "augment", 1))
    assert proc.returncode == 1
    (line,) = error_lines(proc.stderr)
    assert f"cannot write {results / 'augment'}" in line and reason in line and advice in line


def _main_raising(exc: BaseException) -> Callable[[object], int]:
    def main(_argv: object) -> int:
        raise exc

    return main


@pytest.mark.parametrize(("exc", "expected"), [
    (PermissionError(errno.EACCES, "Permission denied", "/data/results/run"),
     "error: /data/results/run: Permission denied; check its owner and permissions"),
    (OSError(errno.EROFS, "Read-only file system", "/data/results/run/x.json"),
     "error: /data/results/run/x.json: Read-only file system; point the results folder"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere/at/all/x.parquet"),
     "error: /nowhere/at/all/x.parquet: its folder /nowhere/at/all does not exist"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "error: Disk quota exceeded; free space"),
])
def test_user_fixable_os_errors_are_one_line(
    exc: OSError, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(_main_raising(exc), []) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(expected) and "\n" not in err


@pytest.mark.parametrize("exc", [OSError(errno.EBADF, "Bad file descriptor"), OSError("odd")])
def test_os_errors_that_are_bugs_keep_their_traceback(exc: OSError) -> None:
    with pytest.raises(OSError) as err:
        cli.run(_main_raising(exc), [])
    assert err.value is exc


def test_sigterm_in_a_step_is_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(_main_raising(StepInterrupted(signal.SIGTERM)), []) == 143


# ----------------------------------------------------------------------------- train
TRAIN_EXIT_S = 60  # "within seconds" of the error: start-up and one tiny epoch on a busy CPU

# the training step's command line, with validation failing as a GPU out of memory would:
# the error comes from inside the loop while the loader workers run
FAILING_TRAIN = """
import sys
import leukopipe.train.loop as loop
from leukopipe.plumbing import cli
sys.path.insert(0, "scripts")
import train

def out_of_memory(*args, **kwargs):
    raise RuntimeError("CUDA out of memory (simulated in validate)")

loop.validate = out_of_memory
sys.exit(cli.run(train.main, sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from train_fixtures import write_data

    return write_data(tmp_path_factory.mktemp("train"), n_train=16, n_val=8)


def train_args(data: dict[str, Path], out: Path, workers: int) -> list[str]:
    args = ["--backbone", "resnet18", "--strategy", "full", "--epochs", "2",
            "--batch-size", "8", "--lr", "1e-3", "--device", "cpu", "--workers", str(workers),
            "--out-dir", str(out / "run"), "--resume-dir", str(out / "resume")]
    for key, path in data.items():
        args += ["--" + key.replace("_", "-"), str(path)]
    return args


def run_train(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a training command; a process still alive after TRAIN_EXIT_S fails the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TRAIN_EXIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its loader workers
        out, err = proc.communicate()
        raise AssertionError(
            f"training still running {TRAIN_EXIT_S} s after start: {err[-2000:]}"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("workers", [0, 1])
def test_an_error_inside_training_ends_the_process(
    train_data: dict[str, Path], tmp_path: Path, workers: int
) -> None:
    # a bug keeps its traceback, and the persistent loader workers (which ignore SIGTERM)
    # must not keep the interpreter waiting for them at exit
    proc = run_train([sys.executable, "-c", FAILING_TRAIN,
                         *train_args(train_data, tmp_path, workers)])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "RuntimeError: CUDA out of memory (simulated in validate)" in proc.stderr


def test_training_on_a_full_disk_ends_in_one_line(
    train_data: dict[str, Path], tmpfs: Callable[..., Path]
) -> None:
    disk = tmpfs("8m")  # resnet18's resume state (weights + Adam moments) is ~130 MB
    proc = run_train([sys.executable, "scripts/train.py",
                         *train_args(train_data, disk, workers=1)])
    assert proc.returncode == 1, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert f"cannot write {disk / 'resume' / 'state.pt'}: No space left on device" in line
    assert "bytes free in" in line and temps(disk) == []


# ----------------------------------------------------------------------------- predict
def test_predict_on_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoImagesError, match=rf"no images in {re.escape(str(empty))}: .*\.bmp"):
        list_images(empty)
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(NoImagesError, match=r"1 other file\(s\) there.*\.png"):
        list_images(empty)
    csv = tmp_path / "list.csv"
    csv.write_text("path\n")
    with pytest.raises(NoImagesError, match="lists no image paths"):
        list_images(csv)


def test_predict_cli_on_an_empty_folder_exits_1_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "new_cells"
    empty.mkdir()
    out = tmp_path / "pred.csv"
    proc = run_step([sys.executable, "scripts/predict.py", "--checkpoint",
                     str(tmp_path / "best.pt"), "--images", str(empty), "--out", str(out)])
    assert proc.returncode == 1
    (line,) = error_lines(proc.stderr)
    assert f"no images in {empty}" in line and ".bmp, .png" in line
    assert not out.exists()

