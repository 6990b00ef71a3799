"""``Idempotency-Key`` on ``POST /v1/batches`` (topicserve.idempotency): a retry never pays twice.

Powertools' idempotency utility against a moto table; the submission is the real parsing and SQS sending,
so "paid once" is counted where it costs: the messages on the queue.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import time
import types
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.helpers import IDEMPOTENCY_KEYS, create_table
from topicserve.aws import aws_client
from topicserve.catalogue import MODEL_NAMES
from topicserve.errors import (
    BackendUnavailableError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
    InvalidRequestError,
    RequestInProgressError,
)
from topicserve.idempotency import REPLAYED_HEADER, Answer, BatchIdempotency, body_digest, idempotency_key
from topicserve.queue import send_all
from topicserve.requests import parse_batch_submission
from topicserve.responses import status_for
from topicserve.settings import Settings

TABLE = "idempotency"
WINDOW = 3600
SETTINGS = Settings()
BODY = {"texts": ["a text about space", "another about hockey"], "models": ["logreg"]}


class Context:
    """What Powertools reads of the Lambda context: the time the invocation has left."""

    remaining_ms = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def proxy_event(
    key: str | None = None, caller: str | None = "key-id-a", header: str = "Idempotency-Key"
) -> dict:
    event: dict[str, Any] = {
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"identity": {}},
    }
    if key is not None:
        event["headers"][header] = key
        event["multiValueHeaders"] = {header: [key]}
    if caller is not None:
        event["requestContext"]["identity"]["apiKeyId"] = caller
    return event


class Service:
    """The submission as the API does it (parse, enqueue, 202 body), behind BatchIdempotency."""

    def __init__(self, idempotency: BatchIdempotency, sqs: Any, queue_url: str) -> None:
        self.idempotency = idempotency
        self.sqs = sqs
        self.queue_url = queue_url
        self.runs = 0

    def accept(self, body: str) -> dict[str, Any]:
        self.runs += 1
        submission = parse_batch_submission(body, SETTINGS, MODEL_NAMES)
        send_all(self.sqs, self.queue_url, [r.to_message() for r in submission.accepted])
        return {"batch_id": submission.batch_id, "queued": len(submission.accepted)}

    def submit(
        self, payload: Any = BODY, key: str | None = "retry-1", caller: str | None = "key-id-a"
    ) -> Answer:
        body = json.dumps(payload)
        return self.idempotency.run(proxy_event(key, caller), body, Context(), lambda: self.accept(body))

    def queued(self) -> list[str]:
        """Every batch id on the queue, one per message (drains it)."""
        ids: list[str] = []
        while got := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            ids += [json.loads(m["Body"])["batch_id"] for m in got]
            for m in got:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return ids


@pytest.fixture
def table(ddb: Any) -> str:
    return create_table(ddb, TABLE, IDEMPOTENCY_KEYS)


@pytest.fixture
def service(table: str) -> Service:
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="requests")["QueueUrl"]
    # the client the API function passes: botocore's, with the serving timeouts (topicserve.aws)
    return Service(BatchIdempotency(table, aws_client("dynamodb"), window_seconds=WINDOW), sqs, queue_url)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now


# where Powertools' idempotency reads the time (as ``dt.datetime.now()``)
POWERTOOLS_CLOCK_READERS = (
    "aws_lambda_powertools.utilities.idempotency.base",
    "aws_lambda_powertools.utilities.idempotency.persistence.base",
    "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb",
    "aws_lambda_powertools.utilities.idempotency.persistence.datarecord",
)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """Powertools' clock, moved by the test: windows pass without sleeping (nor racing the real clock)."""
    clock = Clock(float(int(time.time())))

    class Now(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Now:
            return cls.fromtimestamp(clock.now, tz)

    fake = types.SimpleNamespace(datetime=Now, timedelta=dt.timedelta)
    for name in POWERTOOLS_CLOCK_READERS:
        module = importlib.import_module(name)
        assert module.dt is dt, f"{name} no longer reads dt.datetime: update POWERTOOLS_CLOCK_READERS"
        monkeypatch.setattr(module, "dt", fake)
    yield clock


# ---- the header ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY", "iDeMpOtEnCy-KeY"]
)
def test_the_header_name_is_case_insensitive(header: str) -> None:
    assert idempotency_key(proxy_event("k-1", header=header)) == "k-1"
    assert idempotency_key({"headers": {header: "k-2"}}) == "k-2"  # no multiValueHeaders
    assert idempotency_key({"multiValueHeaders": {header: ["k-3"]}, "headers": None}) == "k-3"


