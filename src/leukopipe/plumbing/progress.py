"""Progress lines for log files: done/total, rate and time left, at a sensible interval.

Every rule sends stderr to its log, so a terminal progress bar (tqdm redraws one line with
carriage returns, and only when stderr is a terminal) leaves nothing readable where users look.
:class:`Progress` writes plain log lines instead: one at the start of the work, then whenever
``every_s`` seconds have passed or another ``step`` of the total is done, and one at the end,
so a small run still shows a handful of lines and a long one at most one line per interval
plus one per step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# a line at least every 30 s and every 10 % of the work
EVERY_S = 30.0
STEP = 0.1


def duration(seconds: float) -> str:
    """``seconds`` as ``1h02m``, ``3m05s`` or ``12s``."""
    s = max(round(seconds), 0)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Counts finished units of one task and logs ``desc: done/total unit (pct), rate, left``."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "img",
        logger: logging.Logger | None = None,
        every_s: float = EVERY_S,
        step: float = STEP,
        ends: bool = True,
    ) -> None:
        self.total = max(int(total), 0)
        self.desc, self.unit = desc, unit
        self.log = logger or logging.getLogger("leukopipe.progress")
        self.every_s, self.step = every_s, step
        self.done = 0
        self.t0 = time.monotonic()
        self._last_t = self.t0
        self._last_frac = 0.0
        # ends=False: no first and last line, for work whose caller logs its own summary
        self._closed = not ends
        if ends:
            self.log.info("%s: %d %s to do", desc, self.total, unit)

    def line(self) -> str:
        """The current progress line (also logged by :meth:`update` when one is due)."""
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        left = (self.total - self.done) / rate if rate > 0 else None
        tail = f", {duration(left)} left" if left is not None and self.done < self.total else ""
        # a slow rate reads better as seconds per unit (0.0 batch/s says nothing)
        speed = f"{rate:.1f} {self.unit}/s" if rate >= 1 or rate == 0 else (
            f"{1 / rate:.1f} s/{self.unit}"
        )
        return (
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f} %), "
            f"{speed}, {duration(elapsed)} elapsed{tail}"
        )

    def update(self, n: int = 1) -> None:
        """``n`` more units done; logs a line when the interval or the next step is reached."""
        self.done += n
        now = time.monotonic()
        frac = self.done / self.total if self.total else 1.0
        if self.done >= self.total:
            return  # close() writes the last line
        if now - self._last_t >= self.every_s or frac - self._last_frac >= self.step:
            self._last_t, self._last_frac = now, frac
            self.log.info("%s", self.line())

    def close(self) -> None:
        """The final line (once)."""
        if not self._closed:
            self._closed = True
            self.log.info("%s", self.line())

    def wrap(self, iterable: Iterable[T]) -> Iterator[T]:
        """Yield from ``iterable``, one unit per item; the final line when it is exhausted."""
        for item in iterable:
            yield item
            self.update()
        self.close()
