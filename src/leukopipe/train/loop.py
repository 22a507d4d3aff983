"""Fine-tune one experiment (backbone x strategy x seed): resumable, early-stopped, reproducible.

Resume contract: after every epoch the complete training state goes atomically to
``resume_dir/state.pt``. On start, a state whose fingerprint (training config without
``workers``, plus the identity of the train/val data) matches is continued from the next
epoch; a state with a different fingerprint is moved aside to ``state.stale.pt`` and training
starts afresh (``on_mismatch="error"`` refuses instead). On SIGTERM or SIGUSR1 (SLURM
preemption / time limit) training stops at the next batch boundary and raises
:class:`TrainingInterrupted`; the CLI exits with ``128 + signal`` (143 for SIGTERM, 138 for
SIGUSR1). The interrupted epoch is redone on restart, so a resumed run reproduces an
uninterrupted one (bit-identically on CPU).

Epochs are numbered from 1 in history and checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from sklearn.metrics import f1_score, roc_auc_score
from torch import nn

from leukopipe.train.loader import (
    BatchDataset,
    DeviceTransform,
    EpochBatchSampler,
    make_loader,
    resolve_workers,
)
from leukopipe.train.models import (
    STRATEGIES,
    StrategySummary,
    apply_strategy,
    build_model,
    normalisation,
    optimizer_param_groups,
    set_train_mode,
)
from leukopipe.train.weights import load_pretrained
from leukopipe.workflow.atomic import atomic_path, write_parquet
from leukopipe.workflow.provenance import code_version, provenance

log = logging.getLogger(__name__)

CLASS_NAMES = ["hem", "all"]  # label 0 = Hem (healthy), 1 = ALL (leukemic)
STATE_FILE = "state.pt"
STATE_FORMAT = 1
AMP_MODES = ("bf16", "fp16", "none")
# Config fields that cannot change results, so a resume may differ in them.
_NOT_FINGERPRINTED = ("workers",)


@dataclass
class TrainConfig:
    """Everything that defines one training run (the CLI exposes each field as a flag)."""

    backbone: str = field(metadata={"help": "timm model name, e.g. resnet50, efficientnet_b0"})
    strategy: str = field(
        metadata={"help": "fine-tuning strategy: frozen (head only), partial (deepest "
                  "--partial-stages stages + head) or full"}
    )
    partial_stages: int = field(
        default=2, metadata={"help": "stages trained by the 'partial' strategy, counted from "
                             "the deepest (timm's stage grouping)"}
    )
    epochs: int = field(default=50, metadata={"help": "maximum number of epochs"})
    patience: int = field(
        default=15, metadata={"help": "stop after this many epochs without a better val macro-F1"}
    )
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=64, metadata={"help": "training batch size"})
    eval_batch_size: int = field(default=256, metadata={"help": "validation batch size"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay (L2)"})
    layer_decay: float | None = field(
        default=None, metadata={"help": "layer-wise learning-rate decay in (0, 1): each layer "
                                "below the head trains at this times the one above; none = off"}
    )
    flips: bool = field(
        default=False, metadata={"help": "random horizontal/vertical flips on the device"}
    )
    workers: int | str = field(
        default="auto", metadata={"help": "DataLoader worker processes, or 'auto' (CPUs of this "
                                  "job minus one, at most 8)"}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    amp: str = field(
        default="bf16", metadata={"help": "mixed precision on CUDA: bf16, fp16 or none "
                                  "(always off on CPU)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for init, data order and flips"})
    pretrained_weights: str | None = field(
        default=None, metadata={"help": "local ImageNet weights (.safetensors), or none to "
                                "train from scratch"}
    )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "partial_stages"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.lr < 0 or self.weight_decay < 0:
            raise ValueError("lr and weight_decay must be >= 0")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1] or none, got {self.layer_decay}")
        if self.layer_decay == 1:
            self.layer_decay = None  # the same run either way, so the same fingerprint
        if self.pretrained_weights is not None:
            self.pretrained_weights = str(self.pretrained_weights)
            if self.pretrained_weights.lower() == "none":
                self.pretrained_weights = None
        if self.workers != "auto":
            self.workers = int(self.workers)


class TrainingInterrupted(Exception):  # noqa: N818 - it is not an error, it is a stop request
    """Training stopped on a signal; the last completed epoch is saved in the resume state."""

    def __init__(self, signum: int, epochs_done: int):
        self.signum, self.epochs_done = signum, epochs_done
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} after {epochs_done} completed epoch(s); rerun the same command "
            "to resume"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# ---------------------------------------------------------------------------- set-up helpers


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def prepare_model(
    cfg: TrainConfig, image_size: int | None = None
) -> tuple[nn.Module, StrategySummary, dict[str, Any] | None]:
    """Build the model for ``cfg`` and ``image_size`` px images (head initialised from
    ``cfg.seed``), load weights, freeze."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.backbone, num_classes=len(CLASS_NAMES), image_size=image_size)
    report = None
    if cfg.pretrained_weights:
        report = load_pretrained(model, cfg.pretrained_weights, cfg.backbone)
    summary = apply_strategy(model, cfg.strategy, cfg.partial_stages)
    return model, summary, report


