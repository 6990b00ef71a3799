"""SQS adapter: enqueue requests with SendMessageBatch (10 per call), retrying entries SQS reports failed;
and which queue a submission goes to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from topicserve.dynamo import RetryPolicy, chunks
from topicserve.errors import BackendUnavailableError
from topicserve.settings import Settings

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

    from topicserve.aws import SQSClient

SQS_BATCH = 10


def choose_queue(accepted: int, asked: bool | None, settings: Settings) -> tuple[str, str]:
    """("bulk" | "requests", queue URL) for a submission of ``accepted`` valid items.

    The bulk queue (drained by the GPU worker in large merged batches) when it exists and the submission
    asks for it or is at least ``bulk_threshold_texts`` long; Lambda's batcher otherwise, which answers a
    small batch sooner. A submission that asks for bulk where there is no bulk queue is still served, by
    the batcher, and the answer says which queue took it.
    """
    if settings.bulk_queue_url and (asked or (asked is None and accepted >= settings.bulk_threshold_texts)):
        return "bulk", settings.bulk_queue_url
    return "requests", settings.requests_queue_url


def send_all(
    client: SQSClient, queue_url: str, bodies: Sequence[str], *, retry: RetryPolicy | None = None
) -> int:
    """Send every body; returns the number of SendMessageBatch calls. Raises if an entry keeps failing,
    so an API caller gets an error instead of a batch that silently lacks requests."""
    retry = retry or RetryPolicy()
    calls = 0
    for chunk in chunks(list(bodies), SQS_BATCH):
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)
        ]
        for attempt in range(retry.max_attempts):
            calls += 1
            response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            failed = {f["Id"] for f in response.get("Failed", [])}
            permanent = [f for f in response.get("Failed", []) if f.get("SenderFault")]
            if permanent:
                raise BackendUnavailableError(f"SQS refused messages: {permanent}")
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                break
            retry.backoff(attempt)
        else:
            raise BackendUnavailableError(
                f"SQS: {len(entries)} messages unsent after {retry.max_attempts} attempts"
            )
    return calls
