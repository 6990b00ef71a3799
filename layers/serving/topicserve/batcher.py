"""The SQS batcher's logic: one vectorised pass over a whole SQS batch.

Messages are parsed one by one (a bad one never fails the others), then every valid request of the batch
goes through :class:`~topicserve.service.InferenceService` together, so texts repeated across messages are
encoded once and each head runs once. Outcomes per message:

* malformed (not JSON, no ids): reported in ``batchItemFailures`` -> retried -> dead-letter queue;
* parseable but invalid (bad text, unknown model): an error *result*, message deleted;
* valid: a result with every model it asked for;
* results that could not be written: reported as failures so SQS delivers them again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from topicserve.errors import BackendUnavailableError, MalformedMessageError
from topicserve.requests import MessageError, QueuedRequest, parse_message
from topicserve.responses import error_body
from topicserve.service import InferenceService, Stats
from topicserve.settings import Settings

ResultRow = tuple[str, str, dict[str, Any]]


@dataclass
class BatchOutcome:
    failed_message_ids: list[str] = field(default_factory=list)
    results: int = 0
    error_results: int = 0
    malformed: int = 0
    stats: Stats | None = None

    def response(self) -> dict[str, Any]:
        """The ReportBatchItemFailures response shape."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_message_ids]}


def process_records(
    records: Sequence[dict[str, Any]],
    service: InferenceService,
    write: Callable[[list[ResultRow]], None],
    settings: Settings,
    log: Callable[[str, dict[str, Any]], None] = lambda msg, extra: None,
) -> BatchOutcome:
    outcome = BatchOutcome()
    valid: list[tuple[str, QueuedRequest]] = []
    rows: list[ResultRow] = []
    row_owner: list[str] = []  # message id of each row, to retry it if the write fails
    for record in records:
        message_id = record["messageId"]
        try:
            parsed = parse_message(record.get("body", ""), settings, service.models)
        except MalformedMessageError as exc:
            outcome.malformed += 1
            outcome.failed_message_ids.append(message_id)
            log("malformed message", {"message_id": message_id, "reason": str(exc)})
            continue
        if isinstance(parsed, MessageError):
            rows.append((parsed.batch_id, parsed.request_id, {"status": "error", **error_body(parsed.error)}))
            row_owner.append(message_id)
            outcome.error_results += 1
        else:
            valid.append((message_id, parsed))

    if valid:
        models = list(dict.fromkeys(m for _, q in valid for m in q.models))
        try:
            result = service.predict([q.text for _, q in valid], models)
        except Exception as exc:  # a model fault: give the messages back to SQS rather than lose them
            log("inference failed; messages will be retried", {"error": repr(exc), "messages": len(valid)})
            outcome.failed_message_ids.extend(mid for mid, _ in valid)
            valid = []
        else:
            outcome.stats = result.stats
            for i, (message_id, q) in enumerate(valid):
                answer = {
                    "status": "ok",
                    "models": {
                        m: {
                            "model_version": result.versions[m],
                            **result.predictions[m][i].to_dict(),
                        }
                        for m in q.models
                    },
                    "encoder_version": result.encoder_version[:16],
                }
                rows.append((q.batch_id, q.request_id, answer))
                row_owner.append(message_id)

    if rows:
        try:
            write(rows)
        except BackendUnavailableError as exc:
            log("result write failed; messages will be retried", {"error": str(exc), "rows": len(rows)})
            outcome.failed_message_ids.extend(dict.fromkeys(row_owner))
            return outcome
        outcome.results = len(rows)
    return outcome
