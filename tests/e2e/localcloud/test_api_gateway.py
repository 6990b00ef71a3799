"""REST API (Lambda proxy integration) over real HTTP, through LocalStack's execute-api endpoint."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.e2e.conftest import LocalCloud, Stack

pytestmark = pytest.mark.e2e


def test_rest_proxy_reaches_handler_and_returns_its_response(
    localcloud: LocalCloud, probe_stack: Stack
) -> None:
    api_id = probe_stack.outputs["ApiId"]
    url = f"{localcloud.endpoint}/_aws/execute-api/{api_id}/Prod/echo/some/path?color=blue"
    body = json.dumps({"text": "hello over http"}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "X-Probe-Header": "ping"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        status = response.status
        headers = dict(response.headers)
        seen = json.loads(response.read())
    assert status == 201
    assert headers.get("X-Probe") == "yes"
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo/some/path"
    assert seen["query"] == {"color": "blue"}
    assert {k.lower(): v for k, v in seen["headers"].items()}["x-probe-header"] == "ping"
    assert json.loads(seen["body"]) == {"text": "hello over http"}
