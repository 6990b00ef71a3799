"""The bulk worker against an in-process SQS (moto): merged receives, the batcher's per-message rules,
deletes only of what was answered, visibility heartbeats, stopping after the batch in hand."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest

from tests.unit.conftest import FakeEncoder, FakeHead
from topicserve.batcher import ResultRow
from topicserve.requests import QueuedRequest
from topicserve.service import InferenceService
from topicserve.settings import Settings
from topicserve.worker import Heartbeat, Worker, WorkerSettings


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="bulk", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    return url


def send(sqs: Any, queue: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])],
        )


def requests(n: int, batch: str = "b1") -> list[str]:
    return [QueuedRequest(batch, f"r{i}", f"text number {i % 40}", ["logreg"]).to_message() for i in range(n)]


def make_worker(sqs: Any, queue: str, written: list[ResultRow], **config: Any) -> Worker:
    service = InferenceService(FakeEncoder(), {"logreg": FakeHead("logreg")})
    settings = Settings(models=("logreg",))
    return Worker(
        sqs, WorkerSettings(queue_url=queue, wait_seconds=0, **config), service, written.extend, settings
    )


def visible(sqs: Any, queue: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_receives_are_merged_and_every_answered_message_is_deleted(sqs: Any, queue: str) -> None:
    send(sqs, queue, requests(45))
    written: list[ResultRow] = []
    worker = make_worker(sqs, queue, written, target_messages=30)
    first = worker.gather()
    assert len(first) == 30  # three receives of 10 merged into one pass
    worker.serve(first)
    worker.run(once=True)
    assert sorted(r for _, r, _ in written) == sorted(f"r{i}" for i in range(45))
    assert all(result["status"] == "ok" for _, _, result in written)
    assert worker.answered == 45 and visible(sqs, queue) == 0


def test_malformed_messages_are_left_for_sqs_to_redeliver(sqs: Any, queue: str) -> None:
    send(sqs, queue, [*requests(5), "not json at all"])
    written: list[ResultRow] = []
    worker = make_worker(sqs, queue, written, retry_delay_seconds=1)
    worker.serve(worker.gather())
    assert len(written) == 5 and worker.retried == 1
    time.sleep(1.2)  # its retry delay: SQS delivers it again (to the DLQ after maxReceiveCount)
    again = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in again] == ["not json at all"]


def test_heartbeat_extends_the_visibility_of_a_long_batch(sqs: Any, queue: str) -> None:
    send(sqs, queue, requests(3))
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=1)["Messages"]
    with Heartbeat(sqs, queue, [m["ReceiptHandle"] for m in messages], every=0.3, extend=30) as beat:
        time.sleep(1.5)  # past the original 1 s: without the heartbeat they would be visible again
        assert sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []) == []
    assert beat.beats >= 3


def test_stop_finishes_the_batch_in_hand_and_receives_nothing_more(sqs: Any, queue: str) -> None:
    send(sqs, queue, requests(20))
    written: list[ResultRow] = []
    worker = make_worker(sqs, queue, written, target_messages=10)

    def slow_write(rows: list[ResultRow]) -> None:
        worker.stop()  # SIGTERM arrives while the batch is being answered
        written.extend(rows)

    worker.write = slow_write
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(written) == 10 and worker.answered == 10
    assert visible(sqs, queue) == 10  # the rest stays queued for the next task
