"""The bulk worker (``topicserve-worker``) as a local process against the local cloud's SQS and DynamoDB.

``POST /v1/batches`` with ``"bulk": true`` lands on the stack's bulk queue; the worker (here on its CPU
fallback: no GPU) drains it in merged batches with the batcher's per-message rules. Its labels must equal
the Lambda batcher's for the same texts, and a worker killed in the middle of a batch and started again
must leave every request answered exactly once, or in the bulk DLQ (counted).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.app.test_app import MODELS, TEXTS, wait_for
from tests.e2e.conftest import LocalCloud
from topicserve_ops.client import Client

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]
ENCODER_DIR = REPO / "build" / "layers" / "encoder-int8" / "python" / "topicserve_encoder"


class WorkerProcess:
    """``python -m topicserve_worker.worker`` (the GPU image's entrypoint; ``topicserve-worker`` is the same
    ``main``) in its own process group, with the batcher's settings; always stopped by its PID."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "topicserve_worker.worker"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 60) -> int | None:
        """SIGTERM (what ECS sends a task being stopped): the worker answers the batch in hand, then exits."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def records(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture
def worker_env(app_stack: dict[str, Any], localcloud: LocalCloud, lam: Any, tmp_path: Path) -> dict[str, str]:
    """The batcher function's own variables (tables, bucket, caches, models), the bulk queue, the local
    cloud's endpoint and dummy credentials: the worker is configured as the ECS task definition does it."""
    assert app_stack["bulk_queue_url"], "the e2e stack has no bulk queue (BulkQueueEnabled)"
    config = lam.get_function_configuration(FunctionName=app_stack["functions"]["batcher"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTEST"))}
    env.update(config["Environment"]["Variables"])
    env.update(localcloud.env())
    env.update(
        {
            "BULK_QUEUE_URL": app_stack["bulk_queue_url"],
            "ENCODER_DIR": str(ENCODER_DIR),
            "MODEL_CACHE_DIR": str(tmp_path / "models"),
            "POWERTOOLS_SERVICE_NAME": "worker",
            "WORKER_WAIT_SECONDS": "1",
            "WORKER_MAX_GATHER_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(worker_env, tmp_path / "worker.log")
    try:
        yield process
    finally:
        process.kill()


def bulk_submit(client: Client, texts: list[str], *, bulk: bool) -> str:
    status, body = client.call("POST", "/v1/batches", {"texts": texts, "bulk": bulk})
    assert status == 202, body
    assert body["queue"] == ("bulk" if bulk else "requests"), body
    return str(body["batch_id"])


def labels(view: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {r["request_id"]: {m: r["models"][m]["label"] for m in MODELS} for r in view["results"]}


def queue_depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def dead_requests(sqs: Any, url: str) -> int:
    """Requests in the dead-letter queue's messages (a chunk message carries several)."""
    count, seen = 0, set()
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
        "Messages"
    ):
        fresh = [m for m in got if m["MessageId"] not in seen]
        if not fresh:
            break
        for m in fresh:
            seen.add(m["MessageId"])
            count += len(json.loads(m["Body"]).get("requests", [None]))
    return count


def test_worker_labels_equal_the_batchers(
    app_stack: dict[str, Any], worker: WorkerProcess, localcloud: LocalCloud
) -> None:
    client = Client(app_stack, timeout=120)
    texts = [f"{TEXTS[i % len(TEXTS)]} Bulk worker text number {i}." for i in range(120)]
    worker.start()
    bulk = wait_for(client, bulk_submit(client, texts, bulk=True), len(texts), timeout=240)
    # the same texts upper-cased: the uncased encoder reads the same tokens, so the batcher may answer them
    # from the records the worker wrote; the labels must be the same either way
    lambda_path = wait_for(client, bulk_submit(client, [t.upper() for t in texts], bulk=False), len(texts))
    assert all(r["status"] == "ok" for r in bulk["results"]), bulk["results"][:3]
    assert labels(bulk) == labels(lambda_path)
    assert worker.terminate() == 0, worker.log.read_text()[-3000:]
    records = worker.records()
    served = [r for r in records if r.get("message") == "bulk batch served"]
    assert sum(r["results"] for r in served) == len(texts), served
    assert any(r.get("message") == "encoder selected" for r in records), records[:5]
    assert queue_depth(localcloud.client("sqs"), app_stack["bulk_queue_url"]) == 0


def test_worker_killed_mid_batch_loses_nothing(
    app_stack: dict[str, Any], worker_env: dict[str, str], tmp_path: Path, localcloud: LocalCloud
) -> None:
    """SIGKILL while a batch is being served (no drain, no deletes of what was not answered), then a new
    worker: the unanswered messages come back after their visibility timeout and every request is answered
    once (one result per request id) or ends in the DLQ."""
    client = Client(app_stack, timeout=120)
    env = {
        **worker_env,
        "WORKER_TARGET_MESSAGES": "10",  # chunks of 10: several passes, so a kill lands in the middle
        "WORKER_VISIBILITY_SECONDS": "15",  # what a dead worker's messages wait before redelivery
        "WORKER_HEARTBEAT_SECONDS": "5",
    }
    first = WorkerProcess(env, tmp_path / "first.log")
    second = WorkerProcess(env, tmp_path / "second.log")
    texts = [f"Kill test document {i}: {TEXTS[i % len(TEXTS)]} {'word ' * (i % 50)}" for i in range(600)]
    try:
        batch_id = bulk_submit(client, texts, bulk=True)
        first.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait until it has answered some, but not all
            status, view = client.results(batch_id, limit=1)
            if status == 200 and view["completed"] >= 100:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the first worker answered nothing in 240 s: {first.log.read_text()[-3000:]}")
        first.kill()
        completed_at_kill = client.results(batch_id, limit=1)[1]["completed"]
        assert completed_at_kill < len(texts), "the kill came too late to test anything"
        second.start()
        sqs = localcloud.client("sqs")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = client.results(batch_id, limit=1)[1]["completed"]
            if done == len(texts) or (done + 10 * queue_depth(sqs, app_stack["bulk_dlq_url"]) >= len(texts)):
                break
            time.sleep(1)
        view = client.all_results(batch_id)[1]
        ids = [r["request_id"] for r in view["results"]]
        dead = dead_requests(sqs, app_stack["bulk_dlq_url"])
        assert len(ids) == len(set(ids)), "a request answered twice"
        assert len(ids) + dead == len(texts), (len(ids), dead, completed_at_kill)
        print(f"killed at {completed_at_kill}/{len(texts)} answered; then {len(ids)} answered, {dead} in DLQ")
    finally:
        first.kill()
        second.kill()
