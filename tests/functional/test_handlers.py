"""The Lambda handlers end to end in-process: real models, moto AWS, canonical events."""

from __future__ import annotations

import json
import os
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.functional.conftest import MODELS, api_event, body_of, invoke, load_module, sqs_event

TEXTS = [
    "The space shuttle launch was delayed by a faulty sensor on the booster.",
    "Our goalie stopped forty shots and the team won the playoff game in overtime.",
    "Which graphics card driver works with X11 on Linux?",
]


def predict(handlers: dict[str, ModuleType], model: str, body: Any, **kw: Any) -> dict:
    return invoke(handlers[model], api_event("POST", f"/v1/predict/{model}", body, **kw))


@pytest.mark.parametrize("model", MODELS)
def test_predict_matches_the_library_offline(handlers: dict[str, ModuleType], model: str) -> None:
    response = predict(handlers, model, {"texts": TEXTS})
    assert response["statusCode"] == 200, response["body"]
    body = body_of(response)
    assert body["model"] == model and body["model_version"] == "1"
    service = handlers[model].runtime.service
    embeddings = service.encoder.encode(TEXTS, service.encode_batch_size)  # as served (batch-invariant)
    expected = service.heads[model].predict_proba(embeddings).argmax(axis=1)
    assert [p["label_id"] for p in body["predictions"]] == [int(i) for i in expected]
    first = body["predictions"][0]
    assert len(first["top"]) == 3 and first["label"] == first["top"][0]["label"]
    assert set(first["cached"]) == {"prediction", "embedding"}


def test_second_call_is_served_from_cache(handlers: dict[str, ModuleType]) -> None:
    text = "A brand new text about orbital mechanics and satellites."
    first = body_of(predict(handlers, "mlp", {"text": text}))["predictions"][0]
    second = body_of(predict(handlers, "mlp", {"text": text}))["predictions"][0]
    assert first["cached"] == {"prediction": False, "embedding": False}
    assert second["cached"] == {"prediction": True, "embedding": True}
    # another head reuses the embedding cached by the first
    third = body_of(predict(handlers, "logreg", {"text": text}))["predictions"][0]
    assert third["cached"] == {"prediction": False, "embedding": True}


BAD_BODIES = [
    ("{not json", True, 400, "not valid JSON"),
    ('["a list"]', True, 400, "JSON object"),
    ({"text": 5}, False, 400, "must be a string"),
    ({"texts": []}, False, 400, "empty list"),
    ({"texts": ["ok", None]}, False, 400, r"texts[1]"),
    ({"text": "   "}, False, 400, "whitespace"),
    ({"text": "\u0301\u0302 \u200b"}, False, 400, "nothing the encoder can read"),
    ("[" * 50_000 + "]" * 50_000, True, 400, "nested too deeply"),
    ({"text": "a", "texts": ["b"]}, False, 400, "exactly one"),
    ({"txt": "a"}, False, 400, "unexpected field"),
    ({"texts": ["a"] * 65}, False, 400, "limit is 64"),
]


@pytest.mark.parametrize(("body", "raw", "status", "message"), BAD_BODIES)
def test_bad_input_is_a_clear_4xx(
    handlers: dict[str, ModuleType], body: Any, raw: bool, status: int, message: str
) -> None:
    response = predict(handlers, "rf", body, raw=raw)
    assert response["statusCode"] == status
    error = body_of(response)["error"]
    assert message in error["message"] and error["type"]


def test_long_documents_are_classified_from_their_beginning(handlers: dict[str, ModuleType]) -> None:
    """Over the encoder's 256 tokens: classified like the first 256 tokens alone, and said so."""
    head = "The shuttle crew tested the orbital docking system before the launch window opened. " * 12
    doc = head + "Unrelated hockey scores follow. " * 20_000  # ~640 kB: more than MAX_TEXT_CHARS
    long = body_of(predict(handlers, "logreg", {"texts": [doc, "a short text about hockey"]}))
    assert [p["truncated"] for p in long["predictions"]] == [True, False]
    service = handlers["logreg"].runtime.service
    ids = service.encoder.tokenize([doc])[0].ids
    assert len(ids) == service.encoder.max_length
    alone = service.heads["logreg"].predict_proba(service.encoder.encode_tokens([ids])).argmax()
    assert long["predictions"][0]["label_id"] == int(alone)


