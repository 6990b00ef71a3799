"""``topicserve``: the command-line client of a deployed stack (LocalStack or AWS).

    topicserve predict logreg "The shuttle launch was delayed" ["another text" ...]
    topicserve submit texts.jsonl [--models logreg,mlp] [--wait 60]
    topicserve results <batch_id> [--wait 60] [--expect N]
    topicserve models

Connection details come from ``build/stack.json`` (written by ``make deploy``; ``--stack`` to use
another). ``predict``, ``results`` and ``models`` go through the REST API with the ``x-api-key`` header;
``submit`` writes straight to the requests queue with SendMessageBatch (10 messages per call), one message
per JSONL line, in the documented SQS message format.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from topicserve.requests import QueuedRequest, new_batch_id


class Client:
    def __init__(self, stack: dict[str, Any], timeout: float = 60.0) -> None:
        self.stack = stack
        self.timeout = timeout

    @classmethod
    def from_file(cls, path: str | Path = "build/stack.json") -> Client:
        path = Path(path)
        if not path.is_file():
            raise SystemExit(f"{path} not found: deploy first (make deploy) or pass --stack")
        return cls(json.loads(path.read_text()))

    # -- HTTP -------------------------------------------------------------------------------------------
    def call(
        self, method: str, path: str, body: Any = None, *, api_key: str | None = None
    ) -> tuple[int, Any]:
        """One API call; returns (status, parsed JSON body). 4xx/5xx are returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.stack["api_url"].rstrip("/") + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        key = self.stack["api_key"] if api_key is None else api_key
        if key:
            request.add_header("x-api-key", key)
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

    def results(self, batch_id: str) -> tuple[int, Any]:
        return self.call("GET", f"/v1/batches/{batch_id}")

    def wait_results(self, batch_id: str, *, expect: int | None, timeout: float, poll: float = 0.5) -> Any:
        """Poll until the batch is complete (or ``expect`` results are in), or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            status, body = self.results(batch_id)
            if status == 200:
                done = body["status"] == "complete" or (expect is not None and body["completed"] >= expect)
                if done:
                    return body
            time.sleep(poll)
        return body

    # -- SQS --------------------------------------------------------------------------------------------
    def submit(self, requests: Sequence[QueuedRequest]) -> int:
        import boto3

        from topicserve.queue import send_all

        endpoint = self.stack.get("endpoint_url")
        session = boto3.session.Session()
        if endpoint and session.get_credentials() is None:
            # the local cloud accepts any credentials; AWS uses the caller's own
            session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test")
        sqs = session.client("sqs", endpoint_url=endpoint, region_name=self.stack.get("region"))
        return send_all(sqs, self.stack["queue_url"], [r.to_message() for r in requests])


def read_jsonl(path: str | Path, default_models: list[str], batch_id: str) -> Iterator[QueuedRequest]:
    """Each line: a JSON string, or an object ``{"text": ..., "id"?: ..., "models"?: [...]}``."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if not line.strip():
                continue
            item = json.loads(line)
            if isinstance(item, str):
                item = {"text": item}
            yield QueuedRequest(
                batch_id=batch_id,
                request_id=str(item.get("id", number)),
                text=item["text"],
                models=item.get("models", default_models),
            )


def _print(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="topicserve", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="build/stack.json", help="stack outputs written by make deploy")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="synchronous prediction over HTTP")
    p.add_argument("model")
    p.add_argument("texts", nargs="+")
    s = sub.add_parser("submit", help="send a JSONL file of texts to the requests queue")
    s.add_argument("file")
    s.add_argument("--models", default="logreg,rf,hgb,mlp")
    s.add_argument("--wait", type=float, default=0, help="seconds to wait for the results")
    r = sub.add_parser("results", help="status and results of a batch")
    r.add_argument("batch_id")
    r.add_argument("--wait", type=float, default=0)
    r.add_argument("--expect", type=int)
    sub.add_parser("models", help="the registry view: versions in production")
    args = parser.parse_args(argv)
    client = Client.from_file(args.stack)

    if args.command == "predict":
        status, body = client.predict(args.model, args.texts)
    elif args.command == "models":
        status, body = client.call("GET", "/v1/models")
    elif args.command == "submit":
        batch_id = new_batch_id()
        requests = list(read_jsonl(args.file, args.models.split(","), batch_id))
        calls = client.submit(requests)
        print(
            f"batch {batch_id}: {len(requests)} requests sent in {calls} SendMessageBatch calls",
            file=sys.stderr,
        )
        status, body = 200, {"batch_id": batch_id, "count": len(requests)}
        if args.wait:
            body = client.wait_results(batch_id, expect=len(requests), timeout=args.wait)
    else:
        if args.wait:
            status, body = 200, client.wait_results(args.batch_id, expect=args.expect, timeout=args.wait)
        else:
            status, body = client.results(args.batch_id)
    _print(body)
    return 0 if status < 400 else 1


if __name__ == "__main__":
    raise SystemExit(main())
