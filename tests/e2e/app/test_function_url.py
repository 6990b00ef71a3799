"""The function URL front door (FunctionUrls=iam, set by app_stack) in the local cloud: SigV4-signed HTTP
to the functions' own URLs, answered as the REST API answers the same request.

LocalStack serves function URLs at ``http://<url-id>.lambda-url.<region>.<its host:port>/``, routed by the
Host header on its one port (the client connects to the endpoint and sends that host, which is also the
one it signs). It does not check the signature (an unsigned request is answered too; AWS refuses it with
a 403), so what is proven here is the deployment (one AWS_IAM URL per served function, no resource policy
opening it), the routing and the handlers' answers to the URL's payload 2.0 events; the signing itself
is checked against SigV4 in tests/unit/test_client.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import LocalCloud
from topicserve.catalogue import MODEL_NAMES
from topicserve_ops.client import Client

pytestmark = pytest.mark.e2e
TEXTS = [
    "The space shuttle launch was delayed by a faulty sensor on the booster.",
    "Our goalie stopped forty shots and the team won the playoff game in overtime.",
]


@pytest.fixture(scope="module")
def url_client(app_stack: dict[str, Any]) -> Client:
    return Client(app_stack, timeout=120, function_url=True)


@pytest.fixture(scope="module")
def rest_client(app_stack: dict[str, Any]) -> Client:
    return Client(app_stack, timeout=120)


def test_each_served_function_has_an_iam_url_and_no_policy_opening_it(
    app_stack: dict[str, Any], localcloud: LocalCloud
) -> None:
    urls = app_stack["function_urls"]
    assert set(urls["predict"]) == set(MODEL_NAMES) and urls["api"]
    lam = localcloud.client("lambda")
    functions = {**app_stack["functions"]["predict"], "api": app_stack["functions"]["api"]}
    for name, function in functions.items():
        config = lam.get_function_url_config(FunctionName=function)
        assert config["AuthType"] == "AWS_IAM", name
        expected = urls["predict"][name] if name != "api" else urls["api"]
        assert config["FunctionUrl"] == expected, name
        try:
            statements = json.loads(lam.get_policy(FunctionName=function)["Policy"])["Statement"]
        except lam.exceptions.ResourceNotFoundException:
            statements = []
        assert not [s for s in statements if "InvokeFunctionUrl" in json.dumps(s)], (name, statements)


@pytest.mark.parametrize("model", ["logreg", "ensemble"])
def test_signed_predict_answers_as_the_rest_api(url_client: Client, rest_client: Client, model: str) -> None:
    status, body = url_client.predict(model, TEXTS)
    assert status == 200, body
    rest_status, rest_body = rest_client.predict(model, TEXTS)
    assert rest_status == 200, rest_body
    assert body["model"] == model and body["model_version"] == rest_body["model_version"]
    strip = [{k: v for k, v in p.items() if k != "cached"} for p in body["predictions"]]
    assert strip == [{k: v for k, v in p.items() if k != "cached"} for p in rest_body["predictions"]]


def test_signed_health_models_and_batches_on_the_api_function(url_client: Client) -> None:
    status, health = url_client.call("GET", "/v1/health")
    assert status == 200 and health["status"] == "ok" and set(health["models"]) == set(MODEL_NAMES)
    status, models = url_client.call("GET", "/v1/models")
    assert status == 200 and set(MODEL_NAMES) <= set(models["models"])
    status, batch = url_client.call("POST", "/v1/batches", {"texts": TEXTS, "models": ["rf"]})
    assert status == 202, batch
    status, page = url_client.results(batch["batch_id"], limit=1)
    assert status == 200 and page["expected"] == 2


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "message"),
    [
        ("POST", "/v1/predict/rf", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/predict/rf", None, 400, "empty"),
        ("POST", "/v1/predict/mlp", b'{"texts": []}', 400, "empty list"),
        ("POST", "/v1/predict/bert", b'{"text": "x"}', 404, "unknown model"),
        ("GET", "/v1/nothing/here", None, 404, "no route"),
    ],
)
def test_bad_input_through_a_url_is_the_rest_apis_4xx(
    url_client: Client,
    rest_client: Client,
    method: str,
    path: str,
    data: bytes | None,
    status: int,
    message: str,
) -> None:
    import urllib.request

    got_status, got = url_client.send(url_client.signed(method, path, data))
    rest = urllib.request.Request(rest_client.stack["api_url"] + path, data=data, method=method)
    rest.add_header("x-api-key", rest_client.stack["api_key"])
    rest.add_header("content-type", "application/json")  # as the signed request has (urllib's default
    # form type makes the local REST API hand the function another body)
    assert (got_status, got) == rest_client.send(rest)
    assert got_status == status and message in got["error"]["message"], got