def test_lone_surrogates_and_invisible_characters_do_not_break_a_request(
    handlers: dict[str, ModuleType],
) -> None:
    raw = '{"texts": ["graphics \\ud800card\\u0000 drivers", "\\udfff\\ud800 hockey \\u200b game"]}'
    response = predict(handlers, "mlp", raw, raw=True)
    assert response["statusCode"] == 200, response["body"]
    assert len(body_of(response)["predictions"]) == 2


def test_empty_body_and_unknown_model(handlers: dict[str, ModuleType]) -> None:
    assert predict(handlers, "rf", None)["statusCode"] == 400
    response = invoke(
        handlers["api"], api_event("POST", "/v1/predict/bert", {"text": "x"}, resource="/v1/predict/{model}")
    )
    assert response["statusCode"] == 404
    assert "unknown model 'bert'" in body_of(response)["error"]["message"]
    response = invoke(handlers["api"], api_event("DELETE", "/v1/nothing", None, resource="/{proxy+}"))
    assert response["statusCode"] == 404 and "no route DELETE" in body_of(response)["error"]["message"]


def test_warm_event_touches_no_cache(handlers: dict[str, ModuleType], stack: dict[str, Any]) -> None:
    before = stack["ddb"].scan(TableName="cache", Select="COUNT")["Count"]
    answer = invoke(handlers["hgb"], {"warmer": True, "concurrency": 2, "hold_ms": 1})
    assert answer["warmed"] is True and isinstance(answer["cold_start"], bool)
    assert (
        answer["init_seconds"] > 0 and "encoder (main thread waits)" in answer["init_steps"]
    )  # the benchmark's
    assert stack["ddb"].scan(TableName="cache", Select="COUNT")["Count"] == before


def message(batch: str, request: str, text: Any, models: list[str] | None = None) -> str:
    body: dict[str, Any] = {"batch_id": batch, "request_id": request, "text": text}
    if models is not None:
        body["models"] = models
    return json.dumps(body)


def test_batcher_dedups_reports_malformed_and_answers_invalid(
    handlers: dict[str, ModuleType], stack: dict[str, Any]
) -> None:
    texts = [f"Batch text number {i % 7} about hockey, space and computers." for i in range(30)]
    bodies = [message("b1", str(i), t) for i, t in enumerate(texts)]
    bodies += ["this is not json", json.dumps({"text": "no ids"})]
    bodies += [message("b1", "bad-text", ""), message("b1", "bad-model", "fine text", ["bert"])]
    event = sqs_event(bodies)
    response = invoke(handlers["batcher"], event)
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed == {event["Records"][30]["messageId"], event["Records"][31]["messageId"]}

    view = handlers["api"].results.get_page("b1", limit=1000)
    by_id = {r["request_id"]: r for r in view.results}
    assert len(by_id) == 32
    assert by_id["bad-text"]["status"] == "error" and "whitespace" in by_id["bad-text"]["error"]["message"]
    assert by_id["bad-model"]["error"]["type"] == "UnknownModelError"
    ok = by_id["3"]
    assert ok["status"] == "ok" and set(ok["models"]) == set(MODELS)
    assert by_id["3"]["models"] == by_id["10"]["models"]  # same text (3 % 7 == 10 % 7)


def test_duplicates_are_encoded_once(handlers: dict[str, ModuleType]) -> None:
    from topicserve.batcher import process_records

    module = handlers["batcher"]
    texts = [f"Unique phrase {i % 5} for the dedup check on encoder work." for i in range(40)]
    event = sqs_event([message("b2", str(i), t, ["rf"]) for i, t in enumerate(texts)])
    outcome = process_records(
        event["Records"], module.runtime.service, lambda rows: None, module.runtime.settings
    )
    assert outcome.stats is not None
    assert outcome.stats.unique_texts == 5 and outcome.stats.encoded == 5 and outcome.stats.duplicates == 35


