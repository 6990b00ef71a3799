"""Where an execution environment's init time goes, step by step (the cold-start breakdown's own half).

``python -X importtime`` explains the imports; these timers explain the rest: each step of
:func:`topicserve.bootstrap.build_runtime` records its milliseconds and the thread it ran on (the encoder
and the heads load concurrently, so per-thread sums exceed the wall time). The warm-up answer carries them,
so the benchmark reads them from a real cold start rather than from a re-enactment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class InitSteps:
    """Named durations (ms), summed per name; safe to record from the loader threads."""

    clock: Callable[[], float] = time.perf_counter
    ms: dict[str, float] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self.ms[name] = self.ms.get(name, 0.0) + ms
            self.threads.setdefault(name, threading.current_thread().name)

    def merge(self, steps: dict[str, float]) -> None:
        """Steps a component timed itself (the encoder's and heads' read / sha256 / session / tokenizer)."""
        for name, ms in steps.items():
            self.add(name, ms)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = self.clock()
        try:
            yield
        finally:
            self.add(name, (self.clock() - t0) * 1000)

    def timed(self, name: str, fn: Callable[P, R]) -> Callable[P, R]:
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.step(name):
                return fn(*args, **kwargs)

        return run

    def to_dict(self) -> dict[str, dict[str, float | str]]:
        with self._lock:
            return {k: {"ms": round(v, 2), "thread": self.threads[k]} for k, v in self.ms.items()}


def stopwatch(clock: Callable[[], float] = time.perf_counter) -> Callable[[], float]:
    """Milliseconds since the previous call (the first: since creation), for components timing their own
    consecutive steps without a recorder."""
    last = [clock()]

    def lap() -> float:
        now = clock()
        ms, last[0] = (now - last[0]) * 1000, now
        return ms

    return lap
