"""Tasks for worker-pool tests, in a module of their own: the workers import it to unpickle
them, and it imports nothing heavy (the test modules import torch)."""

from __future__ import annotations

import signal


def die_of_first(chunk: list[int]) -> None:
    """Kill the worker running this task with the signal ``chunk[0]``."""
    signal.raise_signal(chunk[0])


def sleep_for(chunk: list[float]) -> None:
    """Busy the worker for ``chunk[0]`` seconds (a long task, like a large image chunk)."""
    import time

    time.sleep(chunk[0])