def test_a_test_stacks_batcher_isolates_a_poison_message_per_stage(
    handlers: dict[str, ModuleType], stack: dict[str, Any]
) -> None:
    """The chaos switches as a test stack's batcher has them (TEST_SWITCHES, FAULT_MARKERS): each marked
    message gets its stage's InjectedFault as an error result, the rest are served; a transient marker
    sends the whole batch back. Without the switches nothing is wrapped."""
    from topicserve.faults import FaultyEncoder, FaultyHead

    plain = handlers["batcher"].runtime.service
    assert not isinstance(plain.encoder, FaultyEncoder) and not isinstance(plain.heads["rf"], FaultyHead)
    markers = {
        stage: f"POISON{stage.upper()}" for stage in ("transient", "tokenize", "encode", "head", "shape")
    }
    os.environ.update(TEST_SWITCHES="true", FAULT_MARKERS=",".join(f"{s}={m}" for s, m in markers.items()))
    try:
        batcher = load_module("functions.batcher.app")  # a cold start with the switches on
    finally:
        del os.environ["TEST_SWITCHES"], os.environ["FAULT_MARKERS"]
    service = batcher.runtime.service
    assert isinstance(service.encoder, FaultyEncoder) and isinstance(service.heads["rf"], FaultyHead)

    bodies = [message("chaos", f"ok{i}", f"{TEXTS[i % 3]} (case {i})", ["rf", "mlp"]) for i in range(8)]
    bodies += [
        message("chaos", stage, f"{TEXTS[0]} {m}", ["rf"])
        for stage, m in markers.items()
        if stage != "transient"
    ]
    assert invoke(batcher, sqs_event(bodies))["batchItemFailures"] == []
    results = {r["request_id"]: r for r in handlers["api"].results.get_page("chaos", limit=100).results}
    assert all(results[f"ok{i}"]["status"] == "ok" for i in range(8))
    for stage in ("tokenize", "encode", "head", "shape"):
        assert results[stage]["error"] == {
            "type": "InjectedFault",
            "message": f"injected {stage} fault ({markers[stage]})",
        }

    outage = sqs_event(
        [message("outage", "0", "fine text"), message("outage", "1", f"text {markers['transient']}")]
    )
    failed = invoke(batcher, outage)["batchItemFailures"]
    assert [f["itemIdentifier"] for f in failed] == [r["messageId"] for r in outage["Records"]]


def test_batches_route_enqueues_and_reports_progress(
    handlers: dict[str, ModuleType], stack: dict[str, Any]
) -> None:
    api = handlers["api"]
    response = invoke(api, api_event("POST", "/v1/batches", {"texts": TEXTS, "models": ["logreg"]}))
    assert response["statusCode"] == 202, response["body"]
    batch_id = body_of(response)["batch_id"]
    pending = body_of(
        invoke(api, api_event("GET", f"/v1/batches/{batch_id}", resource="/v1/batches/{batch_id}"))
    )
    assert pending["status"] == "pending" and pending["expected"] == 3 and pending["completed"] == 0

    bodies = drain(stack)
    assert len(bodies) == 1 and len(json.loads(bodies[0])["requests"]) == 3  # one chunk of three
    invoke(handlers["batcher"], sqs_event(bodies))
    done = body_of(
        invoke(api, api_event("GET", f"/v1/batches/{batch_id}", resource="/v1/batches/{batch_id}"))
    )
    assert done["status"] == "complete" and [r["request_id"] for r in done["results"]] == ["0", "1", "2"]
    assert set(done["results"][0]["models"]) == {"logreg"} and done["results"][0]["truncated"] is False
    assert done["next"] is None


def drain(stack: dict[str, Any]) -> list[str]:
    """Every message the API queued (moto's queue hands them back at once, or not at all)."""
    sqs, bodies = stack["sqs"], []
    while got := sqs.receive_message(QueueUrl=stack["queue_url"], MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in got]
        for m in got:
            sqs.delete_message(QueueUrl=stack["queue_url"], ReceiptHandle=m["ReceiptHandle"])
    return sorted(bodies, key=lambda b: json.loads(b).get("chunk", 0))


