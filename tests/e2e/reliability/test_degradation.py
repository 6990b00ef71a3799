"""Degradation: a backend goes away and the service does what it promises.

* DynamoDB caches unavailable (both cache tables deleted): predictions and SQS results are still served,
  without the cache, with a warning log and the CacheErrors metric; the tables come back afterwards.
  (Throttling cannot be provoked in DynamoDB Local: tests/unit/test_reliability.py covers it.)
* The registry unreachable at a cold start (its table's and bucket's endpoints pointed at a closed port): the
  deploy's production head, shipped with the function, serves, and a log line says so.
* S3 unavailable at a cold start without that seed: the cold start fails with an error that names the
  artifact it could not fetch; when S3 returns, the next cold start serves.
* A registry version whose artifact fails its sha256 check is promoted: it is refused, and the previous
  production version keeps serving.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.app.test_app import api_event, invoke
from tests.e2e.conftest import LocalCloud
from tests.e2e.reliability.conftest import json_logs, log_events
from topicserve.requests import QueuedRequest
from topicserve_ops.client import Client
from topicserve_ops.lambda_config import environment

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]
CLOSED_PORT = "http://127.0.0.1:9"  # discard port: nothing listens there on these machines


def fresh_text(topic: str) -> str:
    """A text no cache has seen, so every request below really needs the cache's back store."""
    return f"{topic} ({uuid.uuid4().hex[:8]})"


def test_predictions_are_served_without_the_dynamodb_caches(
    rel_stack: dict[str, Any], rel_client: Client, localcloud: LocalCloud
) -> None:
    dynamodb = localcloud.client("dynamodb")
    tables = [rel_stack["tables"]["cache"]]
    described = {t: dynamodb.describe_table(TableName=t)["Table"] for t in tables}
    since_ms = int(time.time() * 1000) - 1000
    for table in tables:
        dynamodb.delete_table(TableName=table)
    try:
        for table in tables:
            dynamodb.get_waiter("table_not_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
        status, body = rel_client.predict("rf", [fresh_text("The rocket reached orbit")])
        assert status == 200, body
        assert body["predictions"][0]["cached"] == {"prediction": False, "embedding": False}

        batch_id = f"nocache-{uuid.uuid4().hex[:8]}"
        requests = [QueuedRequest(batch_id, str(i), fresh_text("Hockey playoffs"), ["mlp"]) for i in range(3)]
        rel_client.submit(requests)
        view = rel_client.wait_results(batch_id, expect=3, timeout=180, poll=1.0)
        assert view and [r["status"] for r in view["results"]] == ["ok"] * 3, view
    finally:
        for table, spec in described.items():
            dynamodb.create_table(
                TableName=table,
                AttributeDefinitions=spec["AttributeDefinitions"],
                KeySchema=spec["KeySchema"],
                BillingMode="PAY_PER_REQUEST",
            )
        for table in tables:
            dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
            dynamodb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"AttributeName": "ttl", "Enabled": True}
            )

    time.sleep(2)
    for function in (rel_stack["functions"]["predict"]["rf"], rel_stack["functions"]["batcher"]):
        lines = log_events(localcloud, function, since_ms)
        warnings = [line for line in lines if "serving without it" in line]
        assert warnings, f"{function}: no warning that the cache was skipped"
        cache_errors = [sum(r["CacheErrors"]) for r in json_logs(lines) if "CacheErrors" in r]
        assert any(n > 0 for n in cache_errors), f"{function}: the CacheErrors metric stayed 0"

    status, body = rel_client.predict("rf", [fresh_text("The rocket reached orbit")])
    assert status == 200 and body["predictions"][0]["cached"]["prediction"] is False


