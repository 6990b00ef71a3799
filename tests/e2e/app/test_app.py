"""The application end to end in the local cloud: API Gateway over real HTTP, SQS, DynamoDB, S3, the
registry, and every function run by the real awslambdaric under the local executor."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalCloud
from tests.e2e.localcloud.conftest import Invocation
from topicserve.catalogue import MODEL_NAMES
from topicserve.requests import QueuedRequest, new_batch_id
from topicserve_ops.client import Client
from topicserve_ops.lambda_config import renew_environments

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]
MODELS = MODEL_NAMES
TEXTS = [
    "The space shuttle launch was delayed by a faulty sensor on the booster.",
    "Our goalie stopped forty shots and the team won the playoff game in overtime.",
    "Which graphics card driver works with X11 on Linux?",
    "Is there any evidence that god exists, or is faith all we have?",
    "For sale: a used motorcycle helmet, barely worn, best offer.",
]


@pytest.fixture(scope="module")
def client(app_stack: dict[str, Any]) -> Client:
    return Client(app_stack, timeout=120)


def invoke(lam: Any, name: str, payload: dict[str, Any]) -> Invocation:
    return Invocation(lam.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), LogType="Tail"))


def api_event(path: str, body: Any) -> dict[str, Any]:
    event = json.loads((REPO / "tests" / "events" / "apigw-predict.json").read_text())
    event.update(path=path, resource=path, body=json.dumps(body), isBase64Encoded=False, pathParameters=None)
    return event


def offline_labels(texts: list[str]) -> dict[str, list[str]]:
    """What the library says for the same texts, with the artifacts make models built."""
    from topicserve.encoder import Encoder
    from topicserve.heads import Head
    from topicserve.settings import Settings
    from topicserve.text import normalise

    manifest = json.loads((REPO / "build" / "models" / "manifest.json").read_text())
    int8 = manifest["encoder"]["int8"]
    encoder = Encoder(REPO / int8["path"], REPO / "build" / "models" / "encoder" / "tokenizer.json")
    # at the served sub-batch (one text per call: INT8 embeddings depend on batch mates otherwise)
    embeddings = encoder.encode([normalise(t) for t in texts], Settings().encode_batch_size)
    labels = manifest["labels"]
    out = {}
    for model in MODELS:
        head = Head(REPO / manifest["heads"][model]["path"], name=model, labels=labels)
        out[model] = [labels[i] for i in head.predict_proba(embeddings).argmax(axis=1)]
    return out


def test_every_route_needs_the_key(client: Client) -> None:
    routes = [
        ("GET", "/v1/health", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/batches", {"texts": ["x"]}),
        ("GET", "/v1/batches/nope", None),
        *[("POST", f"/v1/predict/{m}", {"text": "x"}) for m in MODELS],
    ]
    for method, path, body in routes:
        status, answer = client.call(method, path, body, api_key="")
        assert status == 403, (method, path, status, answer)
        status, answer = client.call(method, path, body, api_key="wrong-key")
        assert status == 403, (method, path, status, answer)


def test_each_route_works_with_the_key(client: Client) -> None:
    status, health = client.call("GET", "/v1/health")
    assert status == 200 and health["status"] == "ok"
    status, models = client.call("GET", "/v1/models")
    assert status == 200 and models["models"]["rf"]["production"]["stage"] == "production"
    status, missing = client.call("GET", "/v1/batches/nope")
    assert status == 404 and "no batch" in missing["error"]["message"]


def test_predict_functions_agree_with_the_library(client: Client) -> None:
    expected = offline_labels(TEXTS)
    for model in MODELS:
        status, body = client.predict(model, TEXTS)
        assert status == 200, body
        assert body["model"] == model
        assert [p["label"] for p in body["predictions"]] == expected[model], model
        assert all(len(p["top"]) == 3 for p in body["predictions"])


BAD = [
    ("POST", "/v1/predict/rf", "{not json", "not valid JSON"),
    ("POST", "/v1/predict/rf", {"text": 42}, "must be a string"),
    ("POST", "/v1/predict/rf", {"texts": []}, "empty list"),
    ("POST", "/v1/predict/bert", {"text": "x"}, "unknown model"),
    ("POST", "/v1/predict/mlp", {"text": "\u200b\u0000"}, "empty or whitespace"),
    ("POST", "/v1/batches", {"texts": ["a"], "models": ["bert"]}, "unknown model"),
    ("DELETE", "/v1/health", None, "no route"),
    ("GET", "/v1/nothing/here", None, "no route"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), BAD)
def test_bad_input_gets_a_clear_4xx(client: Client, method: str, path: str, body: Any, message: str) -> None:
    if isinstance(body, str):  # send the raw (invalid) text, not JSON-encoded
        import urllib.request

        request = urllib.request.Request(client.stack["api_url"] + path, data=body.encode(), method=method)
        request.add_header("x-api-key", client.stack["api_key"])
        try:
            urllib.request.urlopen(request, timeout=60)
            status, answer = 200, {}
        except urllib.error.HTTPError as error:
            status, answer = error.code, json.loads(error.read())
    else:
        status, answer = client.call(method, path, body)
    assert 400 <= status < 500, (status, answer)
    assert message in answer["error"]["message"]


def submit(client: Client, texts: list[str]) -> str:
    batch_id = new_batch_id()
    client.submit([QueuedRequest(batch_id, str(i), t, list(MODELS)) for i, t in enumerate(texts)])
    return batch_id


def batcher_logs(localcloud: LocalCloud, function: str, since_ms: int) -> list[dict[str, Any]]:
    """The batcher's structured 'batch processed' log records since a time (CloudWatch Logs)."""
    logs = localcloud.client("logs")
    group = f"/aws/lambda/{function}"
    records = []
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=since_ms):
        for event in page["events"]:
            line = event["message"].strip()
            if line.startswith("{") and '"batch processed"' in line:
                records.append(json.loads(line))
    return records


