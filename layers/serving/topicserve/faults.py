"""Chaos switches for test stacks: batch faults and environment deaths (nothing is lost), and per-text
stage faults (one poison input never takes down its neighbours). All off by default.

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

import logging
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from topicserve.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

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
                logger.warning("chaos: killing the execution environment mid-batch", extra={"written": half})
                self.exit(KILL_EXIT_CODE)
            logger.warning("chaos: failing the batch mid-write", extra={"written": half})
            raise InjectedFault(f"injected fault after writing {half} of {len(rows)} results")

        return faulty_write


#: Where a stage fault can strike: the service's pipeline steps, the batcher's shaping of a result, and
#: ``transient`` (a backend outage: the request must be retried, not answered with an error).
STAGES = ("transient", "tokenize", "encode", "head", "shape")


@dataclass(frozen=True)
class StageFaults:
    """Deterministic per-text faults, to prove failure isolation end to end (``FAULT_MARKERS``).

    ``FAULT_MARKERS="encode=FAULTENCODE,head=FAULTHEAD"`` makes any pass over a text containing the marker
    fail at that stage, every time: exactly the shape of a poison input that breaks one stage, which the
    batcher must pin on its message and answer with an error result while serving the rest. Empty (the
    default) in production; every check is then a dictionary lookup.
    """

    markers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str) -> StageFaults:
        markers: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            stage, _, marker = part.partition("=")
            if stage not in STAGES or not marker:
                raise ValueError(f"FAULT_MARKERS entries are stage=marker with a stage in {STAGES}: {part!r}")
            markers[stage] = marker
        return cls(markers)

    def check(self, stage: str, texts: Iterable[str]) -> None:
        marker = self.markers.get(stage)
        if marker is None or not any(marker in t for t in texts):
            return
        if stage == "transient":
            raise BackendUnavailableError(f"injected transient fault ({marker})")
        raise InjectedFault(f"injected {stage} fault ({marker})")