class _StopFlag:
    signum: int | None = None


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopFlag]:
    """SIGTERM/SIGUSR1 only set a flag; the loop acts on it at the next batch boundary."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, _frame: Any) -> None:
        flag.signum = signum  # nothing else: logging from a handler can deadlock

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)


@contextlib.contextmanager
def _numerics(device: torch.device) -> Iterator[None]:
    """Reproducible kernels on CPU; fast autotuned kernels on CUDA."""
    if device.type != "cuda":
        before = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    yield


def _read_split(manifest: Path, pixels: Path) -> tuple[pd.DataFrame, BatchDataset]:
    frame = pd.read_parquet(manifest)
    if "label" not in frame.columns:
        raise ValueError(f"manifest {manifest} has no 'label' column; rerun the split step")
    bad = sorted(set(frame["label"].dropna().unique()) - {0, 1})
    if bad or frame["label"].isna().any() or len(frame) == 0:
        raise ValueError(
            f"manifest {manifest}: labels must be 0 (Hem) or 1 (ALL) and the manifest must not "
            f"be empty (found {len(frame)} rows, bad labels {bad[:5]}); rerun the split step"
        )
    rows = frame["store_row"].to_numpy() if "store_row" in frame.columns else None
    return frame, BatchDataset(pixels, frame["label"].to_numpy(), rows)


def _frame_digest(frame: pd.DataFrame) -> str:
    try:
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    except TypeError:  # unhashable cells (lists, dicts): hash their text instead
        hashed = pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def fingerprint(cfg: TrainConfig, data_identity: dict[str, Any]) -> str:
    """Identifies a run: a resume state is only continued under the same fingerprint."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in _NOT_FINGERPRINTED}
    blob = json.dumps({"config": settings, "data": data_identity}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# ------------------------------------------------------------------------------ RNG & state


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        # plain lists, so that state.pt loads with weights_only=True
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save(obj: dict[str, Any], target: Path) -> None:
    with atomic_path(target) as tmp:
        torch.save(obj, tmp)


def _load_resume_state(
    path: Path, expected: str, on_mismatch: str
) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        found = state.get("fingerprint") if state.get("format") == STATE_FORMAT else None
    except Exception as exc:  # unreadable: the atomic write makes this rare, so say so and go on
        log.warning("resume state %s is unreadable (%s); starting afresh", path, exc)
        found, state = "unreadable", None
    if found == expected:
        return state
    if on_mismatch == "error":
        raise RuntimeError(
            f"resume state {path} belongs to another configuration or data set (fingerprint "
            f"{found}, this run {expected}); delete {path} or use another --resume-dir"
        )
    stale = path.with_name("state.stale.pt")
    os.replace(path, stale)
    log.warning(
        "resume state %s was made with a different configuration or data (fingerprint %s, now "
        "%s); moved it to %s and starting afresh", path, found, expected, stale,
    )
    return None


# --------------------------------------------------------------------------- epochs & metrics


def classification_metrics(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Cross-entropy, accuracy, macro-F1 and AUC (P(ALL)) of 2-class logits."""
    labels = np.asarray(labels, dtype=np.int64)
    logits_t = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    loss = F.cross_entropy(logits_t, torch.as_tensor(labels)).item()
    prob_all = torch.softmax(logits_t, dim=1)[:, 1].numpy()
    pred = logits_t.argmax(dim=1).numpy()
    auc = (
        float(roc_auc_score(labels, prob_all)) if len(np.unique(labels)) == 2 else float("nan")
    )
    return {
        "loss": float(loss),
        "accuracy": float((pred == labels).mean()),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=[0, 1],
                                   zero_division=0)),
        "auc": auc,
    }


def predict_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    loader: Any,
    transform: DeviceTransform,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    stop: _StopFlag | None = None,
    on_interrupt: Callable[[int], Exception] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32) and labels over an unshuffled loader, in manifest row order."""
    outputs, targets = [], []
    with torch.inference_mode():
        for images, labels in loader:
            if stop is not None and stop.signum is not None and on_interrupt is not None:
                raise on_interrupt(stop.signum)
            x, y = transform(images, labels)
            with autocast():
                outputs.append(forward(x).float())
            targets.append(y)
    return torch.cat(outputs).cpu().numpy(), torch.cat(targets).cpu().numpy()


def _progress(iterable: Any, total: int, desc: str) -> Any:
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


# ----------------------------------------------------------------------------------- train


def train(
    cfg: TrainConfig,
    train_manifest: str | os.PathLike[str],
    train_pixels: str | os.PathLike[str],
    val_manifest: str | os.PathLike[str],
    val_pixels: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    resume_dir: str | os.PathLike[str],
    extra_meta: dict[str, Any] | None = None,
    *,
    device: str | None = None,
    on_mismatch: str = "restart",
    keep_state: bool = False,
) -> dict[str, Any]:
    """Train one experiment; write best.pt, last.pt and history.parquet to ``out_dir``.

    ``resume_dir/state.pt`` is written after each epoch and removed after success unless
    ``keep_state``. Raises :class:`TrainingInterrupted` on SIGTERM/SIGUSR1.
    Returns a summary (best epoch and metrics, epochs run, throughput, output paths).
    """
    if on_mismatch not in ("restart", "error"):
        raise ValueError(f"on_mismatch must be 'restart' or 'error', got {on_mismatch!r}")
    dev = pick_device(device)
    out_dir, resume_dir = Path(out_dir), Path(resume_dir)
    train_frame, train_set = _read_split(Path(train_manifest), Path(train_pixels))
    val_frame, val_set = _read_split(Path(val_manifest), Path(val_pixels))
    if train_set.image_size != val_set.image_size:
        raise ValueError(
            f"train images are {train_set.image_size}px ({train_pixels}) but validation images "
            f"are {val_set.image_size}px ({val_pixels}); both must come from the same config"
        )
    data_identity = {
        "train": _frame_digest(train_frame), "val": _frame_digest(val_frame),
        "image_size": train_set.image_size,
    }
    fp = fingerprint(cfg, data_identity)
    mean, std = normalisation(cfg.backbone)
    extra = json.loads(json.dumps(extra_meta or {}, default=str))  # plain types only
    workers = resolve_workers(cfg.workers)

    with _numerics(dev), _stop_on_signals() as stop:
        seed_everything(cfg.seed)
        model, summary, weights_report = prepare_model(cfg, train_set.image_size)
        channels_last = dev.type == "cuda"
        model.to(dev)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        forward: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(model) if cfg.compile else model
        )
        optimizer = torch.optim.Adam(
            optimizer_param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay)
        )
        use_amp = dev.type == "cuda" and cfg.amp != "none"
        amp_dtype = torch.float16 if cfg.amp == "fp16" else torch.bfloat16
        scaler = torch.amp.GradScaler("cuda") if use_amp and cfg.amp == "fp16" else None

        def autocast() -> contextlib.AbstractContextManager[Any]:
            return torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp)

        # A lone last sample would make BatchNorm fail in train mode, so drop it then.
        train_sampler = EpochBatchSampler(
            len(train_set), cfg.batch_size, shuffle=True, seed=cfg.seed,
            drop_last=len(train_set) % cfg.batch_size == 1,
        )
        val_sampler = EpochBatchSampler(len(val_set), cfg.eval_batch_size, shuffle=False)
        train_loader = make_loader(train_set, train_sampler, workers, dev)
        val_loader = make_loader(val_set, val_sampler, workers, dev)
        transform = DeviceTransform(mean, std, dev, channels_last, flips=cfg.flips, seed=cfg.seed)

        log.info(
            "training %s (%s, %d/%d parameters trainable: %s) on %s; %d train / %d val images "
            "of %dpx; %d loader workers%s",
            cfg.backbone, cfg.strategy, summary.trainable_params, summary.total_params,
            ", ".join(summary.trainable_modules), dev, len(train_set), len(val_set),
            train_set.image_size, workers,
            f"; weights {weights_report['path']}" if weights_report else "; no pretrained weights",
        )

        state_path = resume_dir / STATE_FILE
        state = _load_resume_state(state_path, fp, on_mismatch)
        history: list[dict[str, Any]] = []
        best_metric, best_epoch, stale_epochs, epochs_done = -math.inf, 0, 0, 0
        best_state, best_metrics, finished, stopped_early = None, {}, False, False
        resumed_from = None
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"])
            history, best_state = state["history"], state["best_state"]
            best_metric, best_epoch = state["best_metric"], state["best_epoch"]
            stale_epochs, epochs_done = state["epochs_without_improvement"], state["epochs_done"]
            best_metrics, finished = state["best_metrics"], state["finished"]
            stopped_early, resumed_from = state["stopped_early"], epochs_done
            log.info("resuming from %s after epoch %d (best %.4f at epoch %d)",
                     state_path, epochs_done, best_metric, best_epoch)
            del state

        def interrupted(signum: int) -> TrainingInterrupted:
            log.warning("received %s: stopping; epoch %d is saved in %s",
                        signal.Signals(signum).name, epochs_done, state_path)
            return TrainingInterrupted(signum, epochs_done)

        while not finished:
            epoch = epochs_done  # 0-based index of the epoch about to run
            train_sampler.set_epoch(epoch)
            transform.set_epoch(epoch)
            set_train_mode(model)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
            correct = torch.zeros((), device=dev, dtype=torch.int64)
            seen = 0
            for images, labels in _progress(train_loader, len(train_sampler), f"epoch {epoch+1}"):
                if stop.signum is not None:
                    raise interrupted(stop.signum)
                x, y = transform(images, labels, augment=True)
                with autocast():
                    logits = forward(x)
                    loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                loss_sum += loss.detach() * y.shape[0]
                correct += (logits.detach().argmax(dim=1) == y).sum()
                seen += y.shape[0]
            train_loss, train_correct = loss_sum.item(), correct.item()  # syncs the device
            train_seconds = time.perf_counter() - t0

            model.eval()
            val_logits, val_labels = predict_logits(
                forward, val_loader, transform, autocast, stop, interrupted
            )
            val = classification_metrics(val_labels, val_logits)
            seconds = time.perf_counter() - t0

            epochs_done = epoch + 1
            improved = val["macro_f1"] > best_metric
            if improved:
                best_metric, best_epoch, stale_epochs = val["macro_f1"], epochs_done, 0
                best_state = _cpu_state_dict(model)
                best_metrics = {f"val_{k}": v for k, v in val.items()}
            else:
                stale_epochs += 1
            history.append({
                "epoch": epochs_done,
                "train_loss": train_loss / max(seen, 1),
                "train_accuracy": train_correct / max(seen, 1),
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "val_macro_f1": val["macro_f1"],
                "val_auc": val["auc"],
                "lr": float(optimizer.param_groups[0]["lr"]),
                "seconds": seconds,
                "images_per_s": seen / train_seconds if train_seconds > 0 else float("nan"),
                "improved": improved,
            })
            stopped_early = stale_epochs >= cfg.patience
            finished = stopped_early or epochs_done >= cfg.epochs
            _save(
                {
                    "format": STATE_FORMAT, "fingerprint": fp, "epochs_done": epochs_done,
                    "finished": finished, "stopped_early": stopped_early,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": _rng_state(), "best_metric": best_metric, "best_epoch": best_epoch,
                    "epochs_without_improvement": stale_epochs, "history": history,
                    "best_state": best_state, "best_metrics": best_metrics,
                },
                state_path,
            )
            row = history[-1]
            log.info(
                "epoch %d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f macro-F1 %.4f "
                "AUC %.4f | %.0f img/s, %.1fs%s",
                epochs_done, cfg.epochs, row["train_loss"], row["train_accuracy"], val["loss"],
                val["accuracy"], val["macro_f1"], val["auc"], row["images_per_s"], seconds,
                "  *best*" if improved else f"  (no improvement for {stale_epochs})",
            )
            if stopped_early:
                log.info("early stopping: no better val macro-F1 for %d epochs", cfg.patience)
            if stop.signum is not None and not finished:
                raise interrupted(stop.signum)

    meta = {
        "backbone": cfg.backbone,
        "strategy": cfg.strategy,
        "partial_stages": cfg.partial_stages,
        "num_classes": len(CLASS_NAMES),
        "class_names": list(CLASS_NAMES),
        "mean": list(mean),
        "std": list(std),
        "image_size": train_set.image_size,
        "train_config": asdict(cfg),
        "strategy_summary": summary.as_dict(),
        "extra_meta": extra,
        "code_version": code_version(),
        "provenance": provenance(),
        "fingerprint": fp,
        "best_epoch": best_epoch,
        "best_val_metrics": best_metrics,
        "epochs_run": epochs_done,
        "stopped_early": stopped_early,
    }
    last_metrics = {f"val_{k.removeprefix('val_')}": history[-1][k] for k in
                    ("val_loss", "val_accuracy", "val_macro_f1", "val_auc")}
    out_dir.mkdir(parents=True, exist_ok=True)
    _save({**meta, "kind": "best", "epoch": best_epoch, "val_metrics": best_metrics,
           "state_dict": best_state}, out_dir / "best.pt")
    _save({**meta, "kind": "last", "epoch": epochs_done, "val_metrics": last_metrics,
           "state_dict": _cpu_state_dict(model)}, out_dir / "last.pt")
    write_parquet(out_dir / "history.parquet", pd.DataFrame(history))
    if not keep_state:
        state_path.unlink(missing_ok=True)

    return {
        "backbone": cfg.backbone,
        "strategy": cfg.strategy,
        "device": str(dev),
        "best_epoch": best_epoch,
        "best_val_metrics": best_metrics,
        "epochs_run": epochs_done,
        "stopped_early": stopped_early,
        "resumed_from_epoch": resumed_from,
        "trainable_params": summary.trainable_params,
        "total_params": summary.total_params,
        "trainable_modules": list(summary.trainable_modules),
        "images_per_s_median": float(np.median([r["images_per_s"] for r in history])),
        "best_checkpoint": str(out_dir / "best.pt"),
        "last_checkpoint": str(out_dir / "last.pt"),
        "history": str(out_dir / "history.parquet"),
    }


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained model from best.pt/last.pt alone (no config needed), in eval mode."""
    ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    model = build_model(ckpt["backbone"], ckpt["num_classes"], ckpt.get("image_size"))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


def config_fields() -> list[tuple[str, Any, Any, str]]:
    """(name, type, default or MISSING, help) of every TrainConfig field, for CLIs."""
    return [(f.name, f.type, f.default, f.metadata.get("help", "")) for f in fields(TrainConfig)]
