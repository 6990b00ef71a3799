"""The CLI client's two front doors: the REST API with the key (default), function URLs signed with SigV4.

HTTP is mocked (``urllib.request.urlopen``); the signature is checked against an independent SigV4
computation (AWS's documented algorithm, written out below), so a request signed for one host and sent with
another, or a body or query string left out of the signature, fails here rather than as a 403 on AWS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials

from topicserve_ops.client import Client, main, signed_request

URL_HOST = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"
STACK: dict[str, Any] = {
    "endpoint_url": None,
    "region": "us-east-1",
    "api_url": "https://api123.execute-api.us-east-1.amazonaws.com/prod",
    "api_key": "the-key",
    "function_urls": {
        "predict": {
            "logreg": "https://logreg0000000000000000000000000.lambda-url.us-east-1.on.aws/",
            "rf": "https://rf00000000000000000000000000000000.lambda-url.us-east-1.on.aws/",
        },
        "api": "https://api00000000000000000000000000000.lambda-url.us-east-1.on.aws/",
    },
}
AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})"
)


def expected_signature(
    request: urllib.request.Request, secret: str, *, host: str, path: str, query: str
) -> str:
    """SigV4 of ``request`` as AWS computes it on receipt (docs: "Create a signed AWS API request")."""
    auth = AUTH.fullmatch(request.get_header("Authorization"))
    assert auth, request.get_header("Authorization")
    headers = {k.lower(): v for k, v in request.header_items()} | {"host": host}
    signed = auth["signed"].split(";")
    pairs = sorted(urllib.parse.parse_qsl(query, keep_blank_values=True))
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in pairs
    )
    canonical = "\n".join(
        [
            request.get_method(),
            urllib.parse.quote(path, safe="/-_.~"),
            canonical_query,
            "".join(f"{h}:{headers[h].strip()}\n" for h in signed),
            ";".join(signed),
            hashlib.sha256(request.data or b"").hexdigest(),
        ]
    )
    scope = f"{auth['date']}/{auth['region']}/{auth['service']}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", headers["x-amz-date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (auth["date"], auth["region"], auth["service"], "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_a_signed_request_carries_a_lambda_sigv4_signature() -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    body = json.dumps({"text": "the shuttle launch"}).encode()
    request = signed_request(
        "POST", f"https://{URL_HOST}/v1/predict/logreg", body, credentials=credentials, region="us-east-1"
    )
    auth = AUTH.fullmatch(request.get_header("Authorization"))
    assert auth and auth["key"] == "AKIDEXAMPLE"
    assert (auth["region"], auth["service"]) == ("us-east-1", "lambda")
    assert {"host", "x-amz-date", "content-type"} <= set(auth["signed"].split(";"))
    assert request.full_url == f"https://{URL_HOST}/v1/predict/logreg" and request.get_method() == "POST"
    assert request.get_header("Host") == URL_HOST and request.data == body
    assert auth["signature"] == expected_signature(
        request, credentials.secret_key, host=URL_HOST, path="/v1/predict/logreg", query=""
    )
    assert request.get_header("X-amz-security-token") is None


def test_temporary_credentials_sign_their_session_token() -> None:
    credentials = Credentials("ASIAEXAMPLE", "secret", token="the-session-token")
    request = signed_request(
        "GET", f"https://{URL_HOST}/v1/health", None, credentials=credentials, region="eu-west-1"
    )
    auth = AUTH.fullmatch(request.get_header("Authorization"))
    assert auth and auth["region"] == "eu-west-1" and "x-amz-security-token" in auth["signed"].split(";")
    assert request.get_header("X-amz-security-token") == "the-session-token"


def test_connect_to_sends_elsewhere_but_signs_the_url_host() -> None:
    """The local cloud: the request goes to its port, with the function URL's host (and query) signed."""
    host = "x1y2z3.lambda-url.us-east-1.127.0.0.1:4610"
    credentials = Credentials("test", "test")
    request = signed_request(
        "GET",
        f"http://{host}/v1/batches/b-1:2?limit=7&next=abc",
        None,
        credentials=credentials,
        region="us-east-1",
        connect_to="http://127.0.0.1:4610",
    )
    assert request.full_url == "http://127.0.0.1:4610/v1/batches/b-1:2?limit=7&next=abc"
    assert request.get_header("Host") == host
    signature = AUTH.fullmatch(request.get_header("Authorization"))["signature"]
    assert signature == expected_signature(
        request, "test", host=host, path="/v1/batches/b-1:2", query="limit=7&next=abc"
    )
    for wrong in (  # the check above would catch a signature of another host, path or query
        {"host": "127.0.0.1:4610", "path": "/v1/batches/b-1:2", "query": "limit=7&next=abc"},
        {"host": host, "path": "/v1/batches/b-1:3", "query": "limit=7&next=abc"},
        {"host": host, "path": "/v1/batches/b-1:2", "query": "limit=7"},
    ):
        assert signature != expected_signature(request, "test", **wrong)


