"""Monitoring windows: the one definition of which window a time falls in, shared by the capture (what
serving sums per window) and label feedback (which window a labelled answer was served in), so neither
subpackage imports the other's; and when sums kept in memory are due for writing (:class:`FlushTimer`, the
capture's and the rollout recorder's)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable


def window_start(timestamp: float, seconds: int) -> str:
    """The window holding ``timestamp``, as the ISO time (UTC) it starts at."""
    start = int(timestamp // seconds * seconds)
    return dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FlushTimer:
    """Sums kept in memory are written at most every ``seconds`` by ``clock`` (the first time ``seconds``
    after the timer was made), or whenever the write is forced."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.clock = clock
        self.last = clock()

    def due(self, *, force: bool = False) -> bool:
        """Whether to write now; when it is, the next write is due ``seconds`` from now."""
        if not force and self.clock() - self.last < self.seconds:
            return False
        self.last = self.clock()
        return True
