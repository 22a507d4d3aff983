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

In timm's shape: :func:`train` wires :func:`train_one_epoch`, :func:`validate` and a
:class:`~leukopipe.train.checkpoint_saver.CheckpointSaver`, which owns the files (best.pt,
last.pt, history.parquet, state.pt) and the early-stopping counters.

Epochs are numbered from 1 in history and checkpoints. Besides the metrics, each history row
splits the epoch's time: ``train_seconds`` (training pass, of which ``loader_wait_seconds`` the
host spent waiting for batches), ``val_seconds`` (validation pass and metrics; ``seconds`` is
the two together) and ``save_seconds`` (writing state.pt; NaN for the last epoch a resumed run
took from state.pt, which was written before its own write could be timed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import signal
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

from leukopipe.data.cnmc_names import CLASS_NAMES
from leukopipe.plumbing.atomic import write_text
from leukopipe.plumbing.errors import InvalidInputError, UserError
from leukopipe.plumbing.interrupt import (
    StepInterrupted,
    StopFlag,
    exit_with_parent,
    stop_on_signals,
)
from leukopipe.plumbing.progress import Progress, duration
from leukopipe.plumbing.provenance import code_provenance, code_version
from leukopipe.plumbing.readers import read_json, read_parquet
from leukopipe.plumbing.schema import defaults
from leukopipe.train.checkpoint_saver import CheckpointSaver
from leukopipe.train.checkpoint_saver import load_checkpoint as load_checkpoint  # re-exported
from leukopipe.train.device import numerics, pick_device
from leukopipe.train.loader import (
    BatchDataset,
    DeviceTransform,
    EpochBatchSampler,
    make_loader,
    resolve_workers,
    workers_stopped,
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
from leukopipe.train.weights import check_against_record, load_pretrained, recorded_weights

log = logging.getLogger(__name__)

AMP_MODES = ("bf16", "fp16", "none")
# Config fields that cannot change results, so a resume may differ in them.
_NOT_FINGERPRINTED = ("workers",)
# the pipeline's defaults, from their one home (the config schema)
_TRAIN = defaults("train")
_GROUP = defaults("experiments.[]")


@dataclass
class TrainConfig:
    """Everything that defines one training run (the CLI exposes each field as a flag)."""

    backbone: str = field(metadata={"help": "timm model name, e.g. resnet50, efficientnet_b0"})
    strategy: str = field(
        metadata={"help": "fine-tuning strategy: frozen (head only), partial (deepest "
                  "--partial-stages stages + head) or full"}
    )
    partial_stages: int = field(
        default=_GROUP["partial_stages"],
        metadata={"help": "stages trained by the 'partial' strategy, counted from the deepest "
                  "(timm's stage grouping)"},
    )
    epochs: int = field(default=_TRAIN["epochs"], metadata={"help": "maximum number of epochs"})
    patience: int = field(
        default=_TRAIN["patience"],
        metadata={"help": "stop after this many epochs without a better val macro-F1"},
    )
    lr: float = field(default=_TRAIN["lr"], metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=_TRAIN["batch_size"], metadata={"help": "training batch size"})
    eval_batch_size: int = field(
        default=_TRAIN["eval_batch_size"], metadata={"help": "validation batch size"}
    )
    weight_decay: float = field(
        default=_TRAIN["weight_decay"], metadata={"help": "Adam weight decay (L2)"}
    )
    layer_decay: float | None = field(
        default=_TRAIN["layer_decay"],
        metadata={"help": "layer-wise learning-rate decay in (0, 1): each layer below the head "
                  "trains at this times the one above; none = off"},
    )
    flips: bool = field(
        default=_TRAIN["flips"], metadata={"help": "random horizontal/vertical flips on the device"}
    )
    workers: int | str = field(
        default="auto", metadata={"help": "DataLoader worker processes, or 'auto' (CPUs of this "
                                  "job minus one, at most 8)"}
    )
    compile: bool = field(default=_TRAIN["compile"], metadata={"help": "torch.compile the model"})
    amp: str = field(
        default=_TRAIN["amp"], metadata={"help": "mixed precision on CUDA: bf16, fp16 or none "
                                  "(always off on CPU)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for init, data order and flips"})
    pretrained_weights: str | None = field(
        default=None, metadata={"help": "local ImageNet weights (.safetensors), or none to "
                                "train from scratch"}
    )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidInputError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.amp not in AMP_MODES:
            raise InvalidInputError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "partial_stages"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 1:
            raise InvalidInputError(f"patience must be >= 1, got {self.patience}")
        if self.lr < 0 or self.weight_decay < 0:
            raise InvalidInputError("lr and weight_decay must be >= 0")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise InvalidInputError(
                f"layer_decay must be in (0, 1] or none, got {self.layer_decay}"
            )
        if self.layer_decay == 1:
            self.layer_decay = None  # the same run either way, so the same fingerprint
        if self.pretrained_weights is not None:
            self.pretrained_weights = str(self.pretrained_weights)
            if self.pretrained_weights.lower() == "none":
                self.pretrained_weights = None
        if self.workers != "auto":
            self.workers = int(self.workers)


class TrainingInterrupted(StepInterrupted):
    """Training stopped on a signal; the last completed epoch is saved in the resume state."""

    def __init__(self, signum: int, epochs_done: int):
        super().__init__(signum)
        self.epochs_done = epochs_done
        self.args = (
            f"stopped by {signal.Signals(signum).name} after {epochs_done} completed epoch(s);"
            " rerun the same command to resume",
        )


# ---------------------------------------------------------------------------- set-up helpers


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


def _read_split(manifest: Path, pixels: Path) -> tuple[pd.DataFrame, BatchDataset]:
    frame = read_parquet(manifest)
    if "label" not in frame.columns:
        raise InvalidInputError(f"manifest {manifest} has no 'label' column; rerun the split step")
    bad = sorted(set(frame["label"].dropna().unique()) - {0, 1})
    if bad or frame["label"].isna().any() or len(frame) == 0:
        raise InvalidInputError(
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


# ------------------------------------------------------------------------------------- RNG


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
    stop: StopFlag | None = None,
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
    # a log line each minute inside a long epoch (the epoch's own line follows it)
    return Progress(total, desc, unit="batch", every_s=60.0, step=1.0, ends=False).wrap(iterable)


class _WaitClock:
    """Seconds the host spent blocked on the loader; costs two clock reads a batch, no sync."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, iterable: Any) -> Iterator[Any]:
        items = iter(iterable)
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield item


@dataclass
class TrainingSetup:
    """What the training and validation passes run with: the model, how to call it, its
    optimiser, mixed precision and the device-side input transform."""

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, or its torch.compile wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # fp16 loss scaling on CUDA only
    transform: DeviceTransform
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]
    device: torch.device


def train_one_epoch(
    epoch: int,
    setup: TrainingSetup,
    loader: Any,
    batches: int,
    stop: StopFlag,
    interrupted: Callable[[int], Exception],
) -> dict[str, float]:
    """One pass over the training loader (0-based ``epoch``): mean loss and accuracy, images/s,
    and the pass's wall time split into time waiting for the loader and the rest."""
    set_train_mode(setup.model)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=setup.device, dtype=torch.float64)
    correct = torch.zeros((), device=setup.device, dtype=torch.int64)
    seen = 0
    wait = _WaitClock()
    for images, labels in wait.timed(_progress(loader, batches, f"epoch {epoch+1}")):
        if stop.signum is not None:
            raise interrupted(stop.signum)
        x, y = setup.transform(images, labels, augment=True)
        with setup.autocast():
            logits = setup.forward(x)
            loss = F.cross_entropy(logits.float(), y)
        setup.optimizer.zero_grad(set_to_none=True)
        if setup.scaler is not None:
            setup.scaler.scale(loss).backward()
            setup.scaler.step(setup.optimizer)
            setup.scaler.update()
        else:
            loss.backward()
            setup.optimizer.step()
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.detach().argmax(dim=1) == y).sum()
        seen += y.shape[0]
    train_loss, train_correct = loss_sum.item(), correct.item()  # syncs the device
    seconds = time.perf_counter() - t0
    return {
        "train_loss": train_loss / max(seen, 1),
        "train_accuracy": train_correct / max(seen, 1),
        "images_per_s": seen / seconds if seconds > 0 else float("nan"),
        "train_seconds": seconds,
        "loader_wait_seconds": wait.seconds,
    }


def validate(
    setup: TrainingSetup,
    loader: Any,
    stop: StopFlag,
    interrupted: Callable[[int], Exception],
) -> tuple[dict[str, float], float]:
    """Loss, accuracy, macro-F1 and AUC on the validation loader, and the seconds it took."""
    t0 = time.perf_counter()
    setup.model.eval()
    logits, labels = predict_logits(
        setup.forward, loader, setup.transform, setup.autocast, stop, interrupted
    )
    metrics = classification_metrics(labels, logits)
    return metrics, time.perf_counter() - t0


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
    dev = pick_device(device)
    train_set, val_set, data_identity = _read_data(
        Path(train_manifest), Path(train_pixels), Path(val_manifest), Path(val_pixels)
    )
    saver = CheckpointSaver(
        out_dir, resume_dir, fingerprint(cfg, data_identity), max_epochs=cfg.epochs,
        patience=cfg.patience, on_mismatch=on_mismatch, keep_state=keep_state,
    )
    mean, std = normalisation(cfg.backbone)
    workers = resolve_workers(cfg.workers)

    # A lone last sample would make BatchNorm fail in train mode, so drop it then.
    train_sampler = EpochBatchSampler(
        len(train_set), cfg.batch_size, shuffle=True, seed=cfg.seed,
        drop_last=len(train_set) % cfg.batch_size == 1,
    )
    val_sampler = EpochBatchSampler(len(val_set), cfg.eval_batch_size, shuffle=False)
    # no worker starts before the first batch; any error stops them (workers_stopped)
    train_loader = make_loader(train_set, train_sampler, workers, dev)
    val_loader = make_loader(val_set, val_sampler, workers, dev)

    # the lock is taken before anything is read from or written to the resume folder
    with (
        saver.owned(), numerics(dev), stop_on_signals() as stop,
        workers_stopped(train_loader, val_loader),
    ):
        seed_everything(cfg.seed)
        model, summary, weights_report = prepare_model(cfg, train_set.image_size)
        setup = _make_setup(cfg, model, dev, mean, std)
        log.info(
            "training %s (%s, %d/%d parameters trainable: %s) on %s; %d train / %d val images "
            "of %dpx; %d loader workers%s",
            cfg.backbone, cfg.strategy, summary.trainable_params, summary.total_params,
            ", ".join(summary.trainable_modules), dev, len(train_set), len(val_set),
            train_set.image_size, workers,
            f"; weights {weights_report['path']}" if weights_report else "; no pretrained weights",
        )

        rng = saver.resume(model, setup.optimizer, setup.scaler)
        if rng is not None:
            _set_rng_state(rng)
            log.info("resuming from %s after epoch %d (best %.4f at epoch %d)",
                     saver.state_path, saver.epochs_done, saver.best_metric, saver.best_epoch)

        def interrupted(signum: int) -> TrainingInterrupted:
            log.warning("received %s: stopping; epoch %d is saved in %s",
                        signal.Signals(signum).name, saver.epochs_done, saver.state_path)
            return TrainingInterrupted(signum, saver.epochs_done)

        epoch_seconds: list[float] = []
        while not saver.finished:
            epoch = saver.epochs_done  # 0-based index of the epoch about to run
            train_sampler.set_epoch(epoch)
            setup.transform.set_epoch(epoch)
            t0 = time.perf_counter()
            fit = train_one_epoch(epoch, setup, train_loader, len(train_sampler), stop,
                                  interrupted)
            val, val_seconds = validate(setup, val_loader, stop, interrupted)
            row = _history_row(epoch, fit, val, setup.optimizer, time.perf_counter() - t0)
            improved = saver.end_epoch(row, val, model, {
                "train_seconds": fit["train_seconds"], "val_seconds": val_seconds,
                "loader_wait_seconds": fit["loader_wait_seconds"],
            })
            saver.save_state(model, setup.optimizer, setup.scaler, _rng_state())
            epoch_seconds.append(row["seconds"])
            _log_epoch(row, cfg.epochs, improved, saver.epochs_without_improvement, epoch_seconds)
            if saver.stopped_early:
                log.info("early stopping: no better val macro-F1 for %d epochs", cfg.patience)
            if stop.signum is not None and not saver.finished:
                raise interrupted(stop.signum)

        meta = _checkpoint_meta(cfg, train_set.image_size, summary, extra_meta, saver.fingerprint)
        paths = saver.save_outputs(meta, model)
    return {
        "backbone": cfg.backbone,
        "strategy": cfg.strategy,
        "device": str(dev),
        "best_epoch": saver.best_epoch,
        "best_val_metrics": saver.best_metrics,
        "epochs_run": saver.epochs_done,
        "stopped_early": saver.stopped_early,
        "resumed_from_epoch": saver.resumed_from,
        "trainable_params": summary.trainable_params,
        "total_params": summary.total_params,
        "trainable_modules": list(summary.trainable_modules),
        "images_per_s_median": float(np.median([r["images_per_s"] for r in saver.history])),
        "best_checkpoint": str(paths["best"]),
        "last_checkpoint": str(paths["last"]),
        "history": str(paths["history"]),
    }


def _read_data(
    train_manifest: Path, train_pixels: Path, val_manifest: Path, val_pixels: Path
) -> tuple[BatchDataset, BatchDataset, dict[str, Any]]:
    """Both splits' datasets and the identity of their data (part of the run's fingerprint)."""
    train_frame, train_set = _read_split(train_manifest, train_pixels)
    val_frame, val_set = _read_split(val_manifest, val_pixels)
    if train_set.image_size != val_set.image_size:
        raise InvalidInputError(
            f"train images are {train_set.image_size}px ({train_pixels}) but validation images "
            f"are {val_set.image_size}px ({val_pixels}); both must come from the same config"
        )
    identity = {
        "train": _frame_digest(train_frame), "val": _frame_digest(val_frame),
        "image_size": train_set.image_size,
    }
    return train_set, val_set, identity


def _make_setup(
    cfg: TrainConfig, model: nn.Module, dev: torch.device,
    mean: tuple[float, ...], std: tuple[float, ...],
) -> TrainingSetup:
    """Move ``model`` to ``dev`` and set up its optimiser, mixed precision and input transform."""
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

    transform = DeviceTransform(mean, std, dev, channels_last, flips=cfg.flips, seed=cfg.seed)
    return TrainingSetup(model, forward, optimizer, scaler, transform, autocast, dev)


def _history_row(
    epoch: int,
    fit: dict[str, float],
    val: dict[str, float],
    optimizer: torch.optim.Optimizer,
    seconds: float,
) -> dict[str, Any]:
    """The metrics columns of an epoch's history row (the saver adds the rest)."""
    return {
        "epoch": epoch + 1,
        "train_loss": fit["train_loss"],
        "train_accuracy": fit["train_accuracy"],
        **{f"val_{k}": val[k] for k in ("loss", "accuracy", "macro_f1", "auc")},
        "lr": float(optimizer.param_groups[0]["lr"]),
        "seconds": seconds,  # training + validation pass
        "images_per_s": fit["images_per_s"],
    }


def _log_epoch(
    row: dict[str, Any], epochs: int, improved: bool, stale_epochs: int, epoch_seconds: list[float]
) -> None:
    log.info(
        "epoch %d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f macro-F1 %.4f "
        "AUC %.4f | %.0f img/s, %.1fs%s",
        row["epoch"], epochs, row["train_loss"], row["train_accuracy"], row["val_loss"],
        row["val_accuracy"], row["val_macro_f1"], row["val_auc"], row["images_per_s"],
        row["seconds"], "  *best*" if improved else f"  (no improvement for {stale_epochs})",
    )
    left = epochs - int(row["epoch"])
    if left > 0 and epoch_seconds:
        # the epochs this process ran (a resumed job has no clock for the earlier ones)
        seconds = left * sum(epoch_seconds) / len(epoch_seconds)
        finish = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + seconds))
        log.info("at most %d more epoch(s), about %s: estimated finish %s "
                 "(early stopping may end it sooner)", left, duration(seconds), finish)


