"""Functional tests: the real handlers and the real (built) models, with moto standing in for AWS.

Events start from AWS's canonical shapes (tests/events/, made with `sam local generate-event`; the function
URL event, which it cannot make, after AWS's documented payload), so the handlers see what API Gateway,
function URLs and SQS really send. The models come from build/models (QUICK or full).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib
import json
import os
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.helpers import CACHE_KEYS, IDEMPOTENCY_KEYS, REGISTRY_KEYS, RESULTS_KEYS, create_table
from topicserve.catalogue import MODEL_NAMES, SERVED_ENCODER

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "events"
MANIFEST = REPO / "build" / "models" / "manifest.json"
MODELS = MODEL_NAMES


def load_module(name: str) -> ModuleType:
    """Import a handler module afresh, as a cold start does: its init runs again under the current
    environment (each predict function is the same module with another MODEL_NAMES)."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def api_event(
    method: str, path: str, body: Any = None, *, resource: str | None = None, raw: bool = False
) -> dict:
    event = copy.deepcopy(json.loads((EVENTS / "apigw-predict.json").read_text()))
    event["httpMethod"] = method
    event["path"] = path
    event["resource"] = resource or path
    event["pathParameters"] = None
    event["queryStringParameters"] = None
    event["multiValueQueryStringParameters"] = None
    event["requestContext"]["httpMethod"] = method
    event["requestContext"]["path"] = f"/prod{path}"
    event["requestContext"]["resourcePath"] = resource or path
    if body is None:
        event["body"], event["isBase64Encoded"] = None, False
    else:
        text = body if raw else json.dumps(body)
        event["body"] = base64.b64encode(text.encode()).decode()
        event["isBase64Encoded"] = True
    return event


def url_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bool = False,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict:
    """The function URL event (payload format 2.0) of the same request as :func:`api_event`: a JSON body
    arrives as text (a function URL base64-encodes only bodies it does not take for text: ``base64_body``),
    no body leaves the key out, the query string is comma-joined per key."""
    event = copy.deepcopy(json.loads((EVENTS / "function-url-predict.json").read_text()))
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = urllib.parse.urlencode(query or {})
    if query:
        event["queryStringParameters"] = dict(query)
    del event["body"]
    event["isBase64Encoded"] = False
    if body is not None:
        text = body if raw else json.dumps(body)
        event["headers"]["content-length"] = str(len(text.encode()))
        if base64_body:
            event["body"], event["isBase64Encoded"] = base64.b64encode(text.encode()).decode(), True
        else:
            event["body"] = text
    return event


def sqs_event(bodies: list[str]) -> dict:
    template = json.loads((EVENTS / "sqs-receive.json").read_text())["Records"][0]
    records = []
    for body in bodies:
        record = copy.deepcopy(template)
        record["messageId"] = str(uuid.uuid4())
        record["body"] = body
        records.append(record)
    return {"Records": records}


class Context:
    """The attributes of a Lambda context object that Powertools reads."""

    function_name = "test-function"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture(scope="session")
def manifest() -> dict[str, Any]:
    if not MANIFEST.is_file():
        pytest.fail(f"{MANIFEST} missing: `make test` builds it (QUICK=1 make models)")
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope="session")
def encoder_layer(manifest: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from infra.encoder_layer import build

    return build(MANIFEST, SERVED_ENCODER, tmp_path_factory.mktemp("encoder-layer"))


@contextlib.contextmanager
def moto_stack() -> Iterator[dict[str, Any]]:
    """A moto account with the stack's bucket, tables and queue, and the functions' environment for them
    (restored afterwards); no models."""
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_METRICS_NAMESPACE": "TopicServeTest",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    mock = mock_aws()
    mock.start()
    try:
        ddb = boto3.client("dynamodb")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="artifacts")

        create_table(ddb, "registry", REGISTRY_KEYS)
        create_table(ddb, "cache", CACHE_KEYS)
        create_table(ddb, "results", RESULTS_KEYS)
        create_table(ddb, "idempotency", IDEMPOTENCY_KEYS)
        queue_url = boto3.client("sqs").create_queue(QueueName="requests")["QueueUrl"]
        env = {
            "REGISTRY_BUCKET": "artifacts",
            "REGISTRY_TABLE": "registry",
            "CACHE_TABLE": "cache",
            "RESULTS_TABLE": "results",
            "IDEMPOTENCY_TABLE": "idempotency",  # the API function's only (template.yaml)
            "REQUESTS_QUEUE_URL": queue_url,
        }
        os.environ.update(env)
        yield {"env": env, "ddb": ddb, "sqs": boto3.client("sqs"), "queue_url": queue_url}
    finally:
        mock.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def stack(encoder_layer: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A moto account with the stack's bucket, tables and queue, the models registered and promoted."""
    from topicserve.registry.manifest import load_manifest, register_manifest
    from topicserve.registry.store import Registry

    with moto_stack() as stack:
        registry = Registry(bucket="artifacts", table="registry")
        register_manifest(registry, load_manifest(MANIFEST), root=REPO, log=lambda s: None)
        env = {"ENCODER_DIR": str(encoder_layer), "MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("models"))}
        os.environ.update(env)
        stack["env"].update(env)
        yield {**stack, "registry": registry}


@pytest.fixture(scope="module")
def api_stack() -> Iterator[dict[str, Any]]:
    """The API function alone (it loads no model, so no build/models needed) in its moto account."""
    with moto_stack() as stack:
        os.environ["MODEL_NAMES"] = ",".join(MODELS)
        yield {**stack, "api": load_module("functions.api.app")}


@pytest.fixture(scope="module")
def handlers(stack: dict[str, Any]) -> dict[str, ModuleType]:
    """Each function's module, imported (= cold started) once per test module."""
    loaded: dict[str, ModuleType] = {}
    for model in MODELS:
        os.environ["MODEL_NAMES"] = model
        loaded[model] = load_module("functions.predict.app")
    os.environ["MODEL_NAMES"] = ",".join(MODELS)
    loaded["batcher"] = load_module("functions.batcher.app")
    loaded["api"] = load_module("functions.api.app")
    return loaded


def invoke(module: ModuleType, event: dict) -> dict:
    return module.handler(event, Context())


def body_of(response: dict) -> Any:
    return json.loads(response["body"])
