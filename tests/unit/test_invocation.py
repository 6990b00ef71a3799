"""The handlers' per-invocation ritual as one decorator (topicserve.observability.invocation): warm-ups
answered before the handler, the response counted, Powertools' cold-start metric once, metrics flushed
whatever happens, and one record_served call after a prediction."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider import cold_start as powertools_cold_start

from tests.unit.conftest import FakeEncoder, FakeHead
from topicserve.initsteps import InitSteps
from topicserve.observability import invocation, is_cold_start, make_logger, make_metrics, record_served
from topicserve.rollout.routing import Route
from topicserve.rollout.tally import Observation
from topicserve.service import BatchResult, InferenceService, StaticRoutes
from topicserve.warming import warm_event

# what the function's process ignores (topicserve.observability), pytest shows again per test
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


class Context:
    function_name = "test-function"
    memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())


@dataclass
class FakeRuntime:
    init_seconds: float = 0.25
    init_steps: InitSteps = field(default_factory=InitSteps)
    flushes: list[bool] = field(default_factory=list)
    rollout: list[Observation] = field(default_factory=list)
    served: list[BatchResult] = field(default_factory=list)

    def flush(self, *, force: bool = False) -> None:
        self.flushes.append(force)

    def record_rollout(self, observations: Any) -> None:
        self.rollout.extend(observations)

    def record_served(self, results: Any) -> None:
        self.served.extend(results)


@pytest.fixture(autouse=True)
def cold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh environment: Powertools' cold-start flag set, as at import."""
    monkeypatch.setattr(powertools_cold_start, "is_cold_start", True)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def metric_names(blob: dict[str, Any]) -> set[str]:
    return {m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def test_warm_ups_are_answered_before_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    runtime, seen = FakeRuntime(), []
    runtime.init_steps.add("encoder", 12.5)
    logger, metrics = make_logger("t"), make_metrics("t")

    @invocation(logger=logger, metrics=metrics, runtime=runtime, http=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        return {"statusCode": 200}

    first = handler(warm_event(2, hold_ms=0), Context())
    second = handler(warm_event(2, hold_ms=0), Context())
    assert first == {
        "warmed": True,
        "cold_start": True,
        "init_seconds": 0.25,
        "init_steps": runtime.init_steps.to_dict(),
    }
    assert second["cold_start"] is False and not is_cold_start()
    assert not seen and runtime.flushes == [True, True]  # the sums are written, the handler never called
    blobs = emf(capsys.readouterr().out)
    cold_starts = [b for b in blobs if "ColdStart" in metric_names(b)]
    assert len(cold_starts) == 1 and cold_starts[0]["function_name"] == "test-function"
    assert cold_starts[0]["service"] == metrics.service
    assert not any("Requests" in metric_names(b) for b in blobs)  # a warm-up is no request


def test_a_request_is_counted_and_correlated(capsys: pytest.CaptureFixture[str]) -> None:
    logger, metrics = make_logger("t"), make_metrics("t")
    context = Context()
    ids: list[str | None] = []

    @invocation(logger=logger, metrics=metrics, runtime=FakeRuntime(), http=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ids.append(logger.get_correlation_id())
        return {"statusCode": 404, "body": "{}"}

    assert handler({"path": "/nothing"}, context) == {"statusCode": 404, "body": "{}"}
    assert handler({"path": "/nothing"}, Context())["statusCode"] == 404
    assert ids[0] == context.aws_request_id
    blobs = emf(capsys.readouterr().out)
    requests = [b for b in blobs if "Requests" in metric_names(b)]
    assert len(requests) == 2 and all(b["Status4xx"] == [1.0] for b in requests)
    assert sum("ColdStart" in metric_names(b) for b in blobs) == 1


def test_metrics_are_flushed_when_the_handler_raises(capsys: pytest.CaptureFixture[str]) -> None:
    logger, metrics = make_logger("t"), make_metrics("t")
    calls = []

    @invocation(logger=logger, metrics=metrics)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=7)
        if event.get("fail"):
            raise RuntimeError("boom")
        return {"batchItemFailures": []}

    with pytest.raises(RuntimeError, match="boom"):
        handler({"fail": True}, Context())
    blobs = emf(capsys.readouterr().out)
    assert [b["BatchSize"] for b in blobs if "BatchSize" in metric_names(b)] == [[7.0]]
    # Powertools' metric counts an environment's first invocation that returned: the next one here
    assert is_cold_start() and not any("ColdStart" in metric_names(b) for b in blobs)
    handler({}, Context())
    handler({}, Context())
    blobs = emf(capsys.readouterr().out)
    assert sum("ColdStart" in metric_names(b) for b in blobs) == 1 and not is_cold_start()
    assert [b["BatchSize"] for b in blobs if "BatchSize" in metric_names(b)] == [[7.0], [7.0]]


def test_without_a_runtime_a_warm_event_is_the_handlers() -> None:
    """Functions that load no model (API, monitor, gate) have nothing to warm: the event is theirs."""
    logger, metrics = make_logger("t"), make_metrics("t")

    @invocation(logger=logger, metrics=metrics)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"handled": event}

    assert handler(warm_event(1, 0), Context()) == {"handled": warm_event(1, 0)}


def test_record_served_is_every_recording_of_a_prediction(capsys: pytest.CaptureFixture[str]) -> None:
    prod, cand = FakeHead("logreg", "1"), FakeHead("logreg", "2", seed=3)
    service = InferenceService(FakeEncoder(), StaticRoutes({"logreg": prod}))
    service.routes.routes["logreg"] = Route(prod, shadow=cand)  # type: ignore[attr-defined]
    passes = [service.predict(["a", "b", "a"], ["logreg"]), service.predict(["c"], ["logreg"])]
    runtime, metrics = FakeRuntime(), make_metrics("t")
    record_served(metrics, runtime, passes, latency_ms=12.0)
    metrics.flush_metrics()
    blobs = emf(capsys.readouterr().out)
    own = [b for b in blobs if "Texts" in metric_names(b)]
    assert len(own) == 1 and (own[0]["Texts"], own[0]["UniqueTexts"], own[0]["LatencyMs"]) == (
        [4.0],
        [3.0],
        [12.0],
    )
    shadow = [b for b in blobs if "CandidateCompared" in metric_names(b)]
    assert [b["stage"] for b in shadow] == ["shadow", "shadow"] and shadow[0]["service"] == metrics.service
    assert runtime.served == passes and len(runtime.rollout) == 2
    record_served(metrics, runtime, [])  # nothing served (every message malformed): nothing to count
    assert not emf(capsys.readouterr().out) and runtime.served == passes
