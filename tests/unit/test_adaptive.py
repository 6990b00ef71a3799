"""The adaptive batching policy (AIMD on the SQS batching window / batch-size cap) and its tuner."""

from __future__ import annotations

from typing import Any

import pytest

from topicserve.adaptive import AimdController, BatchingConfig, MappingTuner, message_latencies_ms


def test_backlog_doubles_the_cap_then_grows_it_additively_and_opens_a_window_above_ten() -> None:
    c = AimdController(slo_ms=5000, config=BatchingConfig(10, 0), batch_step=10)
    assert c.observe([100.0] * 10, received=10) == BatchingConfig(20, 1)  # slow start: x2
    assert c.observe([100.0] * 20, received=20) == BatchingConfig(40, 1)
    assert c.observe([4500.0] * 40, received=40) == BatchingConfig(80, 1)  # tail over the SLO seen...
    assert c.observe([100.0] * 80, received=80) == BatchingConfig(90, 1)  # ...then additive


def test_tail_over_slo_cuts_the_window_multiplicatively() -> None:
    c = AimdController(slo_ms=2000, config=BatchingConfig(100, 4), max_window_s=5)
    # not full, tail 1900 ms > 0.8 * SLO: window 4 -> 2, and the cap stays valid for AWS
    assert c.observe([1900.0] * 5, received=5) == BatchingConfig(100, 2)
    assert c.observe([1900.0] * 5, received=5) == BatchingConfig(100, 1)
    assert c.observe([1900.0] * 5, received=5) == BatchingConfig(10, 0)  # window 0 => cap <= 10


def test_high_tail_under_real_load_keeps_the_window() -> None:
    c = AimdController(slo_ms=2000, config=BatchingConfig(100, 2))
    assert c.observe([1900.0] * 60, received=60) == BatchingConfig(100, 2)


def test_slack_lengthens_the_window_one_step_within_the_slo() -> None:
    c = AimdController(slo_ms=10_000, config=BatchingConfig(50, 1), max_window_s=5)
    assert c.observe([200.0], received=3) == BatchingConfig(50, 2)
    assert c.observe([200.0], received=3) == BatchingConfig(50, 3)
    # (3 + 1) s would exceed low * SLO = 4 s: stays
    assert c.observe([200.0], received=3) == BatchingConfig(50, 3)


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        AimdController(slo_ms=0)
    with pytest.raises(ValueError):
        AimdController(slo_ms=100, beta=1.5)


def test_message_latencies_from_sent_timestamps() -> None:
    records = [
        {"attributes": {"SentTimestamp": "1000"}},
        {"attributes": {}},
        {"attributes": {"SentTimestamp": "x"}},
    ]
    assert message_latencies_ms(records, now_ms=1500.0) == [500.0]


class FakeLambda:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def list_event_source_mappings(self, FunctionName: str) -> dict[str, Any]:
        arn = "arn:aws:sqs:us-east-1:000000000000:q"
        return {"EventSourceMappings": [{"UUID": "u1", "EventSourceArn": arn, "BatchSize": 10}]}

    def update_event_source_mapping(self, **kwargs: Any) -> None:
        self.updates.append(kwargs)


def test_tuner_starts_from_the_mapping_and_rate_limits_updates() -> None:
    now = [0.0]
    client = FakeLambda()
    tuner = MappingTuner(AimdController(slo_ms=5000), client, "batcher", cooldown_s=5, clock=lambda: now[0])
    full = [{"attributes": {"SentTimestamp": "0"}}] * 10
    assert tuner.observe(full, now_ms=100) == BatchingConfig(20, 1)
    assert client.updates == [{"UUID": "u1", "BatchSize": 20, "MaximumBatchingWindowInSeconds": 1}]
    now[0] = 1.0  # within the cooldown: decided, not applied
    tuner.observe([{"attributes": {"SentTimestamp": "0"}}] * 20, now_ms=100)
    assert len(client.updates) == 1
    now[0] = 10.0
    tuner.observe([{"attributes": {"SentTimestamp": "0"}}] * 20, now_ms=100)
    assert client.updates[-1]["BatchSize"] == 40  # judged against the live cap (20), not the unapplied 40


def test_dedup_off_encodes_every_occurrence_with_the_same_answers() -> None:
    """The benchmark's no-CSE baseline: same predictions, one encoder row per occurrence."""
    from tests.unit.conftest import FakeEncoder, FakeHead
    from topicserve.batching import distinct_rows, encode_rows, every_row
    from topicserve.service import InferenceService
    from topicserve.settings import Settings

    texts = ["a b", "c d", "a b", "a b"]
    heads = {"logreg": FakeHead("logreg")}
    on, off = FakeEncoder(), FakeEncoder()
    with_cse = InferenceService(on, heads).predict(texts, ["logreg"])
    without = InferenceService(off, heads, encode_rows=every_row).predict(texts, ["logreg"])
    assert with_cse.stats.encoded == 2 and without.stats.encoded == 4
    assert on.encoded == ["a b", "c d"] and off.encoded == texts  # input order, one row per occurrence
    assert (with_cse.stats.unique_texts, without.stats.unique_texts) == (2, 2)  # what the benchmarks read
    labels = [p.label for p in with_cse.predictions["logreg"]]
    assert labels == [p.label for p in without.predictions["logreg"]]
    assert Settings.from_env({"DEDUP": "false"}).dedup is False
    assert Settings.from_env({}).dedup is True
    assert encode_rows(True) is distinct_rows and encode_rows(False) is every_row
    assert InferenceService(on, heads).encode_rows is distinct_rows  # the default: dedup on
