import json
from typing import Any

import pytest

from topicserve.catalogue import MODEL_NAMES
from topicserve.errors import (
    EmptyTextError,
    InvalidRequestError,
    MalformedMessageError,
    PayloadTooLargeError,
    TextTypeError,
    TooManyTextsError,
    UnknownModelError,
)
from topicserve.requests import (
    MessageError,
    NothingValidError,
    PageRequest,
    QueuedRequest,
    decode_page_token,
    encode_page_token,
    parse_batch_submission,
    parse_message,
    parse_page_request,
    parse_predict,
)
from topicserve.settings import Settings
from topicserve.text import CheckedText

SERVED = list(MODEL_NAMES)
S = Settings(max_body_bytes=10_000, max_message_bytes=2_000, max_text_chars=500, max_texts_per_request=4)


def texts_of(checked: list[CheckedText]) -> list[str]:
    return [t.text for t in checked]


def test_predict_accepts_text_or_texts_and_normalises() -> None:
    assert texts_of(parse_predict(json.dumps({"text": "  a\n b "}), S)) == ["a b"]
    assert texts_of(parse_predict(json.dumps({"texts": ["x", "y"]}), S)) == ["x", "y"]
    assert texts_of(parse_predict(json.dumps({"text": "z"}).encode(), S)) == ["z"]


def test_predict_cuts_long_texts_and_reads_lone_surrogates() -> None:
    [long] = parse_predict(json.dumps({"text": "w " * 400}), S)
    assert long.cut and len(long.text) <= S.max_text_chars
    [odd] = parse_predict('{"text": "a\\ud800b \\udc00"}', S)  # lone surrogates as JSON escapes
    assert odd == CheckedText("ab")


def test_deep_nesting_is_a_400_not_a_recursion_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        parse_predict(deep, Settings())


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
    sub = parse_batch_submission(json.dumps({"texts": ["a", "b"], "models": ["rf"]}), S, SERVED)
    reqs = sub.accepted
    assert [(r.request_id, r.text, r.models) for r in reqs] == [("0", "a", ["rf"]), ("1", "b", ["rf"])]
    assert {r.batch_id for r in reqs} == {sub.batch_id} and not sub.rejected and sub.count == 2
    reqs = parse_batch_submission(
        json.dumps({"requests": [{"id": "q1", "text": "a"}, {"text": "b", "models": ["mlp", "mlp"]}]}),
        S,
        SERVED,
    ).accepted
    assert [(r.request_id, r.models) for r in reqs] == [("q1", SERVED), ("1", ["mlp"])]


def test_batch_submission_keeps_valid_items_and_lists_the_rejected() -> None:
    sub = parse_batch_submission(json.dumps({"texts": ["a", "", 7, "  ", "b", "w " * 400]}), S, SERVED)
    assert [r.request_id for r in sub.accepted] == ["0", "4", "5"]
    assert sub.accepted[2].truncated and '"truncated":true' in sub.accepted[2].to_message()
    assert [(r.index, r.request_id, type(r.error)) for r in sub.rejected] == [
        (1, "1", EmptyTextError),
        (2, "2", TextTypeError),
        (3, "3", EmptyTextError),
    ]
    assert sub.count == 6
    assert sub.rejected[0].to_dict()["error"]["type"] == "EmptyTextError"


def test_rejected_requests_keep_their_own_id_when_it_is_usable() -> None:
    items = [
        {"id": "x", "text": "ok"},
        {"id": "x", "text": "duplicate id"},
        {"id": "bad id!", "text": "invalid id"},
        {"id": "y", "text": ""},
        {"id": "z", "text": "a", "models": ["bert"]},
        "not an object",
        {"id": "w", "text": "a", "colour": "red"},
    ]
    sub = parse_batch_submission(json.dumps({"requests": items}), S, SERVED)
    assert [r.request_id for r in sub.accepted] == ["x"]
    assert [r.request_id for r in sub.rejected] == ["~1", "~2", "y", "z", "5", "w"]
    assert sub.count == len(items)


def test_a_batch_with_nothing_valid_is_refused_with_every_rejection() -> None:
    with pytest.raises(NothingValidError) as caught:
        parse_batch_submission(json.dumps({"texts": ["", " "]}), S, SERVED)
    assert [r.index for r in caught.value.rejected] == [0, 1]


def test_page_requests() -> None:
    assert parse_page_request(None) == PageRequest(100, None)
    token = encode_page_token("r-17")
    assert parse_page_request({"limit": "5", "next": token}) == PageRequest(5, "r-17")
    assert decode_page_token(encode_page_token("~12")) == "~12"
    for bad in (
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "x"},
        {"limit": "٣"},
        {"next": "%%"},
        {"next": encode_page_token("a b")},
        {"page": "2"},
    ):
        with pytest.raises(InvalidRequestError):
            parse_page_request(bad)


def test_batch_submission_refuses_unknown_models_and_empty() -> None:
    with pytest.raises(UnknownModelError):
        parse_batch_submission('{"texts": ["a"], "models": ["bert"]}', S, SERVED)
    with pytest.raises(InvalidRequestError, match="omit it"):
        parse_batch_submission('{"texts": ["a"], "models": []}', S, SERVED)