def test_no_header_is_no_key() -> None:
    assert idempotency_key(proxy_event(None)) is None
    assert idempotency_key({"headers": None, "multiValueHeaders": None}) is None
    assert idempotency_key({}) is None


@pytest.mark.parametrize(
    "key", ["a", "x" * 128, "a b", "!~", "2024-01-01T00:00:00Z#order/42?v=1", "é".encode().hex()]
)
def test_valid_keys(key: str) -> None:
    assert idempotency_key(proxy_event(key)) == key


@pytest.mark.parametrize("key", ["", " ", " a", "a ", "x" * 129, "é", "a\tb", "a\nb", "nul\x00", "\x7f"])
def test_invalid_keys_are_a_400_with_a_message(key: str) -> None:
    with pytest.raises(InvalidIdempotencyKeyError, match="printable ASCII") as caught:
        idempotency_key(proxy_event(key))
    assert status_for(caught.value) == 400


def test_two_different_keys_in_one_request_are_refused() -> None:
    event = {"headers": {"Idempotency-Key": "b"}, "multiValueHeaders": {"Idempotency-Key": ["a", "b"]}}
    with pytest.raises(InvalidIdempotencyKeyError, match="one Idempotency-Key"):
        idempotency_key(event)
    same = {"headers": {"Idempotency-Key": "a"}, "multiValueHeaders": {"idempotency-key": ["a", "a"]}}
    assert idempotency_key(same) == "a"


def test_the_body_is_compared_by_its_bytes() -> None:
    assert body_digest("héllo") == body_digest("héllo".encode()) != body_digest("hello")
    assert body_digest(None) == body_digest("") == body_digest(b"")
    assert body_digest("\ud800") != body_digest("")  # a lone surrogate (a JSON escape) is hashable too


def test_the_statuses() -> None:
    assert status_for(IdempotencyKeyReusedError("x")) == 422
    assert status_for(RequestInProgressError("x")) == 409
    assert status_for(InvalidIdempotencyKeyError("x")) == 400


def test_the_window_is_at_least_a_second(ddb: Any) -> None:
    with pytest.raises(ValueError, match="at least 1 s"):
        BatchIdempotency(TABLE, ddb, window_seconds=0)


# ---- the guarantee ---------------------------------------------------------------------------------------


def test_a_retry_gets_the_first_answer_and_pays_once(service: Service) -> None:
    first = service.submit()
    again = service.submit()
    assert again.body == first.body and again.replayed and not first.replayed
    assert again.headers == {REPLAYED_HEADER: "true"} and first.headers == {}
    assert service.runs == 1
    assert service.queued() == [first.body["batch_id"]] * 2  # the two texts, enqueued once


def test_the_same_key_with_another_body_is_a_422(service: Service) -> None:
    first = service.submit()
    with pytest.raises(IdempotencyKeyReusedError, match="another body") as caught:
        service.submit({**BODY, "texts": ["something else entirely"]})
    assert status_for(caught.value) == 422
    assert service.submit().body == first.body  # the first answer is still the key's
    assert service.runs == 1 and len(service.queued()) == 2


def test_an_invalid_key_is_refused_before_anything_is_queued(service: Service) -> None:
    with pytest.raises(InvalidIdempotencyKeyError):
        service.submit(key="x" * 129)
    assert service.runs == 0 and service.queued() == []


def test_without_the_header_every_request_is_a_new_batch(service: Service, ddb: Any) -> None:
    first, second = service.submit(key=None), service.submit(key=None)
    assert first.body["batch_id"] != second.body["batch_id"] and not second.replayed
    assert service.runs == 2 and len(service.queued()) == 4
    assert ddb.scan(TableName=TABLE)["Items"] == []


def test_two_callers_with_the_same_key_get_two_batches(service: Service) -> None:
    a = service.submit(caller="key-id-a")
    b = service.submit(caller="key-id-b")
    assert a.body["batch_id"] != b.body["batch_id"] and not b.replayed
    assert service.submit(caller="key-id-b").body == b.body
    assert service.runs == 2 and len(service.queued()) == 4


def test_the_record_names_neither_the_key_nor_the_caller(service: Service, ddb: Any) -> None:
    service.submit(key="customer-secret-ish-key")
    (item,) = ddb.scan(TableName=TABLE)["Items"]
    assert item["id"]["S"].startswith("POST /v1/batches#")
    assert "customer" not in json.dumps(item) and "key-id-a" not in json.dumps(item)
    assert item["status"]["S"] == "COMPLETED" and json.loads(item["data"]["S"])["queued"] == 2