def _checkpoint_meta(
    cfg: TrainConfig,
    image_size: int,
    summary: StrategySummary,
    extra_meta: dict[str, Any] | None,
    run_fingerprint: str,
) -> dict[str, Any]:
    """What best.pt and last.pt say about the run: enough to rebuild and use the model."""
    mean, std = normalisation(cfg.backbone)
    return {
        "backbone": cfg.backbone,
        "strategy": cfg.strategy,
        "partial_stages": cfg.partial_stages,
        "num_classes": len(CLASS_NAMES),
        "class_names": list(CLASS_NAMES),
        "mean": list(mean),
        "std": list(std),
        "image_size": image_size,
        "train_config": asdict(cfg),
        "strategy_summary": summary.as_dict(),
        "extra_meta": json.loads(json.dumps(extra_meta or {}, default=str)),  # plain types only
        "code_version": code_version(),
        # no host or time: identical runs write identical bytes (those go to provenance.json)
        "provenance": code_provenance(),
        "fingerprint": run_fingerprint,
    }


def config_fields() -> list[tuple[str, Any, Any, str]]:
    """(name, type, default or MISSING, help) of every TrainConfig field, for CLIs."""
    return [(f.name, f.type, f.default, f.metadata.get("help", "")) for f in fields(TrainConfig)]


