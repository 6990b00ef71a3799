"""Failure isolation: the pure bisection, and the batcher built on it, with fakes for the models."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.conftest import FakeEncoder, FakeHead
from topicserve.batcher import process_records, shape_answer
from topicserve.errors import BackendUnavailableError, EmptyTextError, UnprocessableTextError
from topicserve.faults import InjectedFault, StageFaults, with_test_faults
from topicserve.isolation import isolate
from topicserve.protocols import HeadLike
from topicserve.service import InferenceService, predict_isolating
from topicserve.settings import Settings
from topicserve.text import CheckedText

MODELS = ["logreg", "mlp"]


def failing_on(bad: set[int], exc: type[Exception] = ValueError) -> Any:
    calls: list[list[int]] = []

    def run(group: list[int]) -> list[int]:
        calls.append(group)
        if bad & set(group):
            raise exc(f"bad items in {group}")
        return group

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_nothing_failing_is_one_pass(n: int) -> None:
    iso = isolate(n, failing_on(set()))
    assert iso.passes == 1 and iso.served == [(list(range(n)), list(range(n)))]
    assert not iso.failed and not iso.retry


@pytest.mark.parametrize(
    ("n", "bad"), [(1, {0}), (10, {3}), (100, {0, 99}), (100, {5, 6, 50}), (7, set(range(7)))]
)
def test_bisection_pins_every_culprit_and_serves_everything_else(n: int, bad: set[int]) -> None:
    run = failing_on(bad)
    iso = isolate(n, run)
    assert set(iso.failed) == bad
    served = [i for group, _ in iso.served for i in group]
    assert sorted(served) == sorted(set(range(n)) - bad)
    assert iso.passes <= 1 + 2 * len(bad) * max(1, (n - 1).bit_length())


def test_transient_failures_are_retried_not_bisected() -> None:
    run = failing_on({2}, BackendUnavailableError)
    iso = isolate(8, run)
    assert iso.passes == 1 and set(iso.retry) == set(range(8)) and not iso.failed


def test_a_broken_pass_is_not_blamed_on_the_items() -> None:
    """Every item fails and the known-good probe fails too: the model is broken, retry everything."""
    iso = isolate(4, failing_on(set(range(4))), probe=lambda: (_ for _ in ()).throw(RuntimeError("broken")))
    assert not iso.failed and set(iso.retry) == set(range(4))
    iso = isolate(4, failing_on(set(range(4))), probe=lambda: None)  # healthy probe: the items are bad
    assert set(iso.failed) == set(range(4)) and not iso.retry


def test_the_deadline_stops_bisection_and_leaves_the_rest_for_a_retry() -> None:
    now = [0.0]
    budget_ms = 1_000.0

    def run(group: list[int]) -> list[int]:
        now[0] += 0.01 * len(group)  # 10 ms per item
        if 0 in group:
            raise ValueError("bad")
        return group

    iso = isolate(
        64, run, remaining_ms=lambda: budget_ms - now[0] * 1000, reserve_ms=300, clock=lambda: now[0]
    )
    tried = {i for group, _ in iso.served for i in group} | set(iso.failed)
    assert tried | set(iso.retry) == set(range(64)) and not tried & set(iso.retry)
    assert iso.retry and now[0] * 1000 <= budget_ms - 300 + 10 * 64  # no pass started without time for it


# -- the batcher on fakes --------------------------------------------------------------------------------
class Heads(dict[str, HeadLike]):
    """Fixed heads that, as the router, can be served through the chaos switches' wrapper."""

    def wrap_heads(self, wrap: Any) -> None:
        for model, head in self.items():
            self[model] = wrap(head)


def make_service(markers: dict[str, str] | None = None) -> InferenceService:
    """The service with the stage faults ``markers`` names, wrapped as a test stack's bootstrap does."""
    heads = Heads({m: FakeHead(m, seed=i) for i, m in enumerate(MODELS)})
    raw = ",".join(f"{stage}={marker}" for stage, marker in (markers or {}).items())
    encoder = with_test_faults(Settings(test_switches=True, fault_markers=raw), FakeEncoder(), heads)
    return InferenceService(encoder, heads)


