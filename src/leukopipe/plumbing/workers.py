"""Run a step's tasks in worker processes; a worker that dies is an error, never a wait.

``multiprocessing.Pool`` replaces a worker killed by a signal and waits forever for the task it
held (an out-of-memory kill, or SIGBUS writing a memory-mapped file on a full disk, hung the
augment step with an empty log). ``concurrent.futures`` marks the pool broken instead; here that
becomes one line saying which signal killed the worker and what usually causes it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from leukopipe.plumbing.diskspace import free_bytes, human
from leukopipe.plumbing.errors import UserError
from leukopipe.plumbing.interrupt import (
    STOP_SIGNALS,
    StepInterrupted,
    StopFlag,
    exit_with_parent,
)

T = TypeVar("T")
R = TypeVar("R")

POLL_S = 0.2  # how often the parent looks at the stop flag while waiting for results


class WorkerDiedError(UserError, RuntimeError):
    """A worker process was killed from outside (out of memory, full disk, ...)."""


def run_pool(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    on_result: Callable[[int, R], None],
    *,
    what: str,
    context: str = "spawn",
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    stop: StopFlag | None = None,
    writes_to: str | os.PathLike[str] | None = None,
) -> None:
    """Call ``on_result(i, fn(tasks[i]))`` in the parent for every task, in completion order.

    ``what`` says what the workers do ("writing results/x.npy"), for the error message;
    ``writes_to`` is the folder they write into through a memory map, where a full disk shows up
    as SIGBUS. A task's own exception propagates unchanged; a dead worker raises
    :class:`WorkerDiedError`; a stop signal (``stop``, or workers killed by SIGTERM/SIGUSR1)
    raises :class:`StepInterrupted`. Every way out stops the remaining workers at once.
    """
    executor = ProcessPoolExecutor(
        max_workers=max(1, min(workers, len(tasks))),
        mp_context=mp.get_context(context),
        initializer=_start_worker,
        initargs=(initializer, initargs),
    )
    # The pool keeps its Process objects here: the only place that tells which signal killed a
    # worker (no public API does). Read it defensively; without it the message is more generic.
    processes: dict[int, mp.process.BaseProcess] = getattr(executor, "_processes", None)
    if not isinstance(processes, dict):
        processes = {}
    try:
        # a worker may die while tasks are still being submitted (a stop signal reaches the
        # whole process group at once): submit raises BrokenProcessPool then, as result() would
        futures: dict[Future[R], int] = {executor.submit(fn, t): i for i, t in enumerate(tasks)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            if stop is not None:
                stop.check()
            for future in done:
                on_result(futures[future], future.result())
    except BrokenProcessPool as exc:
        _stop(executor, processes)  # also reaps the workers, so their exit codes are known
        raise _died(processes, what, writes_to, stop) from exc
    except BaseException:
        _stop(executor, processes)
        raise
    executor.shutdown(wait=True)


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    # a worker dies with its parent: after a kill -9 of the step it would otherwise block on
    # for minutes, holding its memory and the step's deleted temp files (SIGKILL: it may ignore
    # SIGTERM, and nothing of its work is wanted any more)
    exit_with_parent(signal.SIGKILL)
    if initializer is not None:
        initializer(*initargs)


def _stop(executor: ProcessPoolExecutor, processes: dict[int, mp.process.BaseProcess]) -> None:
    # cancel_futures alone would still wait for the running tasks: terminate their workers too
    for process in list(processes.values()):
        if process.exitcode is None:
            process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)


def _died(
    processes: dict[int, mp.process.BaseProcess],
    what: str,
    writes_to: str | os.PathLike[str] | None,
    stop: StopFlag | None,
) -> Exception:
    if stop is not None and stop.signum is not None:
        return StepInterrupted(stop.signum)
    codes = [p.exitcode for p in processes.values() if p.exitcode not in (None, 0)]
    signals = {-c for c in codes if c is not None and c < 0}
    fatal = signals - set(STOP_SIGNALS)
    if signals and not fatal and all(c < 0 for c in codes if c is not None):
        # killed by SIGTERM/SIGUSR1 from outside (SLURM signals the whole job): a stop request
        return StepInterrupted(min(signals))
    prefix = f"a worker process {what} died"
    if signal.SIGBUS in fatal and writes_to is not None:
        free = free_bytes(writes_to)
        return WorkerDiedError(
            f"{prefix} of SIGBUS, which is how writing a memory-mapped file fails when the disk "
            f"is full: {free} bytes ({human(free)}) are free in {writes_to}; free space there or "
            "point the results folder at a larger disk, then rerun"
        )
    if signal.SIGKILL in fatal:
        return WorkerDiedError(
            f"{prefix}, killed by SIGKILL (usually the out-of-memory killer or the job's memory "
            "limit); rerun with fewer workers or more memory"
        )
    if codes:
        how = ", ".join(_describe_code(c) for c in sorted(set(codes)))
        return WorkerDiedError(f"{prefix} abruptly ({how}); rerun, and report it if it repeats")
    where = ""
    if writes_to is not None:
        free = free_bytes(writes_to)
        where = f"; {free} bytes ({human(free)}) are free in {writes_to}"
    return WorkerDiedError(
        f"{prefix} abruptly (usually out of memory, or a full disk{where}); rerun with fewer "
        "workers or more memory"
    )


def _describe_code(code: int) -> str:
    if code >= 0:
        return f"exit status {code}"
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"
