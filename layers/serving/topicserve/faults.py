"""Chaos switch of the SQS batcher: inject failures and environment deaths to prove nothing is lost.

Off by default (both rates 0) and meant for test stacks only: the reliability tests turn it on by setting
``FAULT_RATE`` / ``FAULT_KILL_RATE`` on the batcher function's configuration, then turn it off again.

The fault strikes *between* two halves of a batch's result write, the worst moment: half the results are
already stored when the invocation fails, so SQS delivers every message of the batch again and the
already-written half is written a second time. That is exactly the duplicate delivery the results table
must absorb (one item per (batch_id, request_id)), and the un-written half is exactly the work that must
not be lost.

* ``FAULT_RATE``: probability per batch that the handler raises :class:`InjectedFault` (a crashing
  invocation: Lambda reports a function error, the whole batch becomes visible again after the queue's
  visibility timeout);
* ``FAULT_KILL_RATE``: probability per batch that the process exits at once with ``os._exit(137)`` (an
  execution environment killed mid-batch, as by the OOM killer: no ``finally``, no flush, no response).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

Row = TypeVar("Row")
KILL_EXIT_CODE = 137  # what a SIGKILLed process reports: the OOM killer's signature


class InjectedFault(RuntimeError):
    """Raised by the chaos switch; never raised when the switch is off."""


@dataclass
class FaultInjector:
    fail_rate: float = 0.0
    kill_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    exit: Callable[[int], Any] = os._exit
    log: Callable[[str, dict[str, Any]], None] = lambda message, extra: None

    def __post_init__(self) -> None:
        for name, rate in (("FAULT_RATE", self.fail_rate), ("FAULT_KILL_RATE", self.kill_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {rate}")
        if self.fail_rate + self.kill_rate > 1.0:
            raise ValueError("FAULT_RATE + FAULT_KILL_RATE must not exceed 1")

    @property
    def enabled(self) -> bool:
        return self.fail_rate > 0 or self.kill_rate > 0

    def wrap_write(self, write: Callable[[list[Row]], None]) -> Callable[[list[Row]], None]:
        """``write`` itself when the switch is off (zero cost in production), else a faulty version."""
        if not self.enabled:
            return write

        def faulty_write(rows: list[Row]) -> None:
            roll = self.rng.random()
            if roll >= self.fail_rate + self.kill_rate:
                write(rows)
                return
            half = len(rows) // 2
            if half:
                write(rows[:half])
            if roll < self.kill_rate:
                self.log("chaos: killing the execution environment mid-batch", {"written": half})
                self.exit(KILL_EXIT_CODE)
            self.log("chaos: failing the batch mid-write", {"written": half})
            raise InjectedFault(f"injected fault after writing {half} of {len(rows)} results")

        return faulty_write
