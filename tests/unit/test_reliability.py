"""Reliability rules that need no cloud: the chaos switch, serving through a throttled DynamoDB, and
bodies API Gateway base64-encodes."""

from __future__ import annotations

import base64
import logging
import random
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.unit.conftest import FakeEncoder, FakeHead
from topicserve.cache import LRUStore, TieredStore
from topicserve.cache.dynamodb import DynamoDBStore
from topicserve.errors import InvalidRequestError
from topicserve.faults import KILL_EXIT_CODE, FaultInjector, InjectedFault
from topicserve.requests import event_body, parse_predict
from topicserve.service import InferenceService
from topicserve.settings import Settings


class Killed(BaseException):
    """Stands in for os._exit in tests: nothing after it may run."""


def _exit(code: int) -> None:
    raise Killed(code)


def test_chaos_switch_is_off_by_default_and_costs_nothing() -> None:
    settings = Settings.from_env({})
    assert settings.fault_rate == 0 and settings.fault_kill_rate == 0

    def write(rows: list[int]) -> None:
        return None

    assert FaultInjector(settings.fault_rate, settings.fault_kill_rate).wrap_write(write) is write


def test_chaos_settings_are_read_and_checked() -> None:
    chaos = {"FAULT_RATE": "0.05", "FAULT_KILL_RATE": "0.1", "FAULT_MARKERS": "encode=X"}
    settings = Settings.from_env({**chaos, "TEST_SWITCHES": "true"})
    assert (settings.fault_rate, settings.fault_kill_rate, settings.fault_markers) == (0.05, 0.1, "encode=X")
    with pytest.raises(ValueError, match="FAULT_RATE must be a number"):
        Settings.from_env({"FAULT_RATE": "often", "TEST_SWITCHES": "true"})
    # a stack deployed without TestSwitches ignores the chaos variables entirely
    off = Settings.from_env({**chaos, "FAULT_RATE": "often"})
    assert (off.fault_rate, off.fault_kill_rate, off.fault_markers) == (0.0, 0.0, "")
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        FaultInjector(fail_rate=1.5)
    with pytest.raises(ValueError, match="must not exceed 1"):
        FaultInjector(fail_rate=0.6, kill_rate=0.6)


@pytest.mark.parametrize(("fail", "kill", "expected"), [(1.0, 0.0, InjectedFault), (0.0, 1.0, Killed)])
def test_a_fault_strikes_after_half_the_results_are_written(
    fail: float, kill: float, expected: type[BaseException]
) -> None:
    written: list[list[int]] = []
    injector = FaultInjector(fail_rate=fail, kill_rate=kill, rng=random.Random(0), exit=_exit)
    faulty = injector.wrap_write(written.append)
    with pytest.raises(expected) as info:
        faulty(list(range(10)))
    assert written == [[0, 1, 2, 3, 4]]  # the first half is stored: its redelivery is a duplicate write
    if expected is Killed:
        assert info.value.args == (KILL_EXIT_CODE,)


def test_fault_rates_are_per_batch_probabilities() -> None:
    injector = FaultInjector(fail_rate=0.1, kill_rate=0.1, rng=random.Random(7), exit=_exit)
    faulty = injector.wrap_write(lambda rows: None)
    outcomes = {"ok": 0, "fail": 0, "kill": 0}
    for _ in range(4000):
        try:
            faulty([1, 2])
            outcomes["ok"] += 1
        except InjectedFault:
            outcomes["fail"] += 1
        except Killed:
            outcomes["kill"] += 1
    assert 300 < outcomes["fail"] < 500 and 300 < outcomes["kill"] < 500, outcomes


class ThrottledClient:
    """DynamoDB answering every call with a throttling error, as an over-capacity table does."""

    def __init__(self) -> None:
        self.calls = 0

    def batch_get_item(self, **kwargs: Any) -> Any:
        self.calls += 1
        error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds"}
        raise ClientError({"Error": error}, "BatchGetItem")

    batch_write_item = batch_get_item


def test_predictions_are_served_when_dynamodb_throttles(
    fake_encoder: FakeEncoder, fake_heads: dict[str, FakeHead], caplog: pytest.LogCaptureFixture
) -> None:
    client = ThrottledClient()

    def throttled() -> TieredStore:
        back = DynamoDBStore("t", client=client, max_attempts=3, sleep=lambda s: None)
        return TieredStore(LRUStore(), back)

    service = InferenceService(fake_encoder, fake_heads, cache_store=throttled())
    with caplog.at_level(logging.WARNING, logger="topicserve.cache.store"):
        result = service.predict(["space shuttle", "hockey"], ["rf", "mlp"])
    assert [len(result.predictions[m]) for m in ("rf", "mlp")] == [2, 2]
    assert result.stats.cache_errors >= 2  # the CacheErrors metric of the handlers
    assert client.calls >= 3  # retried with backoff before giving up on the cache
    assert any("serving without it" in r.getMessage() for r in caplog.records)


def test_undecodable_base64_bodies_are_a_400_not_a_crash() -> None:
    """Found by the fuzz test: API Gateway base64-encodes a body that is not UTF-8, and decoding it as
    text crashed the handler (502). Bytes reach the JSON parser, which refuses them with a 400."""
    settings = Settings()
    raw = SimpleNamespace(body=base64.b64encode(b"\xda\x00{").decode(), is_base64_encoded=True)
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        parse_predict(event_body(raw), settings)
    good = SimpleNamespace(body=base64.b64encode(b'{"text": "ok"}').decode(), is_base64_encoded=True)
    assert [t.text for t in parse_predict(event_body(good), settings)] == ["ok"]
    with pytest.raises(InvalidRequestError, match="not valid base64"):
        event_body(SimpleNamespace(body="%%%", is_base64_encoded=True))
    assert event_body(SimpleNamespace(body='{"a": 1}', is_base64_encoded=False)) == '{"a": 1}'
