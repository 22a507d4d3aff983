"""Kill a training job mid-epoch (SIGTERM, then SIGKILL), rerun it, compare with an undisturbed run.

The GPU check runs this in a child process: ``python -m leukopipe_tools.resume_check --work DIR
--device cuda --json-out result.json``. Every training run is the real ``scripts/train.py`` in a
session of its own; a kill goes to its whole process group, as SLURM signals every process of a
job (the DataLoader workers ignore SIGTERM and leave with the main process).

1. The undisturbed run trains ``epochs`` epochs (in this process: same settings).
2. The disturbed run is started; once it has saved two epochs (the time between the two saves
   is its epoch time ``dt``) it gets SIGTERM ``KILL_AT`` x ``dt`` later, i.e. inside epoch 3.
   The training loop stops at the next batch and exits 143 with epoch 2 saved.
3. Rerun: it resumes after epoch 2; one epoch after it saved its first epoch it gets SIGKILL,
   inside the following epoch: nothing is written, the last saved epoch stays.
4. Rerun to the end. A kill that landed after its epoch had finished (the epoch was shorter
   than the wait) does not count as mid-epoch: it is retried on the next epoch while there are
   epochs left.

Guarantees checked: each epoch appears exactly once in the final history and the run resumed
from the last completed epoch. On CPU the result must equal the undisturbed run bit for bit
(weights and history). On CUDA, cuDNN's autotuning picks kernels per process and some of them
accumulate in a non-deterministic order, so the check requires every per-epoch metric within
:data:`CUDA_TOLERANCE` of the undisturbed run instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukopipe.data.pixel_store import create_store
from leukopipe.plumbing.atomic import write_json, write_parquet
from leukopipe_tools.process_group import end_group, group_members

REPO = Path(__file__).resolve().parents[2]  # src/leukopipe_tools/<this> -> the checkout
KILL_AT = 0.4  # fraction of an epoch after the last save at which the signal is sent
# history columns compared with the undisturbed run (timing columns differ by nature)
COMPARED = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1",
            "val_auc", "improved"]
# Largest absolute per-epoch difference from the undisturbed run accepted on CUDA. The task is
# easy (the classes differ in brightness), so the metrics settle near their limits and kernel
# non-determinism moves them by far less than this; a resumed run that repeated, skipped or
# reordered an epoch's batches changes the early epochs' losses by more.
CUDA_TOLERANCE = {"train_loss": 0.05, "val_loss": 0.05, "train_accuracy": 0.02,
                  "val_accuracy": 0.02, "val_macro_f1": 0.02, "val_auc": 0.01}


def separable_split(folder: Path, name: str, n: int, size: int, seed: int) -> tuple[Path, Path]:
    """``n`` images in which ALL cells (label 1) are brighter than Hem cells, with noise:
    learnable in a few epochs, so the metrics settle instead of wandering."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    manifest, pixels = folder / f"{name}.parquet", folder / f"{name}_pixels.npy"
    with create_store(pixels, n, size) as store:
        for i in range(n):
            base = 150.0 if labels[i] else 100.0
            store[i] = np.clip(rng.normal(base, 40.0, (size, size, 3)), 0, 255).astype(np.uint8)
    write_parquet(manifest, pd.DataFrame({"image_id": [f"{name}{i:05d}" for i in range(n)],
                                          "label": labels.astype(np.int64),
                                          "store_row": np.arange(n, dtype=np.int64)}))
    return manifest, pixels


