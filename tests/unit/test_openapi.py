"""docs/openapi.yaml is the published contract: it must name every route of template.yaml and the limits
the functions enforce (their Settings defaults), or the fuzz test would fuzz a fiction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_template import CfnLoader
from topicserve.catalogue import MODEL_NAMES
from topicserve.settings import Settings

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())


def template_routes() -> set[tuple[str, str]]:
    template = yaml.load((REPO / "template.yaml").read_text(), Loader=CfnLoader)
    routes = set()
    for resource in template["Resources"].values():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "Api" and event["Properties"]["Path"] != "/{proxy+}":
                path = event["Properties"]["Path"].replace("{model}", "{m}")
                routes.add((event["Properties"]["Method"].lower(), path))
    return routes


def spec_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    routes = set()
    for path, item in spec["paths"].items():
        for method in item:
            if path == "/v1/predict/{model}":  # one parameterised route stands for every predict function
                routes |= {(method, f"/v1/predict/{m}") for m in MODEL_NAMES} | {(method, "/v1/predict/{m}")}
            else:
                routes.add((method, path))
    return routes


def test_every_template_route_is_described(spec: dict[str, Any]) -> None:
    assert template_routes() == spec_routes(spec)


def test_limits_are_the_settings_defaults(spec: dict[str, Any]) -> None:
    settings = Settings()
    schemas = spec["components"]["schemas"]
    assert f"MAX_TEXT_CHARS = {settings.max_text_chars}" in schemas["Text"]["description"]
    assert "maxLength" not in schemas["Text"]  # long texts are cut, never refused
    assert schemas["PredictRequest"]["oneOf"][1]["properties"]["texts"]["maxItems"] == (
        settings.max_texts_per_request
    )
    for variant in schemas["BatchSubmission"]["oneOf"]:
        listed = variant["properties"].get("texts") or variant["properties"]["requests"]
        assert listed["maxItems"] == settings.max_requests_per_batch
    assert str(settings.max_message_bytes) in schemas["QueueMessage"]["description"]
    assert schemas["ModelName"]["enum"] == list(MODEL_NAMES)


def test_every_route_needs_the_key_and_is_loadable(spec: dict[str, Any]) -> None:
    import schemathesis

    assert spec["security"] == [{"apiKey": []}]
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    schema = schemathesis.openapi.from_path(OPENAPI)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6


def test_the_idempotency_key_is_documented_as_the_api_checks_it(spec: dict[str, Any]) -> None:
    import re

    from topicserve.errors import InvalidIdempotencyKeyError
    from topicserve.idempotency import HEADER, MAX_KEY_CHARS, REPLAYED_HEADER, idempotency_key

    submit = spec["paths"]["/v1/batches"]["post"]
    (param,) = [p for p in submit["parameters"] if p["in"] == "header"]
    assert param["name"] == HEADER and param["required"] is False
    schema = param["schema"]
    assert schema["minLength"] == 1 and schema["maxLength"] == MAX_KEY_CHARS
    assert {"409", "422"} <= set(submit["responses"])
    assert REPLAYED_HEADER in submit["responses"]["202"]["headers"]
    for key in ["a", "x" * 128, "a b", "!~", "", " a", "a ", "x" * 129, "é", "a\tb", "a\n"]:
        # an ECMA-262 regex (the spec's): "$" is the end of input; Python's "$" also matches before a last \n
        pattern = schema["pattern"].removesuffix("$") + r"\Z"
        documented = bool(re.search(pattern, key)) and 1 <= len(key) <= MAX_KEY_CHARS
        try:
            accepted = idempotency_key({"headers": {HEADER: key}}) == key
        except InvalidIdempotencyKeyError:
            accepted = False
        assert documented == accepted, repr(key)
