"""SQS event source mapping: batch size 50 with a 1 s batching window, partial batch failures, DLQ."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import LocalCloud, Stack

pytestmark = pytest.mark.e2e

N_MESSAGES = 200
FAIL_EVERY = 20  # 10 messages fail every time they are delivered


def _scan_batches(table: Any) -> list[dict[str, Any]]:
    items, kwargs = [], {}
    while True:
        page = table.scan(**kwargs)
        items += [i for i in page["Items"] if i["pk"].startswith("batch#")]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _drain(sqs: Any, url: str, expected: int, timeout: float) -> list[dict[str, Any]]:
    bodies: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(bodies) < expected and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            bodies[m["MessageId"]] = json.loads(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return list(bodies.values())


def test_batches_partial_failures_and_dlq(localcloud: LocalCloud, probe_stack: Stack) -> None:

    sqs = localcloud.client("sqs")
    table = localcloud.resource("dynamodb").Table(probe_stack.outputs["ProbeTableName"])
    url, dlq = probe_stack.outputs["WorkQueueUrl"], probe_stack.outputs["WorkDeadLetterQueueUrl"]
    messages = [{"id": i, "fail": i % FAIL_EVERY == 0} for i in range(N_MESSAGES)]
    should_fail = {str(m["id"]) for m in messages if m["fail"]}
    should_pass = {str(m["id"]) for m in messages} - should_fail

    for start in range(0, N_MESSAGES, 10):  # "at once": 20 SendMessageBatch calls back to back
        entries = [{"Id": str(m["id"]), "MessageBody": json.dumps(m)} for m in messages[start : start + 10]]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")

    deadline = time.monotonic() + 60
    batches: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        batches = _scan_batches(table)
        passed = {i for b in batches for i in b["ok"]}
        failed_deliveries = sum(len(b["failed"]) for b in batches)
        if passed >= should_pass and failed_deliveries >= 2 * len(should_fail):
            break
        time.sleep(1)
    passed = {i for b in batches for i in b["ok"]}
    assert passed == should_pass, f"{len(should_pass - passed)} messages never processed"
    sizes = sorted((int(b["size"]) for b in batches), reverse=True)
    assert sizes[0] > 10, f"batch sizes {sizes}: the batching window did not batch beyond 10"
    assert sizes[0] <= 50
    # each failing message was redelivered (maxReceiveCount 2) before going to the DLQ
    failed_counts: dict[str, int] = {}
    for b in batches:
        for i in b["failed"]:
            failed_counts[i] = failed_counts.get(i, 0) + 1
    assert set(failed_counts) == should_fail
    assert all(c >= 2 for c in failed_counts.values()), failed_counts

    dead = _drain(sqs, dlq, len(should_fail), timeout=30)
    assert {str(m["id"]) for m in dead} == should_fail
    # nothing left in the work queue: the passed messages were deleted, the failed ones moved
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert int(attrs["ApproximateNumberOfMessages"]) == 0
    assert int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0
    assert len(passed) + len(dead) == N_MESSAGES  # none lost
