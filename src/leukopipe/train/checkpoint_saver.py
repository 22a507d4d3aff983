"""The files of one training run, modelled on timm's ``CheckpointSaver``: written, resumed, read.

:class:`CheckpointSaver` owns them all. In ``out_dir``: ``best.pt`` (the epoch with the best
validation macro-F1), ``last.pt`` (the final epoch), ``history.parquet`` (one row per
epoch) and ``provenance.json`` (host, time, code and package versions, and the two checkpoints'
sha256: the checkpoints themselves record no host or time, so identical runs give identical
bytes), written once training has finished. In ``resume_dir``: ``state.pt``, the complete
training state after every epoch, which a rerun with the same fingerprint continues; a state
with another fingerprint is moved aside to ``state.stale.pt``. The saver also keeps the
early-stopping counters (best metric and epoch, epochs without improvement), because they are
part of what a resumed run must continue from. Every file is written atomically.

:func:`read_torch_file` is the one way any of these files is read back: ``torch.load`` with
``weights_only=True``. The files hold tensors and plain Python values only (dicts, lists,
tuples, strings, numbers, None; the numpy RNG state is stored as lists), so nothing needs to be
allow-listed and a file that holds any other object is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import pickle
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from leukopipe.plumbing.atomic import atomic_path, write_json, write_parquet
from leukopipe.plumbing.errors import MissingInputError, UserError
from leukopipe.plumbing.hashing import sha256_file
from leukopipe.plumbing.provenance import provenance
from leukopipe.train.models import build_model

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STALE_STATE_FILE = "state.stale.pt"
LOCK_FILE = ".lock"  # held by the one training that owns the resume folder
LOG_FILE = "train.log"  # every attempt's log lines, replayed when a retry resumes
STATE_FORMAT = 1
BEST_FILE, LAST_FILE, HISTORY_FILE = "best.pt", "last.pt", "history.parquet"
PROVENANCE_FILE = "provenance.json"  # where and when the checkpoints beside it were written
ON_MISMATCH = ("restart", "error")
# What inference needs from best.pt/last.pt.
_CHECKPOINT_KEYS = ("state_dict", "backbone", "mean", "std", "image_size")


class CheckpointError(UserError, ValueError):
    """A checkpoint file cannot be used: unreadable, unsafe to unpickle, or not leukopipe's."""


class ForeignResumeState(UserError, RuntimeError):  # noqa: N818 - the message says what
    """The resume state was made by another configuration or data, and the run may not restart."""


class ResumeFolderBusy(UserError):  # noqa: N818 - the message says what is wrong
    """Another training holds the resume folder of this experiment."""


