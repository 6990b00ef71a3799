"""Warm-up events: how a warmer keeps N execution environments of a function alive.

A scheduled warmer invokes the function N times at once with ``{"warmer": true, "concurrency": N}``.
Each warm invocation returns right after init (no cache, results or traffic metrics touched), but holds
for ``hold_ms`` first: while one environment is busy holding, Lambda must route the next concurrent warm
call to another environment, so N overlapping calls keep N distinct environments warm.
"""

from __future__ import annotations

import time
from typing import Any

WARMER_KEY = "warmer"
DEFAULT_HOLD_MS = 150


def is_warm_event(event: Any) -> bool:
    return isinstance(event, dict) and event.get(WARMER_KEY) is True


def warm_event(concurrency: int, hold_ms: int = DEFAULT_HOLD_MS) -> dict[str, Any]:
    return {WARMER_KEY: True, "concurrency": concurrency, "hold_ms": hold_ms}


def handle_warm_event(
    event: dict[str, Any],
    *,
    cold_start: bool,
    init_seconds: float,
    init_steps: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The warm-up answer; ``init_steps`` (the runtime's step timers) feed the cold-start breakdown."""
    hold_ms = event.get("hold_ms", DEFAULT_HOLD_MS)
    if isinstance(hold_ms, int | float) and 0 < hold_ms <= 5_000:
        time.sleep(hold_ms / 1000)
    answer = {"warmed": True, "cold_start": cold_start, "init_seconds": round(init_seconds, 4)}
    return answer | ({"init_steps": init_steps} if init_steps is not None else {})
