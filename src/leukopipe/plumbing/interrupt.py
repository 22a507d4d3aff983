"""Stop a step cleanly on SIGTERM/SIGUSR1 (SLURM preemption, scancel, time limit).

The handler only sets a flag (logging or raising from a handler can deadlock); the step checks it
between units of work and raises :class:`StepInterrupted`, so ``with`` blocks unwind and delete
their half-written temp files. ``leukopipe.plumbing.cli.run`` turns it into exit 128 + signal
(143 for SIGTERM), the code a process killed by the signal would have had.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class StopFlag:
    """Set to the number of the first stop signal received; None while none was."""

    signum: int | None = None

    def check(self) -> None:
        """Raise :class:`StepInterrupted` if a stop signal arrived."""
        if self.signum is not None:
            raise StepInterrupted(self.signum)


class StepInterrupted(Exception):  # noqa: N818 - a stop request, not an error
    """A step stopped on a signal before finishing; it wrote nothing under its final names."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} before finishing; nothing was written, "
            "rerun the same command to start again"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Within the block, SIGTERM/SIGUSR1 set the yielded flag instead of killing the process."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, _frame: Any) -> None:
        if flag.signum is None:
            flag.signum = signum

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)


def exit_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux).

    A step started by a shell wrapper (Snakemake's job) must not outlive it: killed by a
    scheduler or a user, the wrapper takes the step down instead of leaving it running on,
    writing outputs for a job already recorded as failed.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        return  # not fatal: the step still runs, only unguarded
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signum)
