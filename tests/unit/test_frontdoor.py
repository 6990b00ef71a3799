"""topicserve.frontdoor: one resolver, two front doors (REST API proxy events, function URL events).

A small app with the handlers' own parts (FrontDoorResolver, install_error_handlers, event_body,
parse_predict) fed AWS's canonical events (tests/events/): each request sent through both doors gets the
same status and body, and each door gets its response in the shape its service reads. The real handlers
with the real models: tests/functional/test_function_url.py.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from topicserve.errors import BackendUnavailableError
from topicserve.frontdoor import FrontDoorResolver, is_function_url_event
from topicserve.observability import install_error_handlers, make_logger
from topicserve.requests import event_body, parse_page_request, parse_predict
from topicserve.settings import Settings

EVENTS = Path(__file__).resolve().parents[1] / "events"
SETTINGS = Settings.from_env({})

app = FrontDoorResolver()
install_error_handlers(app, make_logger("frontdoor-test"))


@app.post("/v1/predict/<model>")
def predict(model: str) -> dict[str, Any]:
    texts = parse_predict(event_body(app.current_event), SETTINGS)
    return {"model": model, "texts": [t.text for t in texts]}


@app.get("/v1/batches/<batch_id>")
def page(batch_id: str) -> dict[str, Any]:
    request = parse_page_request(app.current_event.query_string_parameters)
    return {"batch_id": batch_id, "limit": request.limit}


@app.get("/v1/down")
def down() -> dict[str, Any]:
    raise BackendUnavailableError("the table is throttled")


def rest_event(method: str, path: str, body: str | None, query: dict[str, str] | None = None) -> dict:
    event = copy.deepcopy(json.loads((EVENTS / "apigw-predict.json").read_text()))
    event.update(httpMethod=method, path=path, resource=path, pathParameters=None)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["requestContext"].update(httpMethod=method, path=f"/prod{path}", resourcePath=path)
    event["body"], event["isBase64Encoded"] = body, False
    return event


def url_event(method: str, path: str, body: str | None, query: dict[str, str] | None = None) -> dict:
    """The function URL event of the same request (absent body: the key is left out, as AWS does)."""
    event = copy.deepcopy(json.loads((EVENTS / "function-url-predict.json").read_text()))
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    if query:
        event["queryStringParameters"] = query
    if body is None:
        del event["body"]
    else:
        event["body"], event["isBase64Encoded"] = body, False
    return event


def answer(response: dict[str, Any]) -> tuple[int, Any]:
    return response["statusCode"], json.loads(response["body"])


REQUESTS = [
    ("POST", "/v1/predict/rf", '{"text": "hello"}', None, 200),
    ("POST", "/v1/predict/rf", '{"texts": ["a", "b"]}', None, 200),
    ("POST", "/v1/predict/rf", "{not json", None, 400),
    ("POST", "/v1/predict/rf", '["a list"]', None, 400),
    ("POST", "/v1/predict/rf", '{"text": 5}', None, 400),
    ("POST", "/v1/predict/rf", '{"txt": "a"}', None, 400),
    ("POST", "/v1/predict/rf", None, None, 400),
    ("POST", "/v1/predict/rf", "", None, 400),
    ("POST", "/v1/predict/rf/", '{"text": "trailing slash"}', None, 200),
    ("GET", "/v1/batches/b1", None, {"limit": "7"}, 200),
    ("GET", "/v1/batches/b1", None, {"limit": "0"}, 400),
    ("GET", "/v1/batches/b1", None, {"bogus": "1"}, 400),
    ("GET", "/v1/down", None, None, 503),
    ("DELETE", "/v1/nothing", None, None, 404),
    ("GET", "/v1/predict/rf", None, None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "query", "status"), REQUESTS)
def test_both_doors_give_the_same_answer(
    method: str, path: str, body: str | None, query: dict[str, str] | None, status: int
) -> None:
    rest = answer(app.resolve(rest_event(method, path, body, query), None))
    url = answer(app.resolve(url_event(method, path, body, query), None))
    assert rest == url
    assert rest[0] == status, rest
    if status >= 400:
        error = rest[1]["error"]
        assert error["type"] and error["message"]


def test_each_door_gets_the_response_shape_it_reads() -> None:
    """REST API: multiValueHeaders; function URL: headers (it ignores multiValueHeaders, so a REST-shaped
    answer would reach the caller without its Content-Type)."""
    rest = app.resolve(rest_event("POST", "/v1/predict/rf", '{"text": "x"}'), None)
    url = app.resolve(url_event("POST", "/v1/predict/rf", '{"text": "x"}'), None)
    assert rest["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert url["headers"] == {"Content-Type": "application/json"} and "multiValueHeaders" not in url


def test_base64_bodies_through_a_function_url() -> None:
    """A function URL base64-encodes a body it does not take for text (binary content types, bytes that are
    not UTF-8): decoded like the REST API's, and invalid JSON or base64 is a 400, never a 5xx."""
    event = url_event("POST", "/v1/predict/mlp", None)
    event["body"], event["isBase64Encoded"] = base64.b64encode(b'{"text": "caf\xc3\xa9"}').decode(), True
    assert answer(app.resolve(event, None)) == (200, {"model": "mlp", "texts": ["café"]})
    for raw in (base64.b64encode(b"\xff\xfe not utf-8").decode(), "not base64!"):
        event["body"] = raw
        status, body = answer(app.resolve(event, None))
        assert status == 400 and body["error"]["type"] == "InvalidRequestError"


def test_the_event_version_decides() -> None:
    url = json.loads((EVENTS / "function-url-predict.json").read_text())
    assert is_function_url_event(url)
    assert not is_function_url_event(json.loads((EVENTS / "apigw-predict.json").read_text()))
    assert not is_function_url_event({**url, "version": "1.0"})  # an HTTP API's 1.0 payload is REST-shaped
    assert not is_function_url_event({"version": "2.0", "requestContext": "nope"})
    assert not is_function_url_event({"warmer": True})
