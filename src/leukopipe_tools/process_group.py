"""Run a command under a hard time limit that also ends everything it started.

The command gets its own session (so its own process group). On timeout the whole group gets
SIGTERM, then SIGKILL after a grace period; descendants that left the group (``setsid``) are
found through ``/proc`` before the first signal and get the same treatment. Processes that
outlive a command which ended on its own (a DataLoader worker or a Snakemake job orphaned by a
crash) are ended the same way, so nothing the command started keeps running after it returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
POLL_S = 0.05
SCAN_S = 1.0  # how often the descendants of a running command are recorded


@dataclass(frozen=True)
class Outcome:
    """How a bounded command ended."""

    status: str  # "ok", "failed" (non-zero exit) or "timed out"
    returncode: int | None
    seconds: float
    leftovers_killed: int = 0  # processes still alive after the command ended, then killed

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, process group, start time) of ``pid`` from /proc, None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _all_pids() -> list[int]:
    try:
        return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]
    except OSError:
        return []


def _identity(pids: Iterable[int]) -> dict[int, int]:
    """pid -> start time of the live (not zombie) processes among ``pids``."""
    out = {}
    for pid in pids:
        st = _stat(pid)
        if st is not None and st[0] != "Z":
            out[pid] = st[3]
    return out


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    if not PROC.is_dir():  # no /proc: ask the kernel whether the group has anyone left
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    out = []
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None and st[2] == pgid and st[0] != "Z":
            out.append(pid)
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for p in _all_pids():
        st = _stat(p)
        if st is not None and st[0] != "Z":
            children.setdefault(st[1], []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal_known(known: Mapping[int, int], sig: int) -> None:
    """Send ``sig`` to the processes in ``known`` that are still the same processes."""
    for pid, started in known.items():
        st = _stat(pid)
        if st is not None and st[3] == started and st[0] != "Z":  # not a reused pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _alive(pgid: int, known: Mapping[int, int]) -> bool:
    return bool(group_members(pgid) or _still_running(known))


def _still_running(known: Mapping[int, int]) -> dict[int, int]:
    return {
        pid: started for pid, started in known.items()
        if (st := _stat(pid)) is not None and st[3] == started and st[0] != "Z"
    }


def end_group(pgid: int, grace: float, extra: Mapping[int, int] | None = None,
              leader: subprocess.Popen[bytes] | None = None) -> int:
    """SIGTERM to group ``pgid`` and to the ``extra`` (pid -> start time) processes still
    running, SIGKILL after ``grace`` seconds to whatever is left. Returns how many processes
    were running when it started."""
    known = _still_running(extra or {})
    known.update(_identity(group_members(pgid)))
    if leader is not None:
        known.update(_identity([leader.pid]))
    if not known:
        return 0
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    _signal_known(known, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()  # reap it, so that it does not linger as a zombie member
        if not _alive(pgid, known):
            break
        time.sleep(POLL_S)
    else:
        # newcomers since the snapshot (a job started during the grace period) die too
        known.update(_identity(group_members(pgid)))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _signal_known(known, signal.SIGKILL)
    if leader is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(timeout=5)
    return len(known)


def run_bounded(
    argv: Sequence[str],
    timeout: float,
    log_path: str | os.PathLike[str],
    *,
    grace: float = 10.0,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Outcome:
    """Run ``argv`` with stdout and stderr appended to ``log_path``, for at most ``timeout``
    seconds plus ``grace`` for it to shut down after SIGTERM.

    ``on_line`` sees every output line as it comes (for progress). Whatever the command
    started is ended before this returns (see the module docstring).
    """
    start = time.monotonic()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pgid = proc.pid  # a new session's leader is its group's leader
        reader = threading.Thread(target=_copy_lines, args=(proc.stdout, log, on_line),
                                  daemon=True)
        reader.start()
        timed_out = False
        known: dict[int, int] = {}
        next_scan = 0.0
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if now - start >= timeout:
                    timed_out = True
                    break
                if now >= next_scan:
                    # remember descendants as they appear: one that leaves the group (setsid)
                    # and loses its parent is found by nothing else
                    known.update(_identity(descendants(proc.pid)))
                    next_scan = now + SCAN_S
                time.sleep(POLL_S)
        except BaseException:
            # we are being stopped ourselves (Ctrl-C, SIGTERM turned into an exception): the
            # command runs in another session and would not hear of it, so end it first
            end_group(pgid, min(grace, 3.0), known, leader=proc)
            raise
        if timed_out:
            known.update(_identity(descendants(proc.pid)))
            end_group(pgid, grace, known, leader=proc)
            leftovers = 0
        else:
            leftovers = end_group(pgid, grace, {p: s for p, s in known.items() if p != proc.pid})
        reader.join(timeout=5)  # an escaped writer could hold the pipe open: do not hang
    seconds = time.monotonic() - start
    if timed_out:
        return Outcome("timed out", proc.returncode, seconds)
    status = "ok" if proc.returncode == 0 else "failed"
    return Outcome(status, proc.returncode, seconds, leftovers)


def _copy_lines(stream: object, log: object, on_line: Callable[[str], None] | None) -> None:
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        log.write(raw)  # type: ignore[attr-defined]
        log.flush()  # type: ignore[attr-defined]
        if on_line is not None:
            with contextlib.suppress(Exception):  # progress printing must never stop the copy
                on_line(raw.decode("utf-8", "replace").rstrip("\n"))