def test_bulk_submissions_keep_their_valid_items_and_pages_cover_them(
    handlers: dict[str, ModuleType], stack: dict[str, Any]
) -> None:
    api = handlers["api"]
    texts: list[Any] = [f"text number {i} about space" for i in range(23)]
    texts[4], texts[9], texts[15] = "", 42, "   "
    response = invoke(api, api_event("POST", "/v1/batches", {"texts": texts, "models": ["rf"]}))
    assert response["statusCode"] == 202, response["body"]
    body = body_of(response)
    assert body["count"] == 23 and body["queued"] == 20
    assert [(r["index"], r["id"], r["error"]["type"]) for r in body["rejected"]] == [
        (4, "4", "EmptyTextError"),
        (9, "9", "TextTypeError"),
        (15, "15", "EmptyTextError"),
    ]
    bodies = drain(stack)
    assert [len(json.loads(b)["requests"]) for b in bodies] == [15, 5]  # chunks of Settings.chunk_texts
    invoke(handlers["batcher"], sqs_event(bodies))

    seen: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": "7"}
    for _ in range(10):
        event = api_event("GET", f"/v1/batches/{body['batch_id']}", resource="/v1/batches/{batch_id}")
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        page = body_of(invoke(api, event))
        assert len(page["results"]) <= 7 and page["status"] == "complete"
        seen += page["results"]
        if page["next"] is None:
            break
        query = {"limit": "7", "next": page["next"]}
    assert sorted(r["request_id"] for r in seen) == sorted(str(i) for i in range(23))
    errors = {r["request_id"] for r in seen if r["status"] == "error"}
    assert errors == {"4", "9", "15"}


def test_models_and_health(handlers: dict[str, ModuleType]) -> None:
    api = handlers["api"]
    health = invoke(api, api_event("GET", "/v1/health"))
    assert health["statusCode"] == 200 and body_of(health)["status"] == "ok"
    models = body_of(invoke(api, api_event("GET", "/v1/models")))["models"]
    assert set(models) == {*MODELS, "encoder-int8"}
    rf = models["rf"]["production"]
    assert rf["version"] == 1 and rf["lineage"]["encoder"]["variant"] == "int8"
    assert 0 < rf["metrics"]["accuracy"] <= 1


def test_bad_batch_submissions(handlers: dict[str, ModuleType]) -> None:
    api = handlers["api"]
    for body, message_part in [
        ({"texts": []}, "empty list"),
        ({"texts": ["a"], "models": ["bert"]}, "unknown model"),
        ({"texts": ["", " "]}, "no valid item"),
        ({"requests": [{"id": "bad id!", "text": "a"}]}, "must match"),
        ({"requests": "nope"}, "must be a list"),
    ]:
        response = invoke(api, api_event("POST", "/v1/batches", body))
        assert 400 <= response["statusCode"] < 500, body
        assert message_part in body_of(response)["error"]["message"]


def test_a_text_seen_twice_gets_one_compact_record(
    stack: dict[str, Any], handlers: dict[str, ModuleType]
) -> None:
    """Self-contained: it serves its own text and reads that text's own cache record. The first sighting
    writes nothing shared; the second writes one item under 1 KiB with the int8 embedding and the answer."""
    from topicserve.cache.keys import tokens_hash
    from topicserve.cache.record import TextRecord
    from topicserve.text import normalise

    text = "A text only this test sends, about compact cache records in DynamoDB."
    service = handlers["hgb"].runtime.service
    key = service.cache.key(tokens_hash(service.encoder.tokenize([normalise(text)])[0].ids))
    assert predict(handlers, "hgb", {"text": text})["statusCode"] == 200
    assert "Item" not in stack["ddb"].get_item(TableName="cache", Key={"k": {"S": key}})
    assert predict(handlers, "hgb", {"text": text.upper()})["statusCode"] == 200  # uncased: the same ids
    item = stack["ddb"].get_item(TableName="cache", Key={"k": {"S": key}})["Item"]
    size = sum(len(name) for name in item) + len(key) + len(item["v"]["B"]) + len(item["ttl"]["N"])
    assert size <= 1024, size  # one write unit
    record = TextRecord.decode(item["v"]["B"], 384)
    fresh = service.encoder.encode([normalise(text)])[0]
    assert record.embedding is not None and float(np.dot(record.embedding, fresh)) > 0.999
    head = handlers["hgb"].runtime.service.heads["hgb"]
    assert set(record.answers) == {f"hgb@{head.version}"}
