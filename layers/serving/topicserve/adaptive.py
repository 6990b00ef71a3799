"""Adaptive batching for the SQS path: an AIMD controller (pure policy) and the tuner that applies it.

Why not Clipper's rule as is: Clipper shrinks the batch when latency exceeds the SLO. On an SQS event
source the batch size is only a *cap*; what adds latency at low load is the batching *window* (messages
wait for it), and what limits throughput at high load is a cap that is too small (many small invocations,
each paying invocation, cache and result-write overheads). So the controller reads two signals from every
batch it served:

* the end-to-end latency of its messages (SQS ``SentTimestamp`` -> now), a tail statistic over a sliding
  window of recent batches;
* whether the batch arrived *full* (the queue had more waiting: a backlog).

and moves (batch size cap, window) with additive increase / multiplicative decrease:

* tail latency over ``slo * high`` and batches under half full: the window is what hurts -> window x
  ``beta`` (multiplicative decrease), down to 0 (batches fuller than that mean real load, where a shorter
  window would only buy more, smaller invocations);
* batches full (backlog): raise the cap so each invocation drains more: doubling it (slow start, as TCP)
  until a tail over the SLO has been seen, by ``step`` (additive increase) after that;
* tail latency under ``slo * low`` and batches not full: lengthen the window by one step (additive
  increase), to buy larger, cheaper batches while the SLO has room.

AWS requires a window of at least 1 s for a batch size above 10, so the decision respects that rule (the
cap is clamped to 10 while the window is 0). The tuner applies a decision with UpdateEventSourceMapping,
at most once per ``cooldown_s``: each update restarts the poller, so flapping would cost more than it saves.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from topicserve.aws import AwsClient

if TYPE_CHECKING:
    from topicserve.settings import Settings

logger = logging.getLogger(__name__)

AWS_MAX_BATCH_WITHOUT_WINDOW = 10


@dataclass(frozen=True)
class BatchingConfig:
    """What an SQS event source mapping is told: BatchSize and MaximumBatchingWindowInSeconds."""

    batch_size: int
    window_s: int

    def valid_for_aws(self) -> BatchingConfig:
        if self.window_s < 1 and self.batch_size > AWS_MAX_BATCH_WITHOUT_WINDOW:
            return BatchingConfig(AWS_MAX_BATCH_WITHOUT_WINDOW, 0)
        return self


@dataclass
class AimdController:
    """Additive-increase / multiplicative-decrease of the batching window and batch-size cap."""

    slo_ms: float
    min_batch: int = 1
    max_batch: int = 1_000
    max_window_s: int = 5
    batch_step: int = 10
    ssthresh: int = 1_000  # below it a backlog doubles the cap (slow start); above it, + batch_step
    beta: float = 0.5
    high: float = 0.8  # decrease when the tail latency is above slo * high
    low: float = 0.4  # lengthen the window only while the tail latency is below slo * low
    quantile: float = 0.99
    history: int = 512  # message latencies kept for the tail estimate
    config: BatchingConfig = field(default_factory=lambda: BatchingConfig(10, 0))
    _latencies: deque[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.slo_ms <= 0 or not 0 < self.beta < 1 or not 0 < self.low < self.high:
            raise ValueError("need slo_ms > 0, 0 < beta < 1 and 0 < low < high")
        self._latencies = deque(maxlen=self.history)
        self.config = self.clamp(self.config)

    def tail_ms(self) -> float | None:
        if not self._latencies:
            return None
        ordered = sorted(self._latencies)
        return ordered[min(len(ordered) - 1, math.ceil(self.quantile * len(ordered)) - 1)]

    def observe(self, latencies_ms: Sequence[float], received: int) -> BatchingConfig:
        """Feed one served batch; return the configuration to use from now on."""
        self._latencies.extend(latencies_ms)
        tail = self.tail_ms()
        full = received >= self.config.batch_size
        batch, window = self.config.batch_size, self.config.window_s
        if full:
            # slow start (as TCP): double the cap on a backlog until a tail over the SLO has been seen,
            # then grow it additively; a burst must not wait many cooldowns for the cap to catch up
            batch = batch * 2 if batch < self.ssthresh else batch + self.batch_step
            if tail is not None and tail > self.slo_ms * self.high:
                self.ssthresh = min(self.ssthresh, batch)
            if batch > AWS_MAX_BATCH_WITHOUT_WINDOW and window < 1:
                window = 1  # AWS: a cap above 10 needs a window of at least 1 s
        elif tail is not None and tail > self.slo_ms * self.high and received * 2 < self.config.batch_size:
            # light batches yet a high tail: the messages waited for the window -> shorten it. (Batches at
            # least half full mean real load: a shorter window would only mean more, smaller invocations.)
            window = math.floor(window * self.beta)
            self._latencies.clear()  # judge the new setting on its own batches
        elif (
            tail is not None
            and tail < self.slo_ms * self.low
            and (window + 1) * 1000 < self.slo_ms * self.low
        ):
            window += 1
        self.config = self.clamp(BatchingConfig(batch, window))
        return self.config

    def clamp(self, config: BatchingConfig) -> BatchingConfig:
        batch = max(self.min_batch, min(self.max_batch, config.batch_size))
        window = max(0, min(self.max_window_s, config.window_s))
        return BatchingConfig(batch, window).valid_for_aws()


def message_latencies_ms(records: Iterable[Mapping[str, Any]], now_ms: float) -> list[float]:
    """End-to-end age of each SQS record at completion: now - the record's SentTimestamp."""
    out = []
    for record in records:
        sent = (record.get("attributes") or {}).get("SentTimestamp")
        if sent is not None:
            try:
                out.append(max(0.0, now_ms - float(sent)))
            except (TypeError, ValueError):
                continue
    return out