def _signature(path: Path) -> tuple[int, int] | None:
    """Changes with every save: the state is replaced atomically (new inode)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _epochs_saved(state: Path) -> int:
    import torch

    if not state.is_file():
        return 0
    return int(torch.load(state, map_location="cpu", weights_only=True)["epochs_done"])


class Trainer:
    """One training configuration: the same settings for every run, in-process or CLI."""

    def __init__(self, args: argparse.Namespace, data: dict[str, Path]):
        self.args, self.data = args, data
        self.settings: dict[str, Any] = {
            "backbone": args.backbone, "strategy": "full", "epochs": args.epochs,
            "patience": args.epochs, "batch_size": args.batch_size,
            "eval_batch_size": args.batch_size * 2, "lr": 1e-3, "seed": 0,
            "flips": True,  # the flip generator's state must survive a resume too
            "workers": args.workers, "amp": args.amp, "compile": False}

    def argv(self, run: Path) -> list[str]:
        argv = [sys.executable, str(REPO / "scripts" / "train.py")]
        for key, value in self.settings.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + flag[2:])
            else:
                argv += [flag, str(value)]
        argv += ["--device", self.args.device, "--out-dir", str(run / "run"),
                 "--resume-dir", str(run / "resume")]
        for key, path in self.data.items():
            argv += ["--" + key.replace("_", "-"), str(path)]
        return argv

    def undisturbed(self, run: Path) -> dict[str, Any]:
        """The reference run, in this process (it has torch loaded already)."""
        from leukopipe.train.loop import TrainConfig, train

        start = time.monotonic()
        train(TrainConfig(**self.settings), **self.data, out_dir=run / "run",
              resume_dir=run / "resume", device=self.args.device)
        return {"returncode": 0, "seconds": round(time.monotonic() - start, 1),
                "leftover_processes": 0}

    def start(self, run: Path, attempt: str) -> tuple[subprocess.Popen[bytes], Any]:
        run.mkdir(parents=True, exist_ok=True)
        log = open(run / f"{attempt}.log", "wb")  # noqa: SIM115 - closed by finish()
        proc = subprocess.Popen(self.argv(run), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        return proc, log

    def finish(self, proc: subprocess.Popen[bytes], log: Any, timeout: float) -> dict[str, Any]:
        """Wait for the run to end; then end whatever of its group is left."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            end_group(proc.pid, 5.0, leader=proc)
        log.close()
        time.sleep(0.5)  # DataLoader workers leave right after their main process
        left = len(group_members(proc.pid))
        if left:
            end_group(proc.pid, 5.0)
        return {"returncode": proc.returncode, "leftover_processes": left}


def kill_mid_epoch(trainer: Trainer, run: Path, attempt: str, sig: signal.Signals,
                   saves_first: int, dt: float | None, timeout: float) -> dict[str, Any]:
    """Start (or resume) the run, wait for ``saves_first`` epoch saves, then signal the whole
    process group ``KILL_AT`` epochs later. Returns what happened, ``dt`` included."""
    state = run / "resume" / "state.pt"
    before = _epochs_saved(state)
    proc, log = trainer.start(run, attempt)
    deadline = time.monotonic() + timeout
    last, saves, times = _signature(state), 0, []
    while saves < saves_first and proc.poll() is None and time.monotonic() < deadline:
        sig_now = _signature(state)
        if sig_now != last and sig_now is not None:
            last, saves = sig_now, saves + 1
            times.append(time.monotonic())
        time.sleep(0.005)
    if dt is None and len(times) >= 2:
        dt = times[-1] - times[-2]
    sent = proc.poll() is None and saves >= saves_first
    if sent:
        time.sleep(KILL_AT * (dt or 0.0))
        os.killpg(proc.pid, sig)
    out = trainer.finish(proc, log, timeout=max(5.0, deadline - time.monotonic()))
    after = _epochs_saved(state)
    return {"signal": sig.name, "attempt": attempt, "sent": sent, "epoch_seconds": dt,
            "epochs_saved_before": before, "epochs_seen_when_sent": before + saves,
            "epochs_saved_after": after,
            # nothing more was saved after the signal: it arrived inside the next epoch
            "mid_epoch": sent and after == before + saves, **out}


