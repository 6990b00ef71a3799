"""tests/e2e/app/test_gate_on_labels.py, the same module, run against the real handlers in process on moto.

The local cloud runs the acceptance; this runs the very same phases (every 20NG test text served and
labelled, live accuracy per window against the offline answers, a worse canary rolled back and an equal
one promoted through the batch route) where LocalStack is not at hand: the API, predict, batcher, gate
and monitor handlers are imported as a cold start imports them, each under its own environment (the e2e
stack's parameters: every text in the ledger, records and sums written at every invocation, 30-second
windows), behind a Lambda API that changes a function's environment as the real one does (the next
invocation is a new environment) and an API client that calls the handlers with API Gateway's events.
What it cannot show is the deployed packaging and the local cloud's own services. Slow: ~6 minutes on 2
cores, plus ~5 the first time for the offline embeddings (cached in build/cache/embeddings).
"""

from __future__ import annotations

import io
import json
import os
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from tests.e2e.app import test_gate_on_labels as e2e
from tests.functional.conftest import (
    MANIFEST,
    MODELS,
    REPO,
    Context,
    api_event,
    load_module,
    moto_stack,
    sqs_event,
)
from tests.helpers import create_table
from topicserve_ops.client import Client

pytestmark = [pytest.mark.slow, pytest.mark.models]

