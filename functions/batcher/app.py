"""SQS batcher: each invocation's whole batch of messages is served as one vectorised batch.

ReportBatchItemFailures is on: only the messages named in the response come back (and reach the DLQ
after maxReceiveCount); the rest are deleted. See topicserve.batcher for the per-message rules. Label
feedback may come this way too (``{"feedback": {"items": [...]}}``, topicserve.feedback.store).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from topicserve.batcher import process_records, shape_answer
from topicserve.bootstrap import build_batcher
from topicserve.faults import FaultInjector, StageFaults
from topicserve.feedback.store import QueuedFeedback, feedback_body, process_feedback_records
from topicserve.observability import invocation, make_logger, make_metrics, record_served, stats_log

logger = make_logger("batcher")
metrics = make_metrics("batcher")
batcher = build_batcher()
runtime, results, tuner = batcher.runtime, batcher.results, batcher.tuner
feedback_store, label_archive = batcher.feedback, batcher.label_archive
# Chaos switches of test stacks (topicserve.faults; off by default, and ignored without TestSwitches): the
# results write fails or kills the environment (FAULT_RATE / FAULT_KILL_RATE), a marked text's result
# cannot be shaped (FAULT_MARKERS shape=...); bootstrap wraps the encoder and heads for the other stages.
write_results = FaultInjector(
    runtime.settings.fault_rate,
    runtime.settings.fault_kill_rate,
).wrap_write(results.write)
shape = StageFaults.parse(runtime.settings.fault_markers).wrap_shape(shape_answer)


@invocation(logger=logger, metrics=metrics, runtime=runtime)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records", [])
    feedback, records = split_feedback(records)  # label feedback through the queue (topicserve.feedback)
    outcome = process_records(
        records,
        runtime.service,
        write_results,
        runtime.settings,
        remaining_ms=context.get_remaining_time_in_millis,
        shape=shape,
    )
    record_served(metrics, runtime, outcome.served)
    if tuner is not None and records:
        tuner.observe(records)
    metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=len(records))
    metrics.add_metric(name="FailedMessages", unit=MetricUnit.Count, value=len(outcome.failed_message_ids))
    metrics.add_metric(name="ErrorResults", unit=MetricUnit.Count, value=outcome.error_results)
    metrics.add_metric(name="IsolatedMessages", unit=MetricUnit.Count, value=outcome.isolated)
    metrics.add_metric(name="InferencePasses", unit=MetricUnit.Count, value=outcome.passes)
    summary = {
        "batch_size": len(records),
        "results": outcome.results,
        "error_results": outcome.error_results,
        "malformed": outcome.malformed,
        "isolated": outcome.isolated,
        "passes": outcome.passes,
        "failed": len(outcome.failed_message_ids),
        "models": {m: h.version for m, h in runtime.service.heads.items()},
    }
    if outcome.stats is not None:
        summary.update(stats_log(outcome.stats))
    logger.info("batch processed", extra=summary)
    response = outcome.response()
    if feedback is not None and feedback.retry:
        response.setdefault("batchItemFailures", []).extend({"itemIdentifier": i} for i in feedback.retry)
    return response


def split_feedback(records: list[dict[str, Any]]) -> tuple[QueuedFeedback | None, list[dict[str, Any]]]:
    """Count the feedback messages (``{"feedback": {"items": [...]}}``) and return the other records."""
    found: list[tuple[str, dict[str, Any]]] = []
    rest: list[dict[str, Any]] = []
    for record in records:
        data = feedback_body(record.get("body", ""))
        if data is None:
            rest.append(record)
        else:
            found.append((record.get("messageId", ""), data))
    if not found:
        return None, rest
    if feedback_store is None:  # no monitor table: nowhere to count them, so they wait (and reach the DLQ)
        return QueuedFeedback(retry=[m for m, _ in found]), rest
    done = process_feedback_records(
        found,
        feedback_store,
        runtime.settings.models,
        window_seconds=runtime.settings.monitor_window_seconds,
        max_chars=runtime.settings.max_text_chars,
        archive=label_archive,
    )
    logger.info("feedback processed", extra={"messages": len(found), **asdict(done)})
    return done, rest
