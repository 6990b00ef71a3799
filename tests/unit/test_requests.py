import json
from typing import Any

import pytest

from topicserve.errors import (
    EmptyTextError,
    InvalidRequestError,
    MalformedMessageError,
    PayloadTooLargeError,
    TooManyTextsError,
    UnknownModelError,
)
from topicserve.requests import (
    MessageError,
    QueuedRequest,
    parse_batch_submission,
    parse_message,
    parse_predict,
)
from topicserve.settings import Settings

SERVED = ["logreg", "rf", "hgb", "mlp"]
S = Settings(max_body_bytes=10_000, max_message_bytes=2_000, max_text_chars=500, max_texts_per_request=4)


def test_predict_accepts_text_or_texts_and_normalises() -> None:
    assert parse_predict(json.dumps({"text": "  a\n b "}), S) == ["a b"]
    assert parse_predict(json.dumps({"texts": ["x", "y"]}), S) == ["x", "y"]
    assert parse_predict(json.dumps({"text": "z"}).encode(), S) == ["z"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (None, InvalidRequestError),
        ("", InvalidRequestError),
        ("{", InvalidRequestError),
        ("3", InvalidRequestError),
        ('{"texts": ["a","b","c","d","e"]}', TooManyTextsError),
        ('{"text": ""}', EmptyTextError),
        ("{}", InvalidRequestError),
        ("x" * 10_001, PayloadTooLargeError),
        (b"\xff\xfe", InvalidRequestError),
    ],
)
def test_predict_refusals(body: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_predict(body, S)


def test_batch_submission_forms() -> None:
    reqs = parse_batch_submission(json.dumps({"texts": ["a", "b"], "models": ["rf"]}), S, SERVED)
    assert [(r.request_id, r.text, r.models) for r in reqs] == [("0", "a", ["rf"]), ("1", "b", ["rf"])]
    assert len({r.batch_id for r in reqs}) == 1
    reqs = parse_batch_submission(
        json.dumps({"requests": [{"id": "q1", "text": "a"}, {"text": "b", "models": ["mlp", "mlp"]}]}),
        S,
        SERVED,
    )
    assert [(r.request_id, r.models) for r in reqs] == [("q1", SERVED), ("1", ["mlp"])]


def test_batch_submission_refuses_unknown_models_and_empty() -> None:
    with pytest.raises(UnknownModelError):
        parse_batch_submission('{"texts": ["a"], "models": ["bert"]}', S, SERVED)
    with pytest.raises(InvalidRequestError, match="omit it"):
        parse_batch_submission('{"texts": ["a"], "models": []}', S, SERVED)


def test_message_roundtrip() -> None:
    q = QueuedRequest("b", "r", "héllo", ["rf"])
    assert parse_message(q.to_message(), S, SERVED) == q


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"request_id": "r", "text": "a"}',
        '{"batch_id": "b", "request_id": 5}',
        '{"batch_id": "a b"}',
    ],
)
def test_malformed_messages_go_to_the_dlq(body: str) -> None:
    with pytest.raises(MalformedMessageError):
        parse_message(body, S, SERVED)


def test_oversized_message_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="limit"):
        parse_message(json.dumps({"batch_id": "b", "request_id": "r", "text": "x" * 3000}), S, SERVED)


@pytest.mark.parametrize(
    "extra", [{"text": ""}, {"text": 4}, {"text": "a", "models": ["bert"]}, {"text": "a", "extra": 1}]
)
def test_invalid_but_parseable_messages_get_an_error_result(extra: dict[str, Any]) -> None:
    parsed = parse_message(json.dumps({"batch_id": "b", "request_id": "r", **extra}), S, SERVED)
    assert isinstance(parsed, MessageError) and parsed.request_id == "r"