#: the e2e stack's parameters (tests/e2e/app/conftest.py) as the functions' environment
STACK_ENV = {
    "ROUTING_TTL_SECONDS": "2",
    "ROLLOUT_FLUSH_SECONDS": "0",
    "MONITOR_WINDOW_SECONDS": "30",
    "MONITOR_EMBEDDING_SAMPLE": "1.0",
    "MONITOR_FLUSH_SECONDS": "0",
    "FEEDBACK_LEDGER_SAMPLE": "1.0",
    "GATE_MIN_EFFECT": "0.25",
    "GATE_MAX_ERROR_RATE": "0.05",
    "GATE_ALPHA": "0.05",
    "MONITOR_TABLE": "monitor",
    "ROLLOUT_TABLE": "rollout",
    "BULK_THRESHOLD_TEXTS": "1001",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
FUNCTIONS = {
    "predict-logreg": "functions.predict.app",
    "api": "functions.api.app",
    "gate": "functions.gate.app",
    "monitor": "functions.monitor.app",
    "batcher": "functions.batcher.app",
}


class _Waiter:
    def wait(self, **_: Any) -> None:
        """A configuration change here is done when it returns."""


class Functions:
    """The Lambda API over the handlers: per-function environments; changing one retires the function's
    environment (the next invocation imports its module afresh, a cold start)."""

    def __init__(self, base: dict[str, str]) -> None:
        self.env = {
            name: {
                **base,
                **STACK_ENV,
                "MODEL_NAMES": "logreg" if name == "predict-logreg" else ",".join(MODELS),
            }
            for name in FUNCTIONS
        }
        self.modules: dict[str, Any] = {}

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        return {"Environment": {"Variables": dict(self.env[FunctionName])}}

    def update_function_configuration(self, FunctionName: str, Environment: dict[str, Any]) -> None:
        self.env[FunctionName] = dict(Environment["Variables"])
        self.modules.pop(FunctionName, None)

    def get_waiter(self, name: str) -> _Waiter:
        return _Waiter()

    def handle(self, name: str, event: dict[str, Any]) -> Any:
        saved = dict(os.environ)
        os.environ.update(self.env[name])
        try:
            if name not in self.modules:
                self.modules[name] = load_module(FUNCTIONS[name])
            return self.modules[name].handler(event, Context())
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def invoke(self, FunctionName: str, Payload: bytes = b"{}") -> dict[str, Any]:
        try:
            out = self.handle(FunctionName, json.loads(Payload))
        except Exception as exc:  # what Lambda reports as a function error
            body = {"errorMessage": repr(exc), "errorType": type(exc).__name__}
            return {"Payload": io.BytesIO(json.dumps(body).encode()), "FunctionError": "Unhandled"}
        return {"Payload": io.BytesIO(json.dumps(out).encode())}


class Cloud:
    def __init__(self, functions: Functions) -> None:
        self.functions = functions

    def client(self, service: str) -> Any:
        return self.functions if service == "lambda" else boto3.client(service)  # type: ignore[call-overload]


class InProcessClient(Client):
    """The API client over the handlers: API Gateway's event per call; a batch submission's queue is
    drained into the batcher before the call returns (the event source mapping's work)."""

    def __init__(self, stack: dict[str, Any], functions: Functions) -> None:
        super().__init__(stack, timeout=120)
        self.functions = functions

    def call(
        self, method: str, path: str, body: Any = None, *, api_key: str | None = None
    ) -> tuple[int, Any]:
        route, _, query = path.partition("?")
        if route.startswith("/v1/predict/"):
            name, resource = "predict-logreg", "/v1/predict/{model}"
        elif route.startswith("/v1/batches/"):
            name, resource = "api", "/v1/batches/{batch_id}"
        else:
            name, resource = "api", None
        event = api_event(method, route, body, resource=resource)
        if query:
            params = dict(urllib.parse.parse_qsl(query))
            event["queryStringParameters"] = params
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in params.items()}
        if resource == "/v1/batches/{batch_id}":
            event["pathParameters"] = {"batch_id": route.rsplit("/", 1)[1]}
        response = self.functions.handle(name, event)
        if (method, route) == ("POST", "/v1/batches"):
            self._drain()
        return response["statusCode"], json.loads(response["body"])

    def _drain(self) -> None:
        sqs, url = boto3.client("sqs"), self.stack["queue_url"]
        while True:
            messages = []
            while len(messages) < 100:
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
                if not got:
                    break
                for m in got:
                    messages.append(m["Body"])
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            if not messages:
                return
            out = self.functions.handle("batcher", sqs_event(messages))
            assert not out.get("batchItemFailures"), out

    def aws(self, service: str) -> Any:  # type: ignore[override]
        return self.functions if service == "lambda" else boto3.client(service)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A moto account with the stack's bucket, tables and queue, the build's models registered (as the
    deploy registers them) and the handlers behind a Lambda API."""
    from infra.encoder_layer import build
    from topicserve.catalogue import SERVED_ENCODER
    from topicserve.registry.manifest import load_manifest, register_manifest
    from topicserve.registry.store import Registry

    layer = build(MANIFEST, SERVED_ENCODER, tmp_path_factory.mktemp("encoder-layer"))
    with moto_stack() as stack:
        create_table(stack["ddb"], "monitor", [("pk", "S", "HASH"), ("sk", "S", "RANGE")])
        create_table(stack["ddb"], "rollout", [("model", "S", "HASH"), ("record", "S", "RANGE")])
        register_manifest(
            Registry(bucket="artifacts", table="registry"),
            load_manifest(MANIFEST),
            root=REPO,
            log=lambda s: None,
        )
        env = {
            **stack["env"],
            "ENCODER_DIR": str(layer),
            "MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("m")),
        }
        yield {**stack, "functions": Functions(env)}


@pytest.fixture(scope="module")
def localcloud(cloud: dict[str, Any]) -> Cloud:
    return Cloud(cloud["functions"])


@pytest.fixture(scope="module")
def app_stack(cloud: dict[str, Any]) -> dict[str, Any]:
    return {
        "bucket": "artifacts",
        "tables": {"registry": "registry", "rollout": "rollout", "monitor": "monitor", "results": "results"},
        "functions": {name: name for name in FUNCTIONS} | {"predict": {"logreg": "predict-logreg"}},
        "queue_url": cloud["queue_url"],
        "monitor_window_seconds": 30,
    }


@pytest.fixture(scope="module")
def client_factory(cloud: dict[str, Any]) -> Callable[[dict[str, Any]], Client]:
    return lambda app_stack: InProcessClient(app_stack, cloud["functions"])


corpus = e2e.corpus
stack = e2e.stack
production_answers = e2e.production_answers
test_labels_fed_back_late_give_live_accuracy_equal_to_the_offline_accuracy = (
    e2e.test_labels_fed_back_late_give_live_accuracy_equal_to_the_offline_accuracy
)
test_the_gate_rolls_back_a_worse_canary_and_promotes_an_equal_one_on_labels = (
    e2e.test_the_gate_rolls_back_a_worse_canary_and_promotes_an_equal_one_on_labels
)
