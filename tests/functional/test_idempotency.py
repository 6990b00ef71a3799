"""``Idempotency-Key`` through the real API handler (functions/api/app.py) and moto: a retried
``POST /v1/batches`` gets the first answer and is queued once. The API function loads no model, so these
tests run without build/models."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.conftest import api_event, body_of, invoke

BODY = {"texts": ["orbits and launch windows", "the goalie saved it"], "models": ["logreg", "rf"]}


def submit(
    stack: dict[str, Any],
    body: Any = BODY,
    key: str | None = None,
    *,
    caller: str = "api-key-id-1",
    header: str = "Idempotency-Key",
) -> dict[str, Any]:
    event = api_event("POST", "/v1/batches", body)
    event["requestContext"]["identity"]["apiKeyId"] = caller
    if key is not None:
        event["headers"][header] = key
        event["multiValueHeaders"][header] = [key]
    return invoke(stack["api"], event)


def queued(stack: dict[str, Any]) -> list[str]:
    """The batch id of every request on the requests queue, one per request of a chunk (drains it)."""
    sqs, url = stack["sqs"], stack["queue_url"]
    ids: list[str] = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for m in got:
            body = json.loads(m["Body"])
            ids += [body["batch_id"]] * len(body.get("requests", [body]))
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return ids


def replayed(response: dict[str, Any]) -> bool:
    headers = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    headers.update({k.lower(): [v] for k, v in (response.get("headers") or {}).items()})
    return headers.get("idempotent-replayed") == ["true"]


@pytest.fixture
def stack(api_stack: dict[str, Any]) -> dict[str, Any]:
    queued(api_stack)  # each test counts its own messages
    return api_stack


def test_a_retry_gets_the_first_answer_and_is_queued_once(stack: dict[str, Any]) -> None:
    first = submit(stack, key="order-7f3a")
    assert first["statusCode"] == 202, first["body"]
    retry = submit(stack, key="order-7f3a", header="idempotency-key")  # header names: any case
    assert retry["statusCode"] == 202 and body_of(retry) == body_of(first)
    assert replayed(retry) and not replayed(first)
    batch_id = body_of(first)["batch_id"]
    assert queued(stack) == [batch_id, batch_id]  # two texts, enqueued once
    page = invoke(
        stack["api"], api_event("GET", f"/v1/batches/{batch_id}", resource="/v1/batches/{batch_id}")
    )
    assert body_of(page)["expected"] == 2


def test_the_same_key_with_another_body_is_a_422(stack: dict[str, Any]) -> None:
    assert submit(stack, key="order-reused")["statusCode"] == 202
    other = submit(stack, {"texts": ["a different submission"]}, key="order-reused")
    assert other["statusCode"] == 422
    error = body_of(other)["error"]
    assert error["type"] == "IdempotencyKeyReusedError" and "another body" in error["message"]
    assert len(queued(stack)) == 2


@pytest.mark.parametrize("key", ["", " padded ", "x" * 129, "tab\there", "naïve"])
def test_an_invalid_key_is_a_400(stack: dict[str, Any], key: str) -> None:
    response = submit(stack, key=key)
    assert response["statusCode"] == 400
    error = body_of(response)["error"]
    assert error["type"] == "InvalidIdempotencyKeyError" and "printable ASCII" in error["message"]
    assert queued(stack) == []


def test_without_the_header_nothing_changes(stack: dict[str, Any]) -> None:
    first, second = submit(stack), submit(stack)
    assert first["statusCode"] == second["statusCode"] == 202 and not replayed(second)
    assert body_of(first)["batch_id"] != body_of(second)["batch_id"]
    assert len(queued(stack)) == 4


def test_two_callers_with_one_key_get_their_own_batches(stack: dict[str, Any]) -> None:
    a = submit(stack, key="shared-key", caller="caller-a")
    b = submit(stack, key="shared-key", caller="caller-b")
    assert body_of(a)["batch_id"] != body_of(b)["batch_id"] and not replayed(b)
    assert len(queued(stack)) == 4


def test_a_refused_body_does_not_take_the_key(stack: dict[str, Any]) -> None:
    bad = submit(stack, {"texts": ["", "  "]}, key="fix-and-retry")
    assert bad["statusCode"] == 400 and body_of(bad)["rejected"]
    fixed = submit(stack, key="fix-and-retry")
    assert fixed["statusCode"] == 202 and not replayed(fixed)
    assert len(queued(stack)) == 2