@dataclass(frozen=True)
class TrainRequest:
    """What the train step is asked for: the experiment's settings and the step's files (the
    script's flags, by the same names)."""

    cfg: TrainConfig
    train_manifest: Path
    train_pixels: Path
    val_manifest: Path
    val_pixels: Path
    out_dir: Path
    resume_dir: Path
    weights_record: Path | None = None
    extra_meta_json: Path | None = None
    device: str | None = None
    on_mismatch: str = "restart"
    keep_state: bool = False
    summary_json: Path | None = None

    @classmethod
    def from_flags(cls, flags: dict[str, Any]) -> TrainRequest:
        """The request from parsed flags: one per TrainConfig field plus the step's own."""
        names = {name for name, *_ in config_fields()}
        cfg = TrainConfig(**{k: v for k, v in flags.items() if k in names})
        return cls(cfg=cfg, **{k: v for k, v in flags.items() if k not in names})


def train_step(req: TrainRequest) -> dict[str, Any]:
    """The train step as a process: train one experiment and print its summary (JSON) to stdout,
    also to ``req.summary_json`` when given; returns the summary.

    The pretrained weights file must match ``req.weights_record``, whose tag and pretraining
    data travel with the checkpoints; a stop signal ends it as TrainingInterrupted.
    """
    exit_with_parent()  # killed with its job's shell, it saves its epoch and stops (143)
    extra = {}
    if req.extra_meta_json is not None:
        try:
            extra = read_json(req.extra_meta_json)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot read --extra-meta-json {req.extra_meta_json}: {exc}"
            ) from exc
    if req.weights_record is not None and req.cfg.pretrained_weights:
        check_against_record(req.cfg.pretrained_weights, req.weights_record)
        # the tag and its pretraining data travel with the checkpoint into metrics.json
        extra["weights"] = recorded_weights(req.weights_record)
    summary = train(
        req.cfg, req.train_manifest, req.train_pixels, req.val_manifest, req.val_pixels,
        req.out_dir, req.resume_dir, extra, device=req.device,
        on_mismatch=req.on_mismatch, keep_state=req.keep_state,
    )
    text = json.dumps(summary, indent=2, sort_keys=True, default=str)
    if req.summary_json is not None:
        write_text(req.summary_json, text + "\n")
    print(text)
    return summary
