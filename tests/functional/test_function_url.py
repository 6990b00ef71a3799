"""The function URL front door (template parameter FunctionUrls=iam) on the real handlers and models.

Every request goes through both doors, the REST API's proxy event and the function URL's payload format 2.0
event (tests/events/), and must get the same status and body: predictions, the light routes, and every
kind of bad input (a 4xx with a JSON error, never a 5xx).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.functional.conftest import MODELS, api_event, body_of, invoke, url_event
from tests.functional.test_handlers import BAD_BODIES, TEXTS


def both(module: ModuleType, method: str, path: str, body: Any = None, **kw: Any) -> tuple[dict, dict]:
    """The (REST API, function URL) responses of one request."""
    resource = kw.pop("resource", None)
    query = kw.pop("query", None)
    rest_event = api_event(method, path, body, resource=resource, **kw)
    if query:
        rest_event["queryStringParameters"] = query
        rest_event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return invoke(module, rest_event), invoke(module, url_event(method, path, body, query=query, **kw))


def without_cache_flags(body: dict[str, Any]) -> dict[str, Any]:
    """The second call of a text is served from the cache, and says so; the rest must be identical."""
    return {
        **body,
        "predictions": [{k: v for k, v in p.items() if k != "cached"} for p in body["predictions"]],
    }


@pytest.mark.parametrize("model", MODELS)
def test_predict_answers_the_same_through_both_doors(handlers: dict[str, ModuleType], model: str) -> None:
    rest, url = both(handlers[model], "POST", f"/v1/predict/{model}", {"texts": TEXTS})
    assert rest["statusCode"] == url["statusCode"] == 200, url["body"]
    assert without_cache_flags(body_of(url)) == without_cache_flags(body_of(rest))
    assert body_of(url)["model"] == model
    assert url["headers"]["Content-Type"] == "application/json"  # a function URL reads headers, not multi


@pytest.mark.parametrize(("body", "raw", "status", "message"), BAD_BODIES)
def test_bad_input_is_the_same_4xx_through_a_function_url(
    handlers: dict[str, ModuleType], body: Any, raw: bool, status: int, message: str
) -> None:
    rest, url = both(handlers["rf"], "POST", "/v1/predict/rf", body, raw=raw)
    assert url["statusCode"] == rest["statusCode"] == status
    assert body_of(url) == body_of(rest)
    assert message in body_of(url)["error"]["message"]


def test_malformed_empty_and_binary_bodies(handlers: dict[str, ModuleType]) -> None:
    module = handlers["logreg"]
    for event in (
        url_event("POST", "/v1/predict/logreg"),  # no body at all: the key is absent
        url_event("POST", "/v1/predict/logreg", "", raw=True),
        url_event("POST", "/v1/predict/logreg", "{not json", raw=True),
        url_event("POST", "/v1/predict/logreg", "{not json", raw=True, base64_body=True),
    ):
        response = invoke(module, event)
        assert response["statusCode"] == 400, response
        assert body_of(response)["error"]["type"] == "InvalidRequestError"
    # a body the URL base64-encoded (a non-text content type) is served like a text one
    ok = invoke(module, url_event("POST", "/v1/predict/logreg", {"text": TEXTS[0]}, base64_body=True))
    assert ok["statusCode"] == 200 and len(body_of(ok)["predictions"]) == 1


def test_the_api_routes_answer_the_same(handlers: dict[str, ModuleType]) -> None:
    api = handlers["api"]
    for method, path, body, resource in [
        ("GET", "/v1/health", None, None),
        ("GET", "/v1/models", None, None),
        ("POST", "/v1/predict/bert", {"text": "x"}, "/v1/predict/{model}"),
        ("DELETE", "/v1/nothing", None, "/{proxy+}"),
        ("POST", "/v1/batches", {"texts": []}, None),
        ("POST", "/v1/batches", {"texts": ["a"], "models": ["bert"]}, None),
        ("POST", "/v1/batches", "{not json", None),
        ("GET", "/v1/batches/bad id!", None, "/v1/batches/{batch_id}"),
    ]:
        raw = isinstance(body, str)
        rest, url = both(api, method, path, body, resource=resource, raw=raw)
        assert url["statusCode"] == rest["statusCode"] and body_of(url) == body_of(rest), (method, path)
        assert url["statusCode"] < 500, (method, path, url)
    health = body_of(invoke(api, url_event("GET", "/v1/health")))
    assert health["status"] == "ok" and set(health["models"]) == set(MODELS)


def test_batches_through_a_function_url(handlers: dict[str, ModuleType]) -> None:
    """Submit, then read a page with a query string (limit), both as function URL events."""
    api = handlers["api"]
    submitted = invoke(api, url_event("POST", "/v1/batches", {"texts": TEXTS, "models": ["rf"]}))
    assert submitted["statusCode"] == 202, submitted["body"]
    batch_id = body_of(submitted)["batch_id"]
    page = invoke(api, url_event("GET", f"/v1/batches/{batch_id}", query={"limit": "2"}))
    assert page["statusCode"] == 200, page["body"]
    assert body_of(page)["batch_id"] == batch_id and body_of(page)["expected"] == 3
    for query in ({"limit": "0"}, {"next": "not-a-token!"}, {"bogus": "1"}):
        path, resource = f"/v1/batches/{batch_id}", "/v1/batches/{batch_id}"
        rest, url = both(api, "GET", path, resource=resource, query=query)
        assert url["statusCode"] == rest["statusCode"] == 400 and body_of(url) == body_of(rest), query
