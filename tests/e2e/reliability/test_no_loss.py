"""No request is lost: thousands of SQS requests, poison messages, a chaotic batcher, killed environments.

What is sent (one batch id, shuffled):

* valid requests (all four models); 1% of them are sent twice (a duplicate delivery of the same request);
* 1% parseable-but-invalid requests (an unknown model): they must get an error *result*;
* 2% poison messages that cannot be tied to a request (truncated JSON, an id with spaces): they must end
  in the dead-letter queue, and nowhere else.

While SQS feeds the batcher, its chaos switch (topicserve.faults) fails or kills ~10% + 10% of the batches
half-way through their result write, and the test itself SIGKILLs busy batcher runtimes from outside.
Afterwards every request id must be in the results table exactly once or in the DLQ, and the counts are
printed. A second batch goes as the API queues it, chunks of ten requests per message (some delivered
twice): each of its requests must be answered exactly once or dead-lettered with its chunk, and the
batch's ``completed`` count (one conditional update per chunk) must equal the results stored.
NO_LOSS_REQUESTS sets the size of the default run (1,000); the ``slow`` variant sends 5,000.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import LocalCloud
from tests.e2e.reliability.conftest import environments, json_logs, log_events
from topicserve.catalogue import MODEL_NAMES
from topicserve.requests import QueuedRequest, pack_chunks
from topicserve.results import ResultsStore

pytestmark = pytest.mark.e2e
MODELS = list(MODEL_NAMES)
TOPICS = [
    "The shuttle's main engine was shut down seconds before launch",
    "The goalie made forty saves in the playoff game",
    "Which X11 driver supports this graphics card",
    "The senate debated the gun control bill for hours",
    "My motorcycle needs a new chain and sprockets",
    "Is there archaeological evidence for the exodus",
    "Encrypting the key escrow database with the clipper chip",
    "The doctor said the diet caused my migraines",
]
POISON_ID = re.compile(r"poison-\d+")


@dataclass
class Plan:
    batch_id: str
    bodies: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    poison: set[str] = field(default_factory=set)
    duplicated: set[str] = field(default_factory=set)

    @property
    def request_ids(self) -> set[str]:
        return self.valid | self.invalid | self.poison


def make_plan(total: int, rng: random.Random) -> Plan:
    plan = Plan(batch_id=f"noloss-{uuid.uuid4().hex[:12]}")
    n_poison, n_invalid = max(1, total * 2 // 100), max(1, total // 100)
    for i in range(total):
        request_id = f"r{i}"
        text = f"{TOPICS[i % len(TOPICS)]} (request {i})"
        if i < n_poison:
            request_id = f"poison-{i}"
            plan.poison.add(request_id)
            if i % 2:  # not JSON at all
                plan.bodies.append(f'{{"batch_id": "{plan.batch_id}", "request_id": "{request_id}", "text": ')
            else:  # JSON, but its request id is invalid: no result can be written under it
                body = {"batch_id": plan.batch_id, "request_id": f"{request_id} has spaces", "text": text}
                plan.bodies.append(json.dumps(body))
        elif i < n_poison + n_invalid:
            plan.invalid.add(request_id)
            plan.bodies.append(QueuedRequest(plan.batch_id, request_id, text, ["bert"]).to_message())
        else:
            plan.valid.add(request_id)
            message = QueuedRequest(plan.batch_id, request_id, text, MODELS).to_message()
            plan.bodies.append(message)
            if i % 100 == 0:
                plan.duplicated.add(request_id)
                plan.bodies.append(message)
    rng.shuffle(plan.bodies)
    return plan


def send(sqs: Any, queue_url: str, bodies: list[str]) -> None:
    def send_chunk(start: int) -> None:
        entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[start : start + 10])]
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        assert not failed, failed

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send_chunk, range(0, len(bodies), 10)))


def queue_depth(sqs: Any, queue_url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


def results_of(dynamodb: Any, table: str, batch_id: str) -> list[dict[str, Any]]:
    items, kwargs = (
        [],
        {
            "TableName": table,
            "KeyConditionExpression": "batch_id = :b",
            "ExpressionAttributeValues": {":b": {"S": batch_id}},
            "ConsistentRead": True,
        },
    )
    while True:
        page = dynamodb.query(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def drain(sqs: Any, queue_url: str) -> list[str]:
    """Receive and delete every message of a queue; their bodies."""
    bodies: list[str] = []
    empty = 0
    while empty < 2:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=60
        ).get("Messages", [])
        empty = 0 if messages else empty + 1
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def dlq_request_ids(body: str) -> list[str]:
    marker = POISON_ID.search(body)
    if marker:
        return [marker.group(0)]
    message = json.loads(body)
    return (
        [r["request_id"] for r in message["requests"]] if "requests" in message else [message["request_id"]]
    )


def chunked_batch(total: int) -> tuple[str, list[str], list[str]]:
    """A batch as POST /v1/batches queues it: chunks of ten; every fifth chunk sent twice."""
    batch_id = f"noloss-chunks-{uuid.uuid4().hex[:12]}"
    requests = [
        QueuedRequest(batch_id, f"c{i}", f"{TOPICS[i % len(TOPICS)]} (chunked {i})", MODELS)
        for i in range(total)
    ]
    bodies = [c.to_message() for c in pack_chunks(requests, max_texts=10, max_bytes=256 * 1024)]
    return batch_id, [q.request_id for q in requests], bodies + bodies[::5]


def wait_until_settled(
    done: Callable[[], bool], on_tick: Callable[[], None], timeout: float, *, poll: float = 5.0
) -> None:
    deadline = time.monotonic() + timeout
    settled = 0
    while settled < 2:  # two quiet polls in a row: nothing in flight, nothing left to redeliver
        assert time.monotonic() < deadline, "the queue did not drain in time"
        time.sleep(poll)
        on_tick()
        settled = settled + 1 if done() else 0


@pytest.mark.parametrize(
    "total",
    [
        pytest.param(int(os.environ.get("NO_LOSS_REQUESTS", "1000")), id="default"),
        pytest.param(int(os.environ.get("NO_LOSS_REQUESTS_SLOW", "5000")), id="full", marks=pytest.mark.slow),
    ],
)
def test_every_request_is_answered_once_or_dead_lettered(
    total: int,
    rel_stack: dict[str, Any],
    localcloud: LocalCloud,
    function_env: Callable[[str, dict[str, str | None]], None],
) -> None:
    sqs, dynamodb = localcloud.client("sqs"), localcloud.client("dynamodb")
    batcher = rel_stack["functions"]["batcher"]
    queue, dlq = rel_stack["queue_url"], rel_stack["dlq_url"]
    drain(sqs, dlq)  # what earlier tests left there is not ours to count
    plan = make_plan(total, random.Random(total))
    results = ResultsStore(rel_stack["tables"]["results"], client=dynamodb)
    chunked_id, chunked_ids, chunked_bodies = chunked_batch(total // 5)
    results.create_batch(chunked_id, len(chunked_ids))
    function_env(batcher, {"FAULT_RATE": "0.1", "FAULT_KILL_RATE": "0.1"})
    since_ms = int(time.time() * 1000) - 1000
    started = time.monotonic()
    bodies = plan.bodies + chunked_bodies
    random.Random(total + 1).shuffle(bodies)
    send(sqs, queue, bodies)
    sent_s = time.monotonic() - started

    external_kills: list[int] = []
    last_kill = [time.monotonic()]

    def kill_a_busy_batcher() -> None:
        """Every ~20 s while work is left, SIGKILL a batcher runtime from outside (as the OOM killer would),
        one per 1,000 requests (at least 2), so that the share of killed batches does not depend on N."""
        if time.monotonic() - last_kill[0] < 20 or len(external_kills) >= max(2, total // 1000):
            return
        for env in environments(localcloud, batcher):
            if env.runtime_pid is not None:
                try:
                    os.kill(env.runtime_pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                external_kills.append(env.runtime_pid)
                last_kill[0] = time.monotonic()
                return

    timeout = float(os.environ.get("NO_LOSS_TIMEOUT", str(300 + total * 0.3)))
    wait_until_settled(lambda: queue_depth(sqs, queue) == 0, kill_a_busy_batcher, timeout)
    elapsed = time.monotonic() - started

    items = results_of(dynamodb, rel_stack["tables"]["results"], plan.batch_id)
    result_ids = Counter(i["request_id"]["S"] for i in items)
    statuses = {i["request_id"]["S"]: json.loads(i["result"]["S"]) for i in items}
    dead = Counter(r for b in drain(sqs, dlq) for r in dlq_request_ids(b))
    chunked, after = [], None
    while True:
        page = results.get_page(chunked_id, limit=1000, after=after)
        assert page is not None
        chunked += [r["request_id"] for r in page.results]
        after = page.last_request_id
        if after is None:
            break

    time.sleep(2)
    records = json_logs(log_events(localcloud, batcher, since_ms))
    chaos = Counter(r["message"] for r in records if str(r.get("message", "")).startswith("chaos:"))
    processed = [r for r in records if r.get("message") == "batch processed"]
    answered_valid = plan.valid & set(result_ids)
    counts = {
        "sent_messages": len(plan.bodies),
        "request_ids": len(plan.request_ids),
        "valid": len(plan.valid),
        "sent_twice": len(plan.duplicated),
        "invalid": len(plan.invalid),
        "poison": len(plan.poison),
        "results": len(result_ids),
        "ok_results": sum(1 for r in statuses.values() if r["status"] == "ok"),
        "error_results": sum(1 for r in statuses.values() if r["status"] == "error"),
        "dlq": sum(dead.values()),
        "dlq_poison": len(plan.poison & set(dead)),
        "dlq_valid_after_retries": len(plan.valid & set(dead)),
        "dlq_invalid_with_their_batch": len(plan.invalid & set(dead)),
        "valid_in_both": len(answered_valid & set(dead)),
        "batches_processed": len(processed),
        "chaos_failures": chaos["chaos: failing the batch mid-write"],
        "chaos_kills": chaos["chaos: killing the execution environment mid-batch"],
        "external_sigkills": len(external_kills),
        "send_s": round(sent_s, 1),
        "settle_s": round(elapsed, 1),
    }
    counts.update(
        chunked_requests=len(chunked_ids), chunked_results=len(chunked), chunked_completed=page.completed
    )
    print("\nno-loss accounting:", json.dumps(counts))
    assert len(chunked) == len(set(chunked)), "a chunked request has two results"
    assert set(chunked) | set(dead) >= set(chunked_ids) and not set(chunked) - set(chunked_ids)
    assert page.completed == len(chunked), "the batch's count must equal the results stored (each chunk once)"

    missing = plan.request_ids - set(result_ids) - set(dead)
    assert not missing, (
        f"{len(missing)} request ids neither answered nor dead-lettered: {sorted(missing)[:20]}"
    )
    assert all(n == 1 for n in result_ids.values()), "a request id has two results"
    assert not set(result_ids) - plan.request_ids, "results for ids never sent"
    assert plan.poison <= set(dead) and not plan.poison & set(result_ids), "poison must end in the DLQ only"
    # An invalid request is answered with an error result, never retried for itself; it can still reach the
    # DLQ with the rest of its batch when every delivery of that batch was failed or killed.
    answered_invalid = plan.invalid & set(result_ids)
    assert answered_invalid and all(statuses[r]["status"] == "error" for r in answered_invalid)
    assert all(
        statuses[r]["status"] == "ok" and set(statuses[r]["models"]) == set(MODELS) for r in answered_valid
    )
    assert external_kills, "no batcher environment was killed from outside: the run proved nothing"
    chaos_events = counts["chaos_failures"] + counts["chaos_kills"]
    assert chaos_events, "the chaos switch never failed nor killed a batch: the run proved nothing about it"
    if len(processed) + chaos_events >= 70:  # each write rolls 10 % + 10 %: none of one kind is < 0.1 %
        assert counts["chaos_failures"] and counts["chaos_kills"], "one kind of chaos never happened"
