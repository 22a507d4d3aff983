"""Fast batches from the uint8 pixel store, with all float work done on the device.

The store is an ``(N, S, S, 3)`` uint8 ``.npy`` read through a memmap: each batch is one
sorted fancy-index read (sequential-ish I/O, no per-image decoding), shipped as uint8 (4x less
host-to-device traffic than float32) and converted, normalised and optionally flipped on the
GPU. Batch order comes from a generator seeded by (seed, epoch), so a resumed run sees exactly
the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from leukopipe.data.pixel_store import open_store
from leukopipe.plumbing.errors import InvalidInputError

MAX_AUTO_WORKERS = 8


class BatchDataset(Dataset):
    """Indexed by a list of manifest rows; returns (uint8 NHWC images, int64 labels) for them.

    ``rows`` maps manifest rows to store rows (the manifests' ``store_row`` column); by default
    row i of the store is row i of the manifest. The memmap is opened lazily in each process,
    so DataLoader workers never pickle it. Rows come back in sorted store order (one
    sequential read); the order inside a batch does not change the mean loss.
    """

    def __init__(
        self,
        pixels: str | os.PathLike[str],
        labels: Sequence[int] | np.ndarray,
        rows: Sequence[int] | np.ndarray | None = None,
    ):
        self.pixels = Path(pixels)
        self.labels = np.asarray(labels, dtype=np.int64)
        store = open_store(self.pixels)
        if rows is None:
            if len(store) != len(self.labels):
                raise InvalidInputError(
                    f"pixel store {self.pixels} has {len(store)} rows but its manifest has "
                    f"{len(self.labels)}; row i of the store must be row i of the manifest — "
                    "rerun the step that wrote them"
                )
            self.rows = np.arange(len(self.labels), dtype=np.int64)
        else:
            self.rows = np.asarray(rows, dtype=np.int64)
            if len(self.rows) != len(self.labels) or (
                len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(store))
            ):
                raise InvalidInputError(
                    f"the manifest's store_row values do not fit pixel store {self.pixels} "
                    f"({len(store)} rows); rerun the step that wrote them"
                )
        self.image_size = int(store.shape[1])
        self._store: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._store is None:
            self._store = open_store(self.pixels)
        idx = np.asarray(indices, dtype=np.int64)
        idx = idx[np.argsort(self.rows[idx], kind="stable")]
        images = np.ascontiguousarray(self._store[self.rows[idx]])
        return torch.from_numpy(images), torch.from_numpy(self.labels[idx])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        return state


class EpochBatchSampler(Sampler[list[int]]):
    """Yields lists of indices; shuffled per epoch by a generator seeded with (seed, epoch)."""

    def __init__(
        self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False
    ):
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start : start + self.batch_size].tolist()

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


def resolve_workers(workers: int | str) -> int:
    """Worker processes: ``"auto"`` = CPUs this job may use minus one, capped at 8."""
    if workers == "auto":
        return max(0, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)) - 1))
    count = int(workers)
    if count < 0:
        raise InvalidInputError(f"workers must be >= 0 or 'auto', got {workers}")
    return count


def _ignore_stop_signals(_worker_id: int) -> None:
    # SLURM signals the whole process group; the main process alone decides when to stop
    # (workers exit when it shuts the loader down or dies).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def shut_down(loader: DataLoader) -> None:
    """Stop a loader's worker processes now and wait for them (a no-op without workers).

    Persistent workers ignore SIGTERM (see above), so they must be stopped by the loader
    itself: left to the interpreter's exit, multiprocessing sends them SIGTERM and waits for
    them for ever, and a job that failed would hold its GPU until the time limit.
    """
    iterator = getattr(loader, "_iterator", None)  # torch keeps its persistent workers here
    if iterator is None:
        return
    loader._iterator = None
    stop = getattr(iterator, "_shutdown_workers", None)
    if stop is not None:
        stop()  # asks each worker to stop and joins it briefly
    for worker in getattr(iterator, "_workers", ()):
        if worker.is_alive():  # one that did not stop in time (stuck in a read): end it
            worker.kill()
            worker.join(timeout=10)


@contextlib.contextmanager
def workers_stopped(*loaders: DataLoader) -> Iterator[None]:
    """Within the block the loaders may start workers; on leaving it, by error or not, the
    workers are stopped, so a failed step exits instead of hanging."""
    try:
        yield
    finally:
        for loader in loaders:
            shut_down(loader)


def make_loader(
    dataset: BatchDataset, sampler: EpochBatchSampler, workers: int, device: torch.device
) -> DataLoader:
    """A DataLoader over whole batches (``batch_size=None``), pinned on CUDA."""
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_ignore_stop_signals if workers > 0 else None,
        # A private generator: creating a loader iterator must not consume the global torch
        # RNG, or a resumed run (fresh iterators) would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(0),
    )


class DeviceTransform:
    """uint8 NHWC batch -> normalised float NCHW on the device (+ optional seeded flips)."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        channels_last: bool,
        flips: bool = False,
        seed: int = 0,
    ):
        self.device, self.channels_last, self.flips, self.seed = device, channels_last, flips, seed
        shape = (1, 3, 1, 1)
        # Fold the /255 into the affine map: x_norm = x_uint8 * scale + shift.
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t
        self.generator: torch.Generator | None = None

    def set_epoch(self, epoch: int) -> None:
        """Re-seed the flip generator, so flips depend only on (seed, epoch, batch)."""
        if self.flips:
            self.generator = torch.Generator(device=self.device)
            self.generator.manual_seed(self.seed * 1_000_003 + epoch)

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, augment: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        labels = labels.to(self.device, non_blocking=non_blocking)
        # NHWC -> NCHW view: its strides are already channels_last; .float() keeps them and
        # returns a new tensor, so the in-place affine map is safe.
        x = images.permute(0, 3, 1, 2).float().mul_(self.scale).add_(self.shift)
        if augment and self.flips:
            x = self._flip(x)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format), labels

    def _flip(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            self.set_epoch(0)
        n = x.shape[0]
        draws = torch.rand((2, n), generator=self.generator, device=self.device)
        for row, dim in ((0, 3), (1, 2)):  # horizontal, then vertical, each p = 0.5
            mask = (draws[row] < 0.5).view(n, 1, 1, 1)
            x = torch.where(mask, x.flip(dim), x)
        return x