def record(i: int, body: Any) -> dict[str, Any]:
    return {"messageId": f"m{i}", "body": body if isinstance(body, str) else json.dumps(body)}


def test_one_poison_message_per_stage_never_fails_its_neighbours(caplog: pytest.LogCaptureFixture) -> None:
    markers = {s: f"FAULT{s.upper()}" for s in ("tokenize", "encode", "head", "shape")}
    svc = make_service(markers)
    bodies: list[Any] = [
        {"batch_id": "b", "request_id": f"ok{i}", "text": f"valid text {i}"} for i in range(20)
    ]
    bodies += [
        {"batch_id": "b", "request_id": f"p-{stage}", "text": f"text with {marker}"}
        for stage, marker in markers.items()
    ]
    bodies += ["not json", {"batch_id": "b", "request_id": "blank", "text": " "}]
    written: list[tuple[str, str, dict[str, Any]]] = []
    outcome = process_records(
        [record(i, b) for i, b in enumerate(bodies)],
        svc,
        written.extend,
        Settings(),
        shape=StageFaults(markers).wrap_shape(shape_answer),  # as the batcher function wraps it
    )
    results = {r: res for _, r, res in written}
    assert all(results[f"ok{i}"]["status"] == "ok" for i in range(20))
    for stage in markers:
        assert results[f"p-{stage}"]["status"] == "error"
        assert results[f"p-{stage}"]["error"]["type"] == "InjectedFault"
    assert results["blank"]["error"]["type"] == "EmptyTextError"
    assert outcome.failed_message_ids == [f"m{bodies.index('not json')}"]  # only the malformed one
    assert outcome.isolated == 4 and outcome.malformed == 1 and outcome.results == 20 + 4 + 1
    isolated = [r for r in caplog.records if r.getMessage() == "message isolated: it fails on its own"]
    assert len(isolated) == 4 and all(r.message_id for r in isolated)


def test_a_backend_outage_sends_the_whole_batch_back() -> None:
    svc = make_service({"transient": "FAULTTRANSIENT"})
    bodies = [{"batch_id": "b", "request_id": f"r{i}", "text": f"text {i}"} for i in range(5)]
    bodies[2]["text"] += " FAULTTRANSIENT"
    written: list[Any] = []
    outcome = process_records([record(i, b) for i, b in enumerate(bodies)], svc, written.extend, Settings())
    assert not written and outcome.failed_message_ids == [f"m{i}" for i in range(5)] and outcome.passes == 1


def test_fake_encoder_empty_tokens() -> None:
    svc = make_service()
    with pytest.raises(EmptyTextError, match="nothing the encoder can read"):
        svc.predict([""], MODELS)


def test_a_broken_model_sends_the_batch_back_instead_of_answering_errors() -> None:
    svc = make_service()
    svc.heads["mlp"].predict_proba = lambda e: (_ for _ in ()).throw(RuntimeError("corrupt"))  # type: ignore[method-assign]
    bodies = [{"batch_id": "b", "request_id": f"r{i}", "text": f"text {i}"} for i in range(6)]
    written: list[Any] = []
    outcome = process_records([record(i, b) for i, b in enumerate(bodies)], svc, written.extend, Settings())
    assert not written and len(outcome.failed_message_ids) == 6 and outcome.isolated == 0


def test_the_synchronous_path_names_the_text_that_fails_on_its_own() -> None:
    svc = make_service({"encode": "FAULTENCODE"})
    texts = [CheckedText("fine"), CheckedText("has FAULTENCODE"), CheckedText("also fine")]
    with pytest.raises(UnprocessableTextError, match=r"texts\[1\] \(InjectedFault"):
        predict_isolating(svc, texts, MODELS)
    assert predict_isolating(svc, [texts[0], texts[2]], MODELS).predictions["mlp"][1].label
    with pytest.raises(InjectedFault):
        broken = make_service({"encode": "probe"})  # the probe itself fails: a server fault, not the text's
        predict_isolating(broken, [CheckedText("probe")], MODELS)


def test_truncation_flags_follow_the_tokens_and_the_cut() -> None:
    svc = make_service()
    long = "x" * 100  # the fake encoder reads 62 "tokens"
    result = svc.predict(["short", long, "short"], MODELS, cut=[False, False, True])
    assert result.truncated == [False, True, True]