def compare(reference: Path, run: Path, exact: bool) -> dict[str, Any]:
    """How the finished disturbed run differs from the undisturbed one."""
    import torch

    ref_h, got_h = pd.read_parquet(reference / "history.parquet"), pd.read_parquet(
        run / "history.parquet")
    out: dict[str, Any] = {"epochs": got_h["epoch"].tolist(),
                           "epochs_match": got_h["epoch"].tolist() == ref_h["epoch"].tolist()}
    diffs = {c: float((got_h[c] - ref_h[c]).abs().max()) for c in CUDA_TOLERANCE
             if len(got_h) == len(ref_h)}
    out["max_abs_diff"] = diffs
    if exact:
        same_weights = True
        for name in ("best.pt", "last.pt"):
            a = torch.load(reference / name, map_location="cpu", weights_only=True)["state_dict"]
            b = torch.load(run / name, map_location="cpu", weights_only=True)["state_dict"]
            same_weights &= a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        same_history = out["epochs_match"] and ref_h[COMPARED].equals(got_h[COMPARED])
        out.update(criterion="bit-exact (CPU)", same_weights=bool(same_weights),
                   same_history=bool(same_history))
        out["passed"] = bool(same_weights and same_history)
    else:
        out.update(criterion="per-epoch metrics within tolerance (CUDA)", tolerance=CUDA_TOLERANCE)
        out["passed"] = bool(out["epochs_match"] and len(diffs) == len(CUDA_TOLERANCE) and all(
            diffs[c] <= tol for c, tol in CUDA_TOLERANCE.items()))
    return out


def check(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    tm, tp = separable_split(data_dir, "train", args.train_images, args.image_size, 1)
    vm, vp = separable_split(data_dir, "val", args.val_images, args.image_size, 2)
    trainer = Trainer(args, {"train_manifest": tm, "train_pixels": tp,
                             "val_manifest": vm, "val_pixels": vp})
    result: dict[str, Any] = {"settings": {**trainer.settings, "device": args.device,
                                           "image_size": args.image_size,
                                           "train_images": args.train_images,
                                           "val_images": args.val_images},
                              "kill_at_fraction_of_epoch": KILL_AT, "kills": []}

    def save(status: str, reason: str = "") -> dict[str, Any]:
        result.update(status=status, reason=reason)
        write_json(args.json_out, result)
        return result

    save("running")
    result["undisturbed"] = trainer.undisturbed(work / "undisturbed")
    save("running")

    run = work / "disturbed"
    dt = None
    for n, sig in enumerate((signal.SIGTERM, signal.SIGKILL)):
        while True:
            attempt = f"{sig.name.lower()}-{len(result['kills']) + 1}"
            kill = kill_mid_epoch(trainer, run, attempt, sig, saves_first=2 if n == 0 and
                                  not result["kills"] else 1, dt=dt, timeout=args.run_timeout)
            dt = kill["epoch_seconds"]
            result["kills"].append(kill)
            save("running")
            no_room = kill["epochs_saved_after"] >= args.epochs - 1
            if kill["mid_epoch"] or not kill["sent"] or no_room:
                break
        if not kill["mid_epoch"]:
            return save("failed", f"{sig.name} did not land inside an epoch: see {attempt}.log")
        expected = 143 if sig == signal.SIGTERM else -signal.SIGKILL
        if kill["returncode"] != expected:
            return save("failed", f"{sig.name}: exit code {kill['returncode']}, expected "
                        f"{expected}: see disturbed/{attempt}.log")
    proc, log = trainer.start(run, "final")
    result["final"] = trainer.finish(proc, log, timeout=args.run_timeout)
    if result["final"]["returncode"] != 0:
        return save("failed", "the final rerun failed: see disturbed/final.log")
    result["comparison"] = compare(work / "undisturbed" / "run", run / "run",
                                   exact=args.device == "cpu")
    leftovers = sum(k["leftover_processes"] for k in result["kills"])
    if leftovers:
        return save("failed", f"{leftovers} process(es) outlived a killed run")
    if not result["comparison"]["passed"]:
        return save("failed", "the resumed run differs from the undisturbed run")
    return save("ok")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="scratch folder")
    p.add_argument("--json-out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--train-images", type=int, default=768)
    p.add_argument("--val-images", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--amp", default="bf16")
    p.add_argument("--run-timeout", type=float, default=120.0,
                   help="seconds any single training run may take")
    result = check(p.parse_args(argv))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