class Recorder:
    """Stands in for urllib.request.urlopen: records each request, answers 200 with a JSON body."""

    def __init__(self) -> None:
        self.requests: list[urllib.request.Request] = []

    def __call__(self, request: urllib.request.Request, timeout: float) -> Any:
        self.requests.append(request)
        recorder = self

        class Response:
            status = 200

            def read(self) -> bytes:
                return json.dumps({"ok": True, "n": len(recorder.requests)}).encode()

            def __enter__(self) -> Response:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

        return Response()


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Recorder:
    """Mocked HTTP and credentials from the environment (the first link of the boto3 chain) only."""
    recorder = Recorder()
    monkeypatch.setattr(urllib.request, "urlopen", recorder)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    return recorder


def test_function_url_client_routes_each_path_to_its_function(http: Recorder) -> None:
    client = Client(STACK, function_url=True)
    assert client.predict("rf", ["a text"]) == (200, {"ok": True, "n": 1})
    client.call("GET", "/v1/models")
    client.results("b1", limit=5)
    client.predict("bert", ["a model without a function"])
    hosts = [urllib.parse.urlsplit(r.full_url).netloc for r in http.requests]
    rf, api = (
        urllib.parse.urlsplit(u).netloc
        for u in (STACK["function_urls"]["predict"]["rf"], STACK["function_urls"]["api"])
    )
    assert hosts == [rf, api, api, api]
    assert [urllib.parse.urlsplit(r.full_url).path for r in http.requests] == [
        "/v1/predict/rf",
        "/v1/models",
        "/v1/batches/b1",
        "/v1/predict/bert",
    ]
    for request in http.requests:
        auth = AUTH.fullmatch(request.get_header("Authorization"))
        assert auth and auth["key"] == "AKIDCHAIN" and auth["service"] == "lambda"
        assert request.get_header("X-api-key") is None  # no key leaves through the other door
    assert json.loads(http.requests[0].data) == {"text": "a text"}
    parts = urllib.parse.urlsplit(http.requests[2].full_url)
    assert AUTH.fullmatch(http.requests[2].get_header("Authorization"))["signature"] == expected_signature(
        http.requests[2], "chain-secret", host=parts.netloc, path=parts.path, query=parts.query
    )


def test_the_rest_api_with_the_key_stays_the_default(http: Recorder) -> None:
    Client(STACK).predict("logreg", ["x"])
    (request,) = http.requests
    assert request.full_url == STACK["api_url"] + "/v1/predict/logreg"
    assert request.get_header("X-api-key") == "the-key" and request.get_header("Authorization") is None


def test_local_cloud_requests_go_to_its_endpoint(http: Recorder) -> None:
    host = "x1y2z3.lambda-url.us-east-1.127.0.0.1:4610"
    stack = {**STACK, "endpoint_url": "http://127.0.0.1:4610"}
    stack["function_urls"] = {"predict": {"logreg": f"http://{host}/"}, "api": f"http://{host}/"}
    Client(stack, function_url=True).call("GET", "/v1/health")
    (request,) = http.requests
    assert request.full_url == "http://127.0.0.1:4610/v1/health" and request.get_header("Host") == host


def test_a_stack_without_urls_is_refused() -> None:
    with pytest.raises(SystemExit, match="FunctionUrls=iam"):
        Client({k: v for k, v in STACK.items() if k != "function_urls"}, function_url=True)
    with pytest.raises(SystemExit, match="FunctionUrls=iam"):
        Client({**STACK, "function_urls": None}, function_url=True)


def test_cli_flag(http: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps(STACK))
    assert main(["--stack", str(stack), "--function-url", "predict", "logreg", "hello"]) == 0
    assert main(["--stack", str(stack), "models"]) == 0
    first, second = http.requests
    assert first.get_header("Authorization").startswith("AWS4-HMAC-SHA256 ")
    assert urllib.parse.urlsplit(first.full_url).netloc.startswith("logreg")
    assert second.get_header("X-api-key") == "the-key"
    assert '"n": 1' in capsys.readouterr().out
