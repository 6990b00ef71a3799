from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from topicserve.cache import (
    CacheUnavailableError,
    EmbeddingCache,
    LRUStore,
    PredictionCache,
    TieredStore,
    embedding_key,
    prediction_key,
)
from topicserve.cache.dynamodb import DynamoDBStore


def test_keys_name_everything_the_value_depends_on() -> None:
    assert embedding_key("h1", "enc1") != embedding_key("h1", "enc2")
    p = prediction_key("h1", head="rf", head_version="3", encoder_version="enc1")
    assert p != prediction_key("h1", head="rf", head_version="4", encoder_version="enc1")
    assert p != prediction_key("h1", head="rf", head_version="3", encoder_version="enc2")
    assert p != prediction_key("h1", head="mlp", head_version="3", encoder_version="enc1")
    assert "enc1" in p and "rf" in p and "h1" in p


def test_keys_refuse_separator_or_empty_parts() -> None:
    with pytest.raises(ValueError):
        embedding_key("h#1", "enc")
    with pytest.raises(ValueError):
        prediction_key("h", head="", head_version="1", encoder_version="e")


def test_lru_evicts_least_recently_used() -> None:
    lru = LRUStore(max_items=2)
    lru.put_many({"a": b"1", "b": b"2"})
    assert lru.get_many(["a"]) == {"a": b"1"}  # a is now most recent
    lru.put_many({"c": b"3"})
    assert lru.get_many(["a", "b", "c"]) == {"a": b"1", "c": b"3"}
    assert len(lru) == 2


def test_embedding_roundtrip_is_exact(cache_table: str, ddb: Any) -> None:
    cache = EmbeddingCache(DynamoDBStore(cache_table, client=ddb), "enc1")
    vec = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    cache.put_many({"h": vec})
    got = cache.get_many(["h", "missing"])
    assert set(got) == {"h"}
    assert got["h"].dtype == np.float32
    np.testing.assert_array_equal(got["h"], vec)
    item = ddb.get_item(TableName=cache_table, Key={"k": {"S": embedding_key("h", "enc1")}})["Item"]
    assert len(item["v"]["B"]) == 384 * 4  # compact binary, not JSON
    assert int(item["ttl"]["N"]) > 0


def test_prediction_cache_many_heads_one_round() -> None:
    calls: list[int] = []

    class CountingStore(LRUStore):
        def get_many(self, keys):  # type: ignore[no-untyped-def]
            calls.append(1)
            return super().get_many(keys)

    cache = PredictionCache(CountingStore(), "enc1")
    p = np.full(20, 0.05, dtype=np.float32)
    cache.put_many_multi({("rf", "1"): {"h1": p}, ("mlp", "2"): {"h1": p, "h2": p}})
    found = cache.get_many_multi({k: ["h1", "h2"] for k in [("rf", "1"), ("mlp", "2"), ("hgb", "1")]})
    assert calls == [1]
    assert set(found) == {("rf", "1"), ("mlp", "2")}
    assert set(found[("mlp", "2")]) == {"h1", "h2"}
    assert set(found[("rf", "1")]) == {"h1"}


def test_dynamodb_store_chunks_beyond_batch_limits(cache_table: str, ddb: Any) -> None:
    store = DynamoDBStore(cache_table, client=ddb)
    items = {f"k{i}": bytes([i % 256]) * 10 for i in range(260)}  # > 25 per write, > 100 per read
    store.put_many(items)
    assert store.get_many([*items, "k0", "nope"]) == items  # duplicate key in the request is fine


def test_dynamodb_store_skips_expired_items(cache_table: str, ddb: Any) -> None:
    now = [1_000_000.0]
    store = DynamoDBStore(cache_table, client=ddb, ttl_seconds=10, clock=lambda: now[0])
    store.put_many({"a": b"x"})
    assert store.get_many(["a"]) == {"a": b"x"}
    now[0] += 11
    assert store.get_many(["a"]) == {}


