"""``topicserve``: the command-line client of a deployed stack (LocalStack or AWS).

    topicserve predict logreg "The shuttle launch was delayed" ["another text" ...]
    topicserve submit texts.jsonl [--models logreg,mlp] [--wait 60] [--via api|sqs]
    topicserve results <batch_id> [--wait 60] [--expect N]
    topicserve models

Connection details come from ``build/stack.json`` (written by ``make deploy``; ``--stack`` to use
another). Everything goes through the REST API with the ``x-api-key`` header: ``submit`` posts the JSONL
lines to ``POST /v1/batches`` in submissions of at most 1,000 and prints what each rejected, ``results``
follows the pages of ``GET /v1/batches/{id}``. ``submit --via sqs`` writes straight to the requests queue
instead (SendMessageBatch, one message per line, in the documented SQS message format).

``--function-url`` (a stack deployed with ``FunctionUrls=iam``) sends the same requests to the functions'
own URLs instead, signed with SigV4 for the ``lambda`` service with the caller's AWS credentials (the
boto3 chain: environment, profile, SSO, instance role): ``predict`` to that model's function, every other
route to the API function. The caller needs ``lambda:InvokeFunctionUrl`` and ``lambda:InvokeFunction``
on them; no API key is sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from topicserve.catalogue import MODEL_NAMES
from topicserve.requests import QueuedRequest, new_batch_id

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from botocore.credentials import Credentials
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

#: SigV4's service name for function URLs (the URL's host names the region)
FUNCTION_URL_SERVICE = "lambda"


def signed_request(
    method: str,
    url: str,
    data: bytes | None,
    *,
    credentials: Credentials,
    region: str,
    connect_to: str | None = None,
) -> urllib.request.Request:
    """A function URL request signed with SigV4 (botocore's ``SigV4Auth``, service ``lambda``).

    ``credentials``: botocore credentials (``session.get_credentials()``; a session token, if any, is signed
    in as ``X-Amz-Security-Token``). ``connect_to`` (``http://127.0.0.1:4566``): send the request there
    instead, with the URL's own ``Host`` header, which is what the signature covers: the local cloud serves
    function URLs on its one port, routed by host name, and those names have no DNS here.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    parts = urllib.parse.urlsplit(url)
    # the Host header set here is the one signed and the one sent, whichever address the request goes to
    headers = {"host": parts.netloc, "content-type": "application/json"}
    aws_request = AWSRequest(method=method, url=url, data=data, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), FUNCTION_URL_SERVICE, region).add_auth(aws_request)
    target = url
    if connect_to:
        target = connect_to.rstrip("/") + urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
    request = urllib.request.Request(target, data=data, method=method)
    for name, value in aws_request.headers.items():
        request.add_header(name, value)
    return request


class Client:
    def __init__(self, stack: dict[str, Any], timeout: float = 60.0, *, function_url: bool = False) -> None:
        """``function_url``: call the functions' URLs, SigV4-signed, instead of the REST API with the key."""
        self.stack = stack
        self.timeout = timeout
        self.function_url = function_url
        if function_url and not stack.get("function_urls"):
            raise SystemExit("this stack has no function URLs: deploy it with --param FunctionUrls=iam")

    @classmethod
    def from_file(cls, path: str | Path = "build/stack.json", *, function_url: bool = False) -> Client:
        path = Path(path)
        if not path.is_file():
            raise SystemExit(f"{path} not found: deploy first (make deploy) or pass --stack")
        return cls(json.loads(path.read_text()), function_url=function_url)

    # -- HTTP -------------------------------------------------------------------------------------------
    def call(
        self, method: str, path: str, body: Any = None, *, api_key: str | None = None
    ) -> tuple[int, Any]:
        """One API call; returns (status, parsed JSON body). 4xx/5xx are returned, not raised. ``api_key``
        overrides the stack's key (REST API only)."""
        data = None if body is None else json.dumps(body).encode()
        if self.function_url:
            request = self.signed(method, path, data)
        else:
            request = urllib.request.Request(
                self.stack["api_url"].rstrip("/") + path, data=data, method=method
            )
            request.add_header("content-type", "application/json")
            key = self.stack["api_key"] if api_key is None else api_key
            if key:
                request.add_header("x-api-key", key)
        return self.send(request)

    def function_url_of(self, path: str) -> str:
        """The URL of the function that serves ``path``: a predict path its model's function (a model with no
        function of its own the API function, which answers it with a 404, as the REST API does)."""
        urls = self.stack["function_urls"]
        route = urllib.parse.urlsplit(path).path
        model = route.removeprefix("/v1/predict/") if route.startswith("/v1/predict/") else None
        base = urls["predict"].get(model, urls["api"]) if model else urls["api"]
        return str(base).rstrip("/") + path

    def signed(self, method: str, path: str, data: bytes | None) -> urllib.request.Request:
        """``path`` on its function's URL, signed with the caller's credentials (the boto3 chain)."""
        import boto3

        endpoint = self.stack.get("endpoint_url")
        session = boto3.session.Session()
        credentials = session.get_credentials()
        if credentials is None and endpoint:  # the local cloud accepts any; AWS needs the caller's own
            credentials = boto3.session.Session(
                aws_access_key_id="test", aws_secret_access_key="test"
            ).get_credentials()
        if credentials is None:
            raise SystemExit("no AWS credentials to sign function URL requests with (see the boto3 chain)")
        region = self.stack.get("region") or session.region_name or "us-east-1"
        return signed_request(
            method,
            self.function_url_of(path),
            data,
            credentials=credentials,
            region=region,
            connect_to=endpoint,
        )

    def send(self, request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def predict(self, model: str, texts: Sequence[str]) -> tuple[int, Any]:
        body = {"text": texts[0]} if len(texts) == 1 else {"texts": list(texts)}
        return self.call("POST", f"/v1/predict/{model}", body)

    def results(
        self, batch_id: str, *, limit: int | None = None, next_token: str | None = None
    ) -> tuple[int, Any]:
        """One page of a batch's results."""
        query = urllib.parse.urlencode(
            {k: v for k, v in (("limit", limit), ("next", next_token)) if v is not None}
        )
        return self.call("GET", f"/v1/batches/{batch_id}" + (f"?{query}" if query else ""))

    def all_results(self, batch_id: str, *, limit: int = 1_000) -> tuple[int, Any]:
        """Every page of a batch, merged into one view (``next`` is then always None)."""
        status, view = self.results(batch_id, limit=limit)
        while status == 200 and view.get("next"):
            status, page = self.results(batch_id, limit=limit, next_token=view["next"])
            if status == 200:
                view = {**page, "results": view["results"] + page["results"]}
        return status, view

    def wait_results(self, batch_id: str, *, expect: int | None, timeout: float, poll: float = 0.5) -> Any:
        """Poll (one small page) until the batch is complete (or ``expect`` results are in), or ``timeout``
        passes; then read every page."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.results(batch_id, limit=1)
            if status == 200:
                done = body["status"] == "complete" or (expect is not None and body["completed"] >= expect)
                if done:
                    break
            time.sleep(poll)
        return self.all_results(batch_id)[1]

    def submit_batches(self, items: Sequence[dict[str, Any]], *, size: int = 1_000) -> list[dict[str, Any]]:
        """``POST /v1/batches`` in submissions of ``size`` items (``{"id"?, "text", "models"?}`` each); the
        202 (or 400) body of each submission, in order."""
        answers = []
        for start in range(0, len(items), size):
            status, body = self.call("POST", "/v1/batches", {"requests": list(items[start : start + size])})
            answers.append({"status": status, **(body if isinstance(body, dict) else {"body": body})})
        return answers

    # -- SQS --------------------------------------------------------------------------------------------
    @overload
    def aws(self, service: Literal["sqs"]) -> SQSClient: ...
    @overload
    def aws(self, service: Literal["lambda"]) -> LambdaClient: ...
    @overload
    def aws(self, service: Literal["s3"]) -> S3Client: ...
    def aws(self, service: Literal["sqs", "lambda", "s3"]) -> SQSClient | LambdaClient | S3Client:
        """A boto3 client of the stack's cloud (the local endpoint when it has one)."""
        import boto3

        endpoint = self.stack.get("endpoint_url")
        session = boto3.session.Session()
        if endpoint and session.get_credentials() is None:
            # the local cloud accepts any credentials; AWS uses the caller's own
            session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test")
        return session.client(service, endpoint_url=endpoint, region_name=self.stack.get("region"))

    def submit(self, requests: Sequence[QueuedRequest]) -> int:
        from topicserve.queue import send_all

        return send_all(self.aws("sqs"), self.stack["queue_url"], [r.to_message() for r in requests])

    def monitor(self, window: str | None = None) -> dict[str, Any]:
        """Run the deployed drift monitor on ``window`` (default: the current one, so far) and return its
        answer: the window, the drift flag, the S3 keys of the JSON and PNG report, a summary."""
        from topicserve.monitoring.capture import window_start

        window = window or window_start(time.time(), int(self.stack.get("monitor_window_seconds", 300)))
        response = self.aws("lambda").invoke(
            FunctionName=self.stack["functions"]["monitor"], Payload=json.dumps({"window": window}).encode()
        )
        answer: dict[str, Any] = json.loads(response["Payload"].read())
        if "FunctionError" in response:
            raise RuntimeError(f"the monitor failed: {answer}")
        return answer

    def download(self, uri: str, path: str | Path) -> Path:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.aws("s3").download_file(bucket, key, str(path))
        return Path(path)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Each line: a JSON string, or an object ``{"text": ..., "id"?: ..., "models"?: [...]}``; the id
    defaults to the line number."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if not line.strip():
                continue
            item = json.loads(line)
            item = {"text": item} if not isinstance(item, dict) else item
            yield {"id": str(number), **item}


def submit(client: Client, items: list[dict[str, Any]], *, via: str, wait: float) -> tuple[int, Any]:
    """The ``submit`` command: every item queued or reported rejected (on stderr), then the results."""
    if via == "sqs":
        batch_id = new_batch_id()
        requests = [QueuedRequest(batch_id, str(i["id"]), i["text"], i["models"]) for i in items]
        calls = client.submit(requests)
        print(
            f"batch {batch_id}: {len(requests)} requests sent in {calls} SendMessageBatch calls",
            file=sys.stderr,
        )
        answers: list[dict[str, Any]] = [
            {"status": 202, "batch_id": batch_id, "count": len(requests), "rejected": []}
        ]
    else:
        answers = client.submit_batches(items)
    worst = 200
    for answer in answers:
        worst = max(worst, answer["status"])
        rejected = answer.get("rejected", [])
        queued = answer.get("queued", answer.get("count", 0))
        print(
            f"batch {answer.get('batch_id', '-')}: HTTP {answer['status']}, {queued} queued, "
            f"{len(rejected)} rejected",
            file=sys.stderr,
        )
        for r in rejected:
            print(
                f"  rejected item {r['index']} (id {r['id']}): {r['error']['type']}: {r['error']['message']}",
                file=sys.stderr,
            )
    if wait:
        answers = [
            client.wait_results(a["batch_id"], expect=a.get("count"), timeout=wait) if "batch_id" in a else a
            for a in answers
        ]
    return worst, answers[0] if len(answers) == 1 else {"batches": answers}


def _print(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    print()


def drift_table(answer: dict[str, Any]) -> str:
    """The monitor's answer as a table a person reads at a glance."""
    lines = [f"window {answer['window']}: {'DRIFT' if answer['drift'] else 'no drift'}"]
    lines.append(f"{'model':<10} {'n':>6} {'PSI':>8} {'conf. change':>13}  flags")
    for model, m in answer["summary"]["models"].items():
        psi, change = m.get("psi"), m.get("confidence_change")
        lines.append(
            f"{model:<10} {m.get('n', 0):>6} {'-' if psi is None else f'{psi:.3f}':>8} "
            f"{'-' if change is None else f'{change:+.3f}':>13}  {','.join(m.get('flags') or []) or 'ok'}"
        )
    e = answer["summary"]["embeddings"]
    auc, shift = e.get("auc"), e.get("mean_shift")
    lines.append(
        f"inputs: {e['n']} sampled embeddings, domain-classifier AUC {'-' if auc is None else f'{auc:.3f}'}, "
        f"mean shift {'-' if shift is None else f'{shift:.2f}'}  {','.join(e.get('flags') or []) or 'ok'}"
    )
    from topicserve.feedback.quality import quality_lines  # live accuracy per version (label feedback)

    return "\n".join(lines + quality_lines(answer["summary"].get("quality", {})))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="topicserve", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="build/stack.json", help="stack outputs written by make deploy")
    parser.add_argument(
        "--function-url",
        action="store_true",
        help="call the functions' URLs (FunctionUrls=iam), SigV4-signed with your AWS credentials, "
        "instead of the REST API with the key",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="synchronous prediction over HTTP")
    p.add_argument("model")
    p.add_argument("texts", nargs="+")
    s = sub.add_parser("submit", help="send a JSONL file of texts to the requests queue")
    s.add_argument("file")
    s.add_argument("--models", default=",".join(MODEL_NAMES))
    s.add_argument("--wait", type=float, default=0, help="seconds to wait for the results")
    s.add_argument("--via", choices=("api", "sqs"), default="api", help="POST /v1/batches, or the queue")
    r = sub.add_parser("results", help="status and results of a batch")
    r.add_argument("batch_id")
    r.add_argument("--wait", type=float, default=0)
    r.add_argument("--expect", type=int)
    sub.add_parser("models", help="the registry view: versions in production")
    mon = sub.add_parser("monitor", help="the drift table of a window; the PNG report saved locally")
    mon.add_argument("--window", help="window start (ISO, UTC); default: the current window")
    mon.add_argument("--png", default="build/monitor/drift.png", help="where to save the PNG report")
    args = parser.parse_args(argv)
    client = Client.from_file(args.stack, function_url=args.function_url)

    if args.command == "monitor":
        answer = client.monitor(args.window)
        png = client.download(answer["report"]["png"], args.png)
        print(drift_table(answer))
        print(f"report: {answer['report']['json']}\nPNG saved to {png}")
        return 0
    if args.command == "predict":
        status, body = client.predict(args.model, args.texts)
    elif args.command == "models":
        status, body = client.call("GET", "/v1/models")
    elif args.command == "submit":
        items = [{"models": args.models.split(","), **item} for item in read_jsonl(args.file)]
        status, body = submit(client, items, via=args.via, wait=args.wait)
    else:
        if args.wait:
            status, body = 200, client.wait_results(args.batch_id, expect=args.expect, timeout=args.wait)
        else:
            status, body = client.all_results(args.batch_id)
    _print(body)
    return 0 if status < 400 else 1


if __name__ == "__main__":
    raise SystemExit(main())