def test_message_roundtrip() -> None:
    q = QueuedRequest("b", "r", "héllo", ["rf"])
    assert parse_message(q.to_message(), S, SERVED) == q
    cut = QueuedRequest("b", "r", "héllo", ["rf"], truncated=True)
    assert parse_message(cut.to_message(), S, SERVED) == cut


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
    "extra",
    [
        {"text": ""},
        {"text": 4},
        {"text": "a", "models": ["bert"]},
        {"text": "a", "extra": 1},
        {"text": "a", "truncated": "yes"},
        {"text": "\u200b"},
    ],
)
def test_invalid_but_parseable_messages_get_an_error_result(extra: dict[str, Any]) -> None:
    parsed = parse_message(json.dumps({"batch_id": "b", "request_id": "r", **extra}), S, SERVED)
    assert isinstance(parsed, MessageError) and parsed.request_id == "r"


# -- which queue a submission goes to ------------------------------------------------------------------
def test_bulk_must_be_a_boolean() -> None:
    from topicserve.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match='"bulk" must be true or false'):
        parse_batch_submission(json.dumps({"texts": ["a b c"], "bulk": "yes"}), Settings(), ["logreg"])
    assert (
        parse_batch_submission(json.dumps({"texts": ["a"], "bulk": True}), Settings(), ["logreg"]).bulk
        is True
    )
    assert parse_batch_submission(json.dumps({"texts": ["a"]}), Settings(), ["logreg"]).bulk is None


@pytest.mark.parametrize(
    ("bulk_url", "accepted", "asked", "expected"),
    [
        ("", 1000, None, "requests"),  # no bulk queue deployed: always the batcher
        ("", 5, True, "requests"),  # asked, but there is none: still served, by the batcher
        ("B", 499, None, "requests"),  # under the threshold
        ("B", 500, None, "bulk"),  # at the threshold
        ("B", 1, True, "bulk"),  # asked for
        ("B", 1000, False, "requests"),  # asked not to
    ],
)
def test_choose_queue(bulk_url: str, accepted: int, asked: bool | None, expected: str) -> None:
    from topicserve.queue import choose_queue

    settings = Settings(requests_queue_url="R", bulk_queue_url=bulk_url, bulk_threshold_texts=500)
    name, url = choose_queue(accepted, asked, settings)
    assert name == expected and url == ("B" if expected == "bulk" else "R")


def test_chunks_pack_in_order_within_count_and_bytes() -> None:
    from topicserve.requests import QueuedRequest, pack_chunks

    reqs = [QueuedRequest("b", str(i), "word " * (i % 7 + 1), ["rf"]) for i in range(37)]
    chunks = pack_chunks(reqs, max_texts=10, max_bytes=256 * 1024)
    assert [c.chunk for c in chunks] == [0, 1, 2, 3] and [len(c.requests) for c in chunks] == [10, 10, 10, 7]
    assert [q for c in chunks for q in c.requests] == reqs
    small = pack_chunks(reqs, max_texts=10, max_bytes=300)
    assert all(len(c.to_message().encode()) <= 300 for c in small) and len(small) > 4
    assert [q for c in small for q in c.requests] == reqs


def test_chunk_messages_parse_into_their_requests() -> None:
    from topicserve.errors import MalformedMessageError
    from topicserve.requests import MessageError, ParsedChunk, QueuedChunk, QueuedRequest, parse_message

    chunk = QueuedChunk(
        "b", 4, [QueuedRequest("b", "a", "hockey", ["rf"]), QueuedRequest("b", "c", " ", ["rf"])]
    )
    parsed = parse_message(chunk.to_message(), S, SERVED)
    assert isinstance(parsed, ParsedChunk) and parsed.chunk == 4 and parsed.batch_id == "b"
    assert isinstance(parsed.items[0], QueuedRequest) and parsed.items[0].text == "hockey"
    assert isinstance(parsed.items[1], MessageError)  # an empty text: an error result of its own
    for bad in (
        {"batch_id": "b", "chunk": -1, "requests": [{"request_id": "a", "text": "x"}]},
        {"batch_id": "b", "chunk": 1, "requests": []},
        {"batch_id": "b", "chunk": True, "requests": [{"request_id": "a", "text": "x"}]},
        {"batch_id": "b", "chunk": 1, "requests": [{"text": "x"}]},
        {"batch_id": "b", "chunk": 1, "requests": [{"request_id": "a", "text": "x"}] * 2},
        {"batch_id": "b", "chunk": 1, "requests": [{"request_id": "a", "text": "x"}], "extra": 1},
        {"batch_id": "b!", "chunk": 1, "requests": [{"request_id": "a", "text": "x"}]},
    ):
        with pytest.raises(MalformedMessageError):
            parse_message(json.dumps(bad), S, SERVED)
    # with a request id it is one request: an unknown key is that request's error, not a broken chunk
    single = parse_message(
        json.dumps({"batch_id": "b", "request_id": "a", "text": "x", "chunk": 1}), S, SERVED
    )
    assert isinstance(single, MessageError)


def test_page_tokens_may_point_inside_a_chunk() -> None:
    assert decode_page_token(encode_page_token("c#000012|7")) == "c#000012|7"
    with pytest.raises(InvalidRequestError):
        decode_page_token(encode_page_token("c#12|x"))