class FlakyClient:
    """Hands back part of every batch as unprocessed, like DynamoDB under throttling."""

    def __init__(self, real: Any, unprocessed_rounds: int) -> None:
        self.real = real
        self.rounds = unprocessed_rounds
        self.get_calls = 0
        self.write_calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.get_calls += 1
        if self.rounds > 0:
            self.rounds -= 1
            ((table, req),) = RequestItems.items()
            keep, later = req["Keys"][:1], req["Keys"][1:]
            resp = self.real.batch_get_item(RequestItems={table: {**req, "Keys": keep}})
            resp["UnprocessedKeys"] = {table: {**req, "Keys": later}} if later else {}
            return resp
        return self.real.batch_get_item(RequestItems=RequestItems)

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.write_calls += 1
        if self.rounds > 0:
            self.rounds -= 1
            ((table, reqs),) = RequestItems.items()
            self.real.batch_write_item(RequestItems={table: reqs[:1]})
            return {"UnprocessedItems": {table: reqs[1:]} if reqs[1:] else {}}
        return self.real.batch_write_item(RequestItems=RequestItems)


def test_unprocessed_items_and_keys_are_retried_with_backoff(cache_table: str, ddb: Any) -> None:
    sleeps: list[float] = []
    flaky = FlakyClient(ddb, unprocessed_rounds=2)
    store = DynamoDBStore(cache_table, client=flaky, sleep=sleeps.append)
    items = {f"k{i}": b"v" for i in range(5)}
    store.put_many(items)
    assert flaky.write_calls == 3
    flaky.rounds = 2
    assert store.get_many(list(items)) == items
    assert flaky.get_calls == 3
    assert len(sleeps) == 4


def test_unprocessed_after_last_attempt_is_reported(cache_table: str, ddb: Any) -> None:
    flaky = FlakyClient(ddb, unprocessed_rounds=100)
    store = DynamoDBStore(cache_table, client=flaky, max_attempts=3, sleep=lambda s: None)
    with pytest.raises(CacheUnavailableError, match="UnprocessedItems left after 3 attempts"):
        store.put_many({"a": b"1", "b": b"2", "c": b"3", "d": b"4"})


class DownClient:
    def batch_get_item(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "gone"}}, "BatchGetItem")

    batch_write_item = batch_get_item


def test_tiered_store_degrades_when_the_back_store_is_down() -> None:
    back = DynamoDBStore("t", client=DownClient(), sleep=lambda s: None)
    tiered = TieredStore(LRUStore(), back)
    tiered.put_many({"a": b"1"})  # back write fails, front keeps it
    assert tiered.get_many(["a", "b"]) == {"a": b"1"}
    assert tiered.errors == 2


def test_tiered_store_fills_front_from_back(cache_table: str, ddb: Any) -> None:
    back = DynamoDBStore(cache_table, client=ddb)
    back.put_many({"a": b"1"})
    front = LRUStore()
    tiered = TieredStore(front, back)
    assert tiered.get_many(["a"]) == {"a": b"1"}
    assert front.get_many(["a"]) == {"a": b"1"}  # filled from the back
    back.client = DownClient()  # the front answers alone now
    assert tiered.get_many(["a"]) == {"a": b"1"} and tiered.errors == 0


def test_chunks_are_written_concurrently_and_a_failed_one_does_not_stop_the_others() -> None:
    """100 items = 4 BatchWriteItem chunks, in flight together (their round trips are billed time);
    a chunk that fails is reported after every other chunk was still written."""
    import threading
    import time

    from topicserve.dynamo import RetryPolicy, batch_put

    class Slow:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.in_flight = self.peak = 0
            self.written: list[str] = []

        def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            ((_, reqs),) = RequestItems.items()
            with self.lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            time.sleep(0.05)
            with self.lock:
                self.in_flight -= 1
            if reqs[0]["PutRequest"]["Item"]["k"]["S"] == "k25":  # the second chunk
                error = {"Error": {"Code": "ValidationException", "Message": "no"}}
                raise ClientError(error, "BatchWriteItem")
            with self.lock:
                self.written += [r["PutRequest"]["Item"]["k"]["S"] for r in reqs]
            return {}

    client = Slow()
    items = [{"k": {"S": f"k{i}"}} for i in range(100)]
    with pytest.raises(Exception, match="ValidationException"):
        batch_put(client, "t", items, retry=RetryPolicy(max_attempts=1))
    assert client.peak > 1
    assert len(client.written) == 75 and "k24" in client.written and "k50" in client.written
