"""Tasks for worker-pool tests, in a module of their own: the workers import it to unpickle
them, and it imports nothing heavy (the test modules import torch)."""

from __future__ import annotations

import signal


def die_of_first(chunk: list[int]) -> None:
    """Kill the worker running this task with the signal ``chunk[0]``."""
    signal.raise_signal(chunk[0])
