"""One SQS batch mixing valid messages with messages that each break a different stage.

The batcher's stage-fault switch (``FAULT_MARKERS``, topicserve.faults.StageFaults) makes any text that
carries a marker fail at that stage of the pipeline, every time: tokenisation, encoding, a head, shaping
the result. Beside them travel the input classes the property tests (tests/functional/test_properties.py)
exercise: lone surrogates and control characters as JSON escapes, invisible-only and combining-mark-only
texts, wrong types, huge numbers, deep nesting, unknown models, and messages that cannot be tied to a
request at all. Counted afterwards: every valid message has an ok result, every bad one an error result,
no valid or answerable message was delivered twice (one batching cycle, nothing retried), and only the
unattributable messages reach the dead-letter queue.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import LocalCloud
from tests.e2e.reliability.conftest import json_logs, log_events
from tests.e2e.reliability.test_no_loss import TOPICS, drain, queue_depth, results_of, send

pytestmark = pytest.mark.e2e
STAGES = ("tokenize", "encode", "head", "shape")
MARKERS = {stage: f"POISON{stage.upper()}" for stage in STAGES}


def plan(batch_id: str) -> tuple[list[str], dict[str, str], set[str]]:
    """Message bodies, the expected status of each answerable request id, and the poison markers."""

    def message(request_id: str, text: Any, **extra: Any) -> str:
        return json.dumps({"batch_id": batch_id, "request_id": request_id, "text": text, **extra})

    def raw(request_id: str, text_json: str) -> str:
        """A body whose text is written as raw JSON (escapes json.dumps would never produce)."""
        return f'{{"batch_id": "{batch_id}", "request_id": "{request_id}", "text": {text_json}}}'

    expected: dict[str, str] = {}
    bodies: list[str] = []
    for i in range(24):
        bodies.append(message(f"ok-{i}", f"{TOPICS[i % len(TOPICS)]} (case {i})"))
        expected[f"ok-{i}"] = "ok"
    for stage, marker in MARKERS.items():
        bodies.append(message(f"stage-{stage}", f"{TOPICS[0]} {marker}"))
        expected[f"stage-{stage}"] = "error"
    answerable_errors = {
        "empty": message("empty", ""),
        "invisible-only": message("invisible-only", "\u200b\ufeff\u2060"),
        "surrogates-only": raw("surrogates-only", '"\\udfff\\ud800"'),
        "marks-only": message("marks-only", "\u0301\u0302\u0303"),
        "number": raw("number", "1e400"),
        "nested": raw("nested", "[" * 500 + "]" * 500),
        "huge-int": raw("huge-int", "1" * 4_301),  # past Python's int() limit: still a JSON object
        "unknown-model": message("unknown-model", "fine text", models=["bert"]),
        "extra-field": message("extra-field", "fine text", colour="red"),
        "bad-truncated": message("bad-truncated", "fine text", truncated="yes"),
    }
    for request_id, body in answerable_errors.items():
        bodies.append(body)
        expected[request_id] = "error"
    # valid despite odd characters: lone surrogates and control characters are ignored, as the tokenizer does
    bodies.append(raw("odd-ok", '"hockey \\ud800 playoffs\\u0000 tonight"'))
    expected["odd-ok"] = "ok"
    bodies.append(message("long-ok", "The shuttle launch was delayed again. " * 3000))  # ~114 kB
    expected["long-ok"] = "ok"
    poison = {f"unattributable-{i}" for i in range(3)}
    bodies += [
        "unattributable-0: not json",
        json.dumps({"request_id": "x", "text": "unattributable-1 no batch id"}),
        # 20,000 deep: past every JSON parser's depth here (LocalStack's own poller too: see the
        # tolerate_unparseable_sqs_bodies hook of the local executor)
        "[" * 20_000 + '"unattributable-2"' + "]" * 20_000,
    ]
    return bodies, expected, poison


def test_one_batch_with_a_poison_message_per_stage(
    rel_stack: dict[str, Any],
    localcloud: LocalCloud,
    function_env: Callable[[str, dict[str, str | None]], None],
) -> None:
    sqs, dynamodb = localcloud.client("sqs"), localcloud.client("dynamodb")
    queue, dlq, batcher = rel_stack["queue_url"], rel_stack["dlq_url"], rel_stack["functions"]["batcher"]
    markers = ",".join(f"{stage}={marker}" for stage, marker in MARKERS.items())
    function_env(batcher, {"FAULT_MARKERS": markers})
    drain(sqs, dlq)
    batch_id = f"isolation-{uuid.uuid4().hex[:8]}"
    bodies, expected, poison = plan(batch_id)
    since = int(time.time() * 1000) - 1000
    send(sqs, queue, bodies)

    deadline = time.monotonic() + 300
    dead: list[str] = []
    while time.monotonic() < deadline:
        dead += drain(sqs, dlq)
        answered = results_of(dynamodb, rel_stack["tables"]["results"], batch_id)
        if len(answered) >= len(expected) and len(dead) >= len(poison) and queue_depth(sqs, queue) == 0:
            break
        time.sleep(3)
    results = {i["request_id"]["S"]: json.loads(i["result"]["S"]) for i in answered}
    statuses = {rid: r["status"] for rid, r in results.items()}
    wrong = {rid: (statuses.get(rid), want) for rid, want in expected.items() if statuses.get(rid) != want}
    records = [
        r for r in json_logs(log_events(localcloud, batcher, since)) if r.get("message") == "batch processed"
    ]
    print(
        f"\n{len(bodies)} messages in {len(records)} batcher invocations: "
        f"{sum(s == 'ok' for s in statuses.values())} ok results, "
        f"{sum(s == 'error' for s in statuses.values())} error results, {len(dead)} in the DLQ; "
        f"isolated {sum(r.get('isolated', 0) for r in records)} with "
        f"{sum(r.get('passes', 0) for r in records)} passes"
    )
    assert not wrong, wrong
    assert set(results) == set(expected)
    for stage in STAGES:
        assert results[f"stage-{stage}"]["error"]["type"] == "InjectedFault"
    assert results["long-ok"]["truncated"] is True and results["odd-ok"]["truncated"] is False
    assert sorted(b for b in dead if not any(p in b for p in poison)) == []  # only the unattributable
    assert len(dead) == len(poison)
    # one batching cycle: every failure reported to SQS was an unattributable message, nothing else retried
    assert sum(r["failed"] for r in records) == sum(r["malformed"] for r in records)
    assert sum(r.get("isolated", 0) for r in records) == len(STAGES) + 1  # + marks-only (nothing to read)
    assert queue_depth(sqs, queue) == 0