def test_a_cold_start_serves_the_deploys_head_with_the_registry_unreachable(
    rel_stack: dict[str, Any],
    lam: Any,
    localcloud: LocalCloud,
    function_env: Callable[[str, dict[str, str | None]], None],
) -> None:
    name = rel_stack["functions"]["predict"]["hgb"]
    seed = json.loads(environment(lam, name)["ROUTING_SEED"])  # what the deploy shipped with the function
    event = api_event("/v1/predict/hgb", {"text": "Which monitor cable do I need?"})
    since_ms = int(time.time() * 1000) - 1000
    # the registry (its table and its bucket) out of reach: a new environment, a cold start
    function_env(name, {"AWS_ENDPOINT_URL_S3": CLOSED_PORT, "AWS_ENDPOINT_URL_DYNAMODB": CLOSED_PORT})
    served = invoke(lam, name, event)
    assert served.function_error is None and served.payload["statusCode"] == 200, served.payload
    assert served.init_duration_ms is not None
    assert json.loads(served.payload["body"])["model_version"] == str(seed["hgb"][0])
    again = invoke(lam, name, event)  # the same environment, after its routing read has failed
    assert again.payload["statusCode"] == 200 and again.init_duration_ms is None, again.payload
    assert json.loads(again.payload["body"])["model_version"] == str(seed["hgb"][0])
    time.sleep(2)
    said = [
        r
        for r in json_logs(log_events(localcloud, name, since_ms))
        if "registry unreachable" in r.get("message", "")
    ]
    assert said and "seed" in said[0]["message"], (
        "no log line says the deploy's head serves without the registry"
    )


def test_s3_outage_at_an_unseeded_cold_start_fails_clearly_and_recovers(
    rel_stack: dict[str, Any],
    lam: Any,
    function_env: Callable[[str, dict[str, str | None]], None],
) -> None:
    name = rel_stack["functions"]["predict"]["hgb"]
    event = api_event("/v1/predict/hgb", {"text": "Which monitor cable do I need?"})
    # no seed (a head changed since the deploy, or a deploy without one): the head must come from S3
    function_env(name, {"AWS_ENDPOINT_URL_S3": CLOSED_PORT, "ROUTING_SEED": None})
    started = time.monotonic()
    failed = invoke(lam, name, event)
    failed_s = time.monotonic() - started
    assert failed.function_error is not None, failed.payload
    message = json.dumps(failed.payload)
    assert "ArtifactError" in message and "cannot download s3://" in message, message
    assert failed_s < 30, f"the cold start took {failed_s:.0f} s to fail: timeouts too long"

    function_env(name, {"AWS_ENDPOINT_URL_S3": None})  # S3 is back: the next cold start serves
    served = invoke(lam, name, event)
    assert served.function_error is None and served.payload["statusCode"] == 200, served.payload
    assert served.init_duration_ms is not None  # a fresh environment did the recovery


def test_a_tampered_artifact_is_refused_and_the_previous_version_serves(
    rel_stack: dict[str, Any], rel_client: Client, localcloud: LocalCloud, lam: Any
) -> None:
    from topicserve.registry.store import Registry
    from topicserve_ops.lambda_config import renew_environments

    function = rel_stack["functions"]["predict"]["logreg"]
    s3 = localcloud.client("s3")
    registry = Registry(
        bucket=rel_stack["bucket"],
        table=rel_stack["tables"]["registry"],
        s3_client=s3,
        dynamodb_client=localcloud.client("dynamodb"),
    )
    current = registry.resolve("logreg")
    manifest = json.loads((REPO / "build/models/manifest.json").read_text())
    new = registry.register(
        "logreg",
        # other bytes than the deploy shipped as its seed: a version with the seed's sha256 would be served
        # from the verified seed file, never from the tampered object (the mlp head has the same interface)
        REPO / manifest["heads"]["mlp"]["path"],
        format="onnx",
        labels=current.labels,
        lineage=current.lineage,
        description="tampered after upload (reliability test)",
    )
    bucket, key = new.artifact_uri.removeprefix("s3://").split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=b"not the model that was registered")
    since_ms = int(time.time() * 1000) - 1000
    registry.promote("logreg", new.version)
    try:
        renew_environments(lam, [function])
        status, body = rel_client.predict("logreg", [fresh_text("Encryption and the clipper chip")])
        assert status == 200, body
        assert body["model_version"] == str(current.version) != str(new.version)
        time.sleep(2)
        records = json_logs(log_events(localcloud, function, since_ms))
        refused = [r for r in records if r.get("message", "").startswith("refused a head artifact")]
        assert refused and refused[0]["level"] == "ERROR", records[-5:]
        assert (refused[0]["model"], refused[0]["version"]) == ("logreg", new.version), refused
        assert "sha256" in refused[0]["error"], refused
    finally:
        registry.rollback("logreg")
        renew_environments(lam, [function])
