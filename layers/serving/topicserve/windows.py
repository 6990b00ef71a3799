"""Monitoring windows: the one definition of which window a time falls in, shared by the capture (what
serving sums per window) and label feedback (which window a labelled answer was served in), so neither
subpackage imports the other's."""

from __future__ import annotations

import datetime as dt


def window_start(timestamp: float, seconds: int) -> str:
    """The window holding ``timestamp``, as the ISO time (UTC) it starts at."""
    start = int(timestamp // seconds * seconds)
    return dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