def wait_for(client: Client, batch_id: str, count: int, timeout: float = 300) -> dict[str, Any]:
    body = client.wait_results(batch_id, expect=count, timeout=timeout, poll=1.0)
    assert body and body["completed"] == count, body
    return body


def test_sqs_submission_dedups_and_second_pass_hits_the_cache(
    client: Client, app_stack: dict[str, Any], localcloud: LocalCloud
) -> None:
    distinct = [f"{TEXTS[i % len(TEXTS)]} (variant {i})" for i in range(180)]
    texts = distinct + distinct[:40]  # 220 requests, 40 duplicated texts
    since = int(time.time() * 1000) - 1000
    first = wait_for(client, submit(client, texts), len(texts))
    results = {r["request_id"]: r for r in first["results"]}
    assert len(results) == len(texts) and all(r["status"] == "ok" for r in results.values())

    def answers(result: dict[str, Any]) -> dict[str, Any]:
        return {m: (v["label"], v["top"]) for m, v in result["models"].items()}

    assert answers(results["0"]) == answers(results["180"])  # duplicates: same answer (maybe from cache)

    time.sleep(2)  # let the last log lines reach CloudWatch Logs
    logs = batcher_logs(localcloud, app_stack["functions"]["batcher"], since)
    assert sum(r["texts"] for r in logs) == len(texts)
    assert sum(r["encoded"] for r in logs) == len(distinct), logs  # each distinct text encoded once
    assert any(r["batch_size"] > 10 for r in logs)

    second = wait_for(client, submit(client, texts), len(texts))
    flags = [r["models"][m]["cached"] for r in second["results"] for m in MODELS]
    assert all(f["prediction"] for f in flags), "the second submission must be served from the cache"


def test_new_head_version_is_served_and_reuses_embeddings(
    client: Client, app_stack: dict[str, Any], localcloud: LocalCloud
) -> None:
    from topicserve.registry.store import Registry

    text = "A fresh sentence about encryption keys and the clipper chip."
    status, before = client.predict("logreg", [text])
    assert status == 200 and before["predictions"][0]["cached"] == {"prediction": False, "embedding": False}
    # a text seen once is not worth a shared write (admission); seen again in the same environment, its
    # record goes to DynamoDB, where a new environment of the new head version finds the embedding
    status, again = client.predict("logreg", [text])
    assert status == 200 and again["predictions"][0]["cached"]["prediction"] is True

    registry = Registry(
        bucket=app_stack["bucket"],
        table=app_stack["tables"]["registry"],
        s3_client=localcloud.client("s3"),
        dynamodb_client=localcloud.client("dynamodb"),
    )
    current = registry.resolve("logreg")
    artifact = REPO / json.loads((REPO / "build/models/manifest.json").read_text())["heads"]["logreg"]["path"]
    new = registry.register(
        "logreg",
        artifact,
        format="onnx",
        labels=current.labels,
        lineage=current.lineage,
        metrics=current.metrics,
    )
    registry.promote("logreg", new.version)
    renew_environments(localcloud.client("lambda"), [app_stack["functions"]["predict"]["logreg"]])
    try:
        status, after = client.predict("logreg", [text])
        assert status == 200, after
        assert after["model_version"] == str(new.version) != before["model_version"]
        assert after["predictions"][0]["cached"] == {"prediction": False, "embedding": True}
        assert after["encoder_version"] == before["encoder_version"]
    finally:
        registry.rollback("logreg")
        renew_environments(localcloud.client("lambda"), [app_stack["functions"]["predict"]["logreg"]])


def test_warmer_leaves_the_next_request_warm(
    app_stack: dict[str, Any], lam: Any, localcloud: LocalCloud
) -> None:

    name = app_stack["functions"]["predict"]["mlp"]
    renew_environments(lam, [name])  # start from no environment at all
    warm = invoke(lam, app_stack["functions"]["warmer"], {})
    assert warm.function_error is None, warm.payload
    assert warm.payload[name]["warmed"] == 1 and warm.payload[name]["cold_starts"] == 1
    served = invoke(lam, name, api_event("/v1/predict/mlp", {"text": "Warm request about baseball."}))
    assert served.function_error is None and served.payload["statusCode"] == 200, served.payload
    assert served.init_duration_ms is None, served.log
    assert re.search(r"Max Memory Used: \d+ MB", served.log)
