"""The SQS batcher's logic: one vectorised pass over a whole SQS batch, with failure isolation.

Messages are parsed one by one (a bad one never fails the others), then every valid request of the batch
goes through :class:`~topicserve.service.InferenceService` together, so texts repeated across messages are
encoded once and each head runs once. When that pass fails, :func:`~topicserve.isolation.isolate` bisects
the batch within the same invocation to find the requests that fail on their own and serves the rest.

A message is one request, or a chunk of requests (what ``POST /v1/batches`` queues): a chunk is one unit
whose results are stored together (topicserve.results), so it is written only when every request in it
has its answer, and retried whole otherwise. Outcomes per message:

* malformed (not JSON, no ids): reported in ``batchItemFailures`` -> retried -> dead-letter queue;
* parseable but invalid (bad text, unknown model): an error *result*, message deleted;
* failing on its own in the pipeline (any stage, deterministically): an error result, message deleted;
* valid: a result with every model it asked for;
* caught by a transient failure (a backend down), by a broken model (a known-good probe fails too), or
  left untried when the invocation's time ran out, or whose result could not be written: reported as
  failures so SQS delivers them again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from topicserve.errors import BackendUnavailableError, MalformedMessageError
from topicserve.feedback.ledger import LedgerKey, served_entries
from topicserve.feedback.model import Served, comparison_fields
from topicserve.isolation import isolate
from topicserve.requests import MessageError, ParsedChunk, QueuedRequest, parse_message
from topicserve.responses import error_result, request_result
from topicserve.results import ResultChunk, ResultRow
from topicserve.rollout.tally import Observation
from topicserve.service import PROBE_TEXT, BatchResult, InferenceService, Stats
from topicserve.settings import Settings

logger = logging.getLogger(__name__)

Stored = ResultRow | ResultChunk  # what one answered message writes
#: a request's stored result from the pass that served it: (request, result, its position in the pass)
Shape = Callable[[QueuedRequest, BatchResult, int, Mapping[LedgerKey, Served] | None], dict[str, Any]]


@dataclass
class BatchOutcome:
    failed_message_ids: list[str] = field(default_factory=list)
    results: int = 0
    error_results: int = 0
    malformed: int = 0
    isolated: int = 0  # messages answered with their own pipeline error instead of failing the batch
    passes: int = 0  # vectorised passes (1 when nothing failed)
    stats: Stats | None = None
    rollout: list[Observation] = field(default_factory=list)  # what the canaries / shadows did
    served: list[BatchResult] = field(default_factory=list)  # the passes that answered (for monitoring)

    def response(self) -> dict[str, Any]:
        """The ReportBatchItemFailures response shape."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_message_ids]}


def shape_answer(
    q: QueuedRequest, result: BatchResult, i: int, compared: Mapping[LedgerKey, Served] | None = None
) -> dict[str, Any]:
    """The stored result of request ``q``; serialised here, so a result that cannot be stored as UTF-8
    JSON fails this message alone, not the write of the whole batch. ``compared``: what each model served
    on each text of a pass in which a candidate was compared (:func:`compared_answers`); a model's answer
    then keeps the answers it was compared with, so feedback by ``batch_id + request_id`` feeds the gate
    (:func:`topicserve.feedback.model.comparison_fields`; ``GET /v1/batches`` does not show them)."""
    answer = request_result(q.models, result, i)
    if compared:
        for model, shown in answer["models"].items():
            served = compared.get((model, result.hashes[i]))
            if served is not None:
                shown.update(comparison_fields(served))
    json.dumps(answer, ensure_ascii=False).encode("utf-8")
    return answer


def compared_answers(result: BatchResult) -> dict[LedgerKey, Served]:
    """Every answer of a pass with the answers compared with it, when a candidate (canary or shadow) was
    compared in it; nothing otherwise (no rollout: nothing to keep)."""
    return served_entries(result, "", 1.0) if result.rollout else {}


@dataclass
class _Unit:
    """One message: the requests it carries (one, or a chunk's) and their answers as they come."""

    message_id: str
    batch_id: str
    chunk: int | None  # None: a one-request message
    request_ids: list[str]
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)  # position -> result
    retry: bool = False

    def stored(self) -> Stored:
        if self.chunk is None:
            return (self.batch_id, self.request_ids[0], self.answers[0])
        results = tuple((r, self.answers[i]) for i, r in enumerate(self.request_ids))
        return ResultChunk(self.batch_id, self.chunk, results)


