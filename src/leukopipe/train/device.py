"""The device a model runs on, and the numerics it runs with (training and inference alike)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def numerics(device: torch.device) -> Iterator[None]:
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