def read_torch_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; a refused or broken file names itself."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot be loaded with weights_only=True ({reason}); a leukopipe "
            "checkpoint holds tensors and plain values only: retrain, or delete the file"
        ) from exc


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained model from best.pt/last.pt alone (no config needed), in eval mode.

    Returns the model and the checkpoint's metadata (everything but the weights).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: checkpoint not found (train the experiment first)")
    meta = read_torch_file(path, map_location)
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise CheckpointError(f"{path}: not a leukopipe checkpoint (no {missing[0]!r} inside)")
    model = build_model(
        meta["backbone"], num_classes=len(meta.get("class_names", (0, 1))),
        image_size=meta.get("image_size"),
    )
    # a torch.compile'd model saves its weights under _orig_mod.
    state = {k.removeprefix("_orig_mod."): v for k, v in meta.pop("state_dict").items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # torch lists every mismatched tensor: the first says enough
        first = next((x.strip() for x in str(exc).splitlines()[1:] if x.strip()), str(exc))
        raise CheckpointError(
            f"{path}: its weights do not fit the backbone it records ({meta['backbone']}): "
            f"{first.rstrip('.')}; the file was altered or mixed up: retrain, or use the "
            "run's own best.pt"
        ) from exc
    model.eval()
    return model, meta


def _save(obj: dict[str, Any], target: Path) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as stream:
        try:
            # through a file object: the archive then holds no file name (torch.save would put
            # the temp file's random name inside), and a failed write surfaces as its OSError
            torch.save(obj, stream)
        except RuntimeError as exc:
            # torch wraps a failed write ("unexpected pos ..."); the disk's own error says why
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from exc
            raise


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class CheckpointSaver:
    """Best/last checkpoints, the per-epoch resume state and the early-stopping counters.

    Per epoch: :meth:`end_epoch` (history row, best model, counters), then :meth:`save_state`.
    Once :attr:`finished`: :meth:`save_outputs`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        resume_dir: str | os.PathLike[str],
        fingerprint: str,
        *,
        max_epochs: int,
        patience: int,
        on_mismatch: str = "restart",
        keep_state: bool = False,
    ) -> None:
        if on_mismatch not in ON_MISMATCH:
            raise ValueError(f"on_mismatch must be 'restart' or 'error', got {on_mismatch!r}")
        self.out_dir, self.state_path = Path(out_dir), Path(resume_dir) / STATE_FILE
        self.fingerprint, self.on_mismatch, self.keep_state = fingerprint, on_mismatch, keep_state
        self.max_epochs, self.patience = max_epochs, patience
        self.history: list[dict[str, Any]] = []
        self.best_metric, self.best_epoch = -math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict[str, float] = {}
        self.epochs_without_improvement, self.epochs_done = 0, 0
        self.finished, self.stopped_early = False, False
        self.resumed_from: int | None = None  # epochs done when this run resumed, else None

    # ------------------------------------------------------------------------------ ownership

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        """Hold the resume folder for this run: an exclusive lock (a second training of the same
        experiment fails at once instead of overwriting this one's state) and a log kept there,
        which a resumed run first replays so the step's log holds every epoch of every attempt.
        """
        folder = self.state_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK_FILE, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise ResumeFolderBusy(
                    f"{folder} is in use by another training of this experiment ({holder});"
                    " two would overwrite each other's resume state: wait for it or stop it"
                ) from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            lock.flush()
            with self._kept_log(folder / LOG_FILE):
                yield
            if self.finished and not self.keep_state:
                # removed while still held: a trainer starting now fails on the lock or finds
                # the finished outputs, and the folder is left as it was before training
                (folder / LOCK_FILE).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _kept_log(self, path: Path) -> Iterator[None]:
        if path.is_file() and path.stat().st_size:
            sys.stderr.write(path.read_text(encoding="utf-8", errors="replace"))
            sys.stderr.write(f"--- a new attempt: the lines above are from earlier ones ({path})\n")
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
        package = logging.getLogger("leukopipe")
        package.addHandler(handler)
        try:
            yield
        finally:
            package.removeHandler(handler)
            handler.close()
        if self.finished and not self.keep_state:
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ resume

    def resume(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any | None
    ) -> dict[str, Any] | None:
        """Continue from ``state.pt`` when its fingerprint matches: load the model, optimiser
        and scaler states and the counters; return the saved RNG state (None: start afresh)."""
        state = self._matching_state()
        if state is None:
            return None
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        self.history, self.best_state = state["history"], state["best_state"]
        self.best_metric, self.best_epoch = state["best_metric"], state["best_epoch"]
        self.epochs_without_improvement = state["epochs_without_improvement"]
        self.epochs_done, self.finished = state["epochs_done"], state["finished"]
        self.best_metrics, self.stopped_early = state["best_metrics"], state["stopped_early"]
        self.resumed_from = self.epochs_done
        return state["rng"]

    def _matching_state(self) -> dict[str, Any] | None:
        path = self.state_path
        if not path.is_file():
            return None
        try:
            state = read_torch_file(path)
            found = state.get("fingerprint") if state.get("format") == STATE_FORMAT else None
        except Exception as exc:  # unreadable: atomic writes make this rare; say so and go on
            log.warning("resume state %s is unreadable (%s); starting afresh", path, exc)
            found, state = "unreadable", None
        if found == self.fingerprint:
            return state
        if self.on_mismatch == "error":
            raise ForeignResumeState(
                f"resume state {path} belongs to another configuration or data set (fingerprint "
                f"{found}, this run {self.fingerprint}); delete {path} or use another --resume-dir"
            )
        stale = path.with_name(STALE_STATE_FILE)
        os.replace(path, stale)
        log.warning(
            "resume state %s was made with a different configuration or data (fingerprint %s, now "
            "%s); moved it to %s and starting afresh", path, found, self.fingerprint, stale,
        )
        return None

    # ---------------------------------------------------------------------------- per epoch

    def end_epoch(
        self,
        row: dict[str, Any],
        val: dict[str, float],
        model: nn.Module,
        timings: dict[str, float] | None = None,
    ) -> bool:
        """Record a finished epoch: its history row (``row`` + ``improved`` + ``timings``),
        the best model so far and the early-stopping counters. Returns whether it improved."""
        self.epochs_done = int(row["epoch"])
        improved = val["macro_f1"] > self.best_metric
        if improved:
            self.best_metric, self.best_epoch = val["macro_f1"], self.epochs_done
            self.epochs_without_improvement = 0
            self.best_state = _cpu_state_dict(model)
            self.best_metrics = {f"val_{k}": v for k, v in val.items()}
        else:
            self.epochs_without_improvement += 1
        # save_seconds is known only after save_state has written this very row
        self.history.append({**row, "improved": improved, **(timings or {}),
                             "save_seconds": math.nan})
        self.stopped_early = self.epochs_without_improvement >= self.patience
        self.finished = self.stopped_early or self.epochs_done >= self.max_epochs
        return improved

    def save_state(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: Any | None,
        rng: dict[str, Any],
    ) -> float:
        """Write the complete training state to ``state.pt`` atomically; return the seconds it
        took (also recorded as the last history row's ``save_seconds``)."""
        start = time.perf_counter()
        _save(
            {
                "format": STATE_FORMAT, "fingerprint": self.fingerprint,
                "epochs_done": self.epochs_done, "finished": self.finished,
                "stopped_early": self.stopped_early,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rng, "best_metric": self.best_metric, "best_epoch": self.best_epoch,
                "epochs_without_improvement": self.epochs_without_improvement,
                "history": self.history, "best_state": self.best_state,
                "best_metrics": self.best_metrics,
            },
            self.state_path,
        )
        seconds = time.perf_counter() - start
        self.history[-1]["save_seconds"] = seconds
        return seconds

    # ------------------------------------------------------------------------------- outputs

    def save_outputs(self, meta: dict[str, Any], model: nn.Module) -> dict[str, Path]:
        """best.pt, last.pt (``meta`` + outcome + weights), history.parquet and provenance.json;
        then remove ``state.pt`` unless ``keep_state``. Returns the four paths."""
        outcome = {
            **meta,
            "best_epoch": self.best_epoch,
            "best_val_metrics": self.best_metrics,
            "epochs_run": self.epochs_done,
            "stopped_early": self.stopped_early,
        }
        last_metrics = {k: self.history[-1][k] for k in
                        ("val_loss", "val_accuracy", "val_macro_f1", "val_auc")}
        paths = {"best": self.out_dir / BEST_FILE, "last": self.out_dir / LAST_FILE,
                 "history": self.out_dir / HISTORY_FILE,
                 "provenance": self.out_dir / PROVENANCE_FILE}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _save({**outcome, "kind": "best", "epoch": self.best_epoch,
               "val_metrics": self.best_metrics, "state_dict": self.best_state}, paths["best"])
        _save({**outcome, "kind": "last", "epoch": self.epochs_done,
               "val_metrics": last_metrics, "state_dict": _cpu_state_dict(model)}, paths["last"])
        write_parquet(paths["history"], pd.DataFrame(self.history))
        write_json(paths["provenance"], {
            **provenance(),
            "fingerprint": self.fingerprint,
            "resumed_from_epoch": self.resumed_from,
            # ties this record to the bytes it describes
            "sha256": {paths[k].name: sha256_file(paths[k]) for k in ("best", "last")},
        })
        if not self.keep_state:
            self.state_path.unlink(missing_ok=True)
        return paths