def process_records(
    records: Sequence[dict[str, Any]],
    service: InferenceService,
    write: Callable[[list[Stored]], None],
    settings: Settings,
    *,
    remaining_ms: Callable[[], float] | None = None,
    reserve_ms: float = 3_000.0,
    shape: Shape = shape_answer,
) -> BatchOutcome:
    """Serve one SQS batch. ``remaining_ms`` is the invocation's time left (the Lambda context's); the
    isolation passes stop ``reserve_ms`` before the end, so the results are still written in time.
    ``shape`` makes each request's stored result (a test stack's chaos switch wraps it)."""
    outcome = BatchOutcome()
    units, valid = _parse(records, service, settings, outcome)
    if valid:
        _serve(valid, units, service, outcome, remaining_ms, reserve_ms, shape)
    answered = [u for u in units if not u.retry]
    outcome.failed_message_ids.extend(u.message_id for u in units if u.retry)
    stored = [u.stored() for u in answered]
    if stored:
        try:
            write(stored)
        except BackendUnavailableError as exc:
            logger.warning(
                "result write failed; messages will be retried",
                extra={"error": str(exc), "units": len(stored)},
            )
            outcome.failed_message_ids.extend(u.message_id for u in answered)
            return outcome
        outcome.results = sum(len(u.request_ids) for u in answered)
    return outcome


def _parse(
    records: Sequence[dict[str, Any]], service: InferenceService, settings: Settings, outcome: BatchOutcome
) -> tuple[list[_Unit], list[tuple[_Unit, int, QueuedRequest]]]:
    """Each message as a unit; a malformed one is reported (it reaches the DLQ), an invalid request
    answered with its error result, the valid requests returned to be served together."""
    units: list[_Unit] = []
    valid: list[tuple[_Unit, int, QueuedRequest]] = []
    for record in records:
        message_id = record.get("messageId", "")
        try:
            parsed = parse_message(record.get("body", ""), settings, service.models)
        except MalformedMessageError as exc:
            outcome.malformed += 1
            outcome.failed_message_ids.append(message_id)
            logger.warning("malformed message", extra={"message_id": message_id, "reason": str(exc)})
            continue
        if isinstance(parsed, ParsedChunk):
            items: list[QueuedRequest | MessageError] = parsed.items
            unit = _Unit(message_id, parsed.batch_id, parsed.chunk, [i.request_id for i in items])
        else:
            items = [parsed]
            unit = _Unit(message_id, parsed.batch_id, None, [parsed.request_id])
        units.append(unit)
        for position, item in enumerate(items):
            if isinstance(item, MessageError):
                unit.answers[position] = error_result(item.error)
                outcome.error_results += 1
            else:
                valid.append((unit, position, item))
    return units, valid


def _serve(
    valid: list[tuple[_Unit, int, QueuedRequest]],
    units: list[_Unit],
    service: InferenceService,
    outcome: BatchOutcome,
    remaining_ms: Callable[[], float] | None,
    reserve_ms: float,
    shape: Shape,
) -> None:
    """Every valid request of the batch in one vectorised pass; bisection isolates the ones that fail
    on their own (an error result each) from those to retry (their whole message is retried)."""
    models = list(dict.fromkeys(m for _, _, q in valid for m in q.models))
    stats: list[Stats] = []

    def run(group: list[int]) -> list[dict[str, Any]]:
        requests = [valid[i][2] for i in group]
        result = service.predict([q.text for q in requests], models, cut=[q.truncated for q in requests])
        compared = compared_answers(result)
        answers = [shape(q, result, k, compared) for k, q in enumerate(requests)]
        stats.append(result.stats)
        outcome.rollout.extend(result.rollout)
        outcome.served.append(result)
        return answers

    iso = isolate(
        len(valid),
        run,
        remaining_ms=remaining_ms,
        reserve_ms=reserve_ms,
        probe=lambda: service.predict([PROBE_TEXT], models),
    )
    outcome.passes = iso.passes
    outcome.stats = Stats.total(stats) if stats else None
    for group, answers in iso.served:
        for i, answer in zip(group, answers, strict=True):
            unit, position, _ = valid[i]
            unit.answers[position] = answer
    for i, error in sorted(iso.failed.items()):
        unit, position, q = valid[i]
        unit.answers[position] = error_result(error)
        logger.warning(
            "message isolated: it fails on its own",
            extra={"message_id": unit.message_id, "request_id": q.request_id, "error": repr(error)},
        )
    outcome.isolated = iso.isolated
    outcome.error_results += iso.isolated
    for i in iso.retry:
        valid[i][0].retry = True
    if iso.retry:
        logger.warning(
            "messages will be retried",
            extra={
                "messages": sum(u.retry for u in units),
                "errors": sorted({repr(e) for e in iso.retry.values()})[:5],
            },
        )