def test_a_refused_submission_is_not_recorded(service: Service, ddb: Any) -> None:
    """Only a 202 is the key's answer: after a 4xx the corrected body with the same key is served."""
    with pytest.raises(InvalidRequestError):
        service.submit({"texts": "not a list"})
    assert ddb.scan(TableName=TABLE)["Items"] == []
    fixed = service.submit()
    assert not fixed.replayed and service.runs == 2 and len(service.queued()) == 2


def test_a_failed_submission_is_not_recorded(service: Service) -> None:
    real = service.accept

    def sqs_down(body: str) -> dict[str, Any]:
        raise BackendUnavailableError("SQS unreachable")

    service.accept = sqs_down  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailableError, match="SQS"):
        service.submit()
    service.accept = real  # type: ignore[method-assign]
    assert not service.submit().replayed and len(service.queued()) == 2


def test_a_retry_while_the_first_is_served_is_a_409(service: Service) -> None:
    real = service.accept
    seen: list[BaseException] = []

    def slow(body: str) -> dict[str, Any]:
        with pytest.raises(RequestInProgressError, match="still being served") as caught:
            service.submit()  # the client's retry, while the first request is still being served
        seen.append(caught.value)
        return real(body)

    service.accept = slow  # type: ignore[method-assign]
    first = service.submit()
    assert status_for(seen[0]) == 409  # type: ignore[arg-type]
    service.accept = real  # type: ignore[method-assign]
    assert service.submit().body == first.body and len(service.queued()) == 2


# ---- the window ------------------------------------------------------------------------------------------


def test_the_window_is_honoured(service: Service, ddb: Any, clock: Clock) -> None:
    t0 = clock.now
    first = service.submit()
    (item,) = ddb.scan(TableName=TABLE)["Items"]
    assert int(item["expiration"]["N"]) == t0 + WINDOW  # the table's TTL attribute
    clock.now = t0 + WINDOW - 1
    assert service.submit().body == first.body
    clock.now = t0 + WINDOW + 1
    later = service.submit()
    assert not later.replayed and later.body["batch_id"] != first.body["batch_id"]
    assert service.runs == 2
    clock.now = t0 + WINDOW + 2
    assert service.submit().body == later.body  # the new answer is the key's for a new window


class Killed(BaseException):
    """The invocation ends without an exception Powertools can see (a Lambda timeout)."""


def test_a_killed_request_does_not_lock_its_key_for_the_window(service: Service, clock: Clock) -> None:
    def killed(body: str) -> dict[str, Any]:
        raise Killed

    real = service.accept
    service.accept = killed  # type: ignore[method-assign]
    with pytest.raises(Killed):
        service.submit()
    service.accept = real  # type: ignore[method-assign]
    with pytest.raises(RequestInProgressError):  # within the invocation's time left: it may still answer
        service.submit()
    clock.now += Context.remaining_ms / 1000 + 1
    assert not service.submit().replayed and service.runs == 1 and len(service.queued()) == 2


# ---- deployments and outages -----------------------------------------------------------------------------


def test_without_a_table_the_header_is_ignored_with_a_warning(
    ddb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    service = Service(BatchIdempotency("", ddb), sqs, sqs.create_queue(QueueName="q")["QueueUrl"])
    with caplog.at_level(logging.WARNING, logger="topicserve.idempotency"):
        first, second = service.submit(), service.submit()
    assert first.body["batch_id"] != second.body["batch_id"] and service.runs == 2
    assert "Idempotency-Key ignored" in caplog.text
    with pytest.raises(InvalidIdempotencyKeyError):  # the documented key rules hold all the same
        service.submit(key=" ")


def test_an_unreachable_table_is_a_503_before_anything_is_queued(service: Service, ddb: Any) -> None:
    ddb.delete_table(TableName=TABLE)
    with pytest.raises(BackendUnavailableError, match="retry with the same Idempotency-Key"):
        service.submit()
    assert service.runs == 0 and service.queued() == []


class FailingUpdates:
    """A DynamoDB client whose UpdateItem (Powertools' save of the answer) fails."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "UpdateItem")


def test_a_queued_batch_is_answered_even_when_its_record_fails(table: str, ddb: Any) -> None:
    """The batch is queued, so the caller gets its id (a 503 would invite a second, paid batch)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    idempotency = BatchIdempotency(table, FailingUpdates(aws_client("dynamodb")), window_seconds=WINDOW)
    service = Service(idempotency, sqs, sqs.create_queue(QueueName="q")["QueueUrl"])
    answer = service.submit()
    assert answer.body["queued"] == 2 and service.queued() == [answer.body["batch_id"]] * 2