class MappingTuner:
    """Applies an :class:`AimdController` to the function's own SQS event source mapping.

    ``lambda_client`` is a boto3 Lambda client (duck-typed for tests). The mapping is found lazily on the
    first batch (ListEventSourceMappings for the function); failures are logged and never fail a batch:
    adaptivity is an optimisation, the batch's results are what matter.
    """

    def __init__(
        self,
        controller: AimdController,
        lambda_client: AwsClient,
        function_name: str,
        *,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controller = controller
        self.client = lambda_client
        self.function_name = function_name
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.mapping_uuid: str | None = None
        self.applied: BatchingConfig | None = None
        self._last_update = -math.inf

    def observe(self, records: Sequence[Mapping[str, Any]], now_ms: float | None = None) -> BatchingConfig:
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        if self.mapping_uuid is None:
            self._discover()
        decision = self.controller.observe(message_latencies_ms(records, now_ms), len(records))
        if (
            self.mapping_uuid is not None
            and decision != self.applied
            and self.clock() - self._last_update >= self.cooldown_s
        ):
            self._apply(decision)
        if self.applied is not None and decision != self.applied:
            # not applied (cooldown, error): the controller must keep reasoning about the live setting,
            # or "full" would be judged against a cap the queue never saw
            self.controller.config = self.applied
        return decision

    def _discover(self) -> None:
        """Find the SQS mapping and start the controller from its current settings."""
        try:
            mappings = self.client.list_event_source_mappings(FunctionName=self.function_name)
        except Exception as exc:
            logger.warning("cannot list event source mappings", extra={"error": repr(exc)})
            return
        found = [m for m in mappings.get("EventSourceMappings", []) if ":sqs:" in m.get("EventSourceArn", "")]
        if found:
            self.mapping_uuid = found[0]["UUID"]
            current = BatchingConfig(
                int(found[0].get("BatchSize", 10)), int(found[0].get("MaximumBatchingWindowInSeconds", 0))
            )
            self.applied = current
            self.controller.config = self.controller.clamp(current)

    def _apply(self, decision: BatchingConfig) -> None:
        try:
            self.client.update_event_source_mapping(
                UUID=self.mapping_uuid,
                BatchSize=decision.batch_size,
                MaximumBatchingWindowInSeconds=decision.window_s,
            )
        except Exception as exc:  # never fail the batch over tuning
            logger.warning("batching update failed", extra={"error": repr(exc)})
            return
        finally:
            self._last_update = self.clock()
        logger.info(
            "batching updated", extra={"batch_size": decision.batch_size, "window_s": decision.window_s}
        )
        self.applied = decision


def tuner_from_settings(
    settings: Settings,
    client_factory: Callable[[str], AwsClient],
    function_name: str | None,
) -> MappingTuner | None:
    """The batcher's tuner when ``ADAPTIVE_BATCHING`` is on (and the function knows its own name)."""
    if not settings.adaptive_batching or not function_name:
        return None
    controller = AimdController(slo_ms=float(settings.latency_slo_ms))
    return MappingTuner(controller, client_factory("lambda"), function_name, cooldown_s=3.0)
