from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from topicserve.cache import (
    Answer,
    CacheUnavailableError,
    Doorkeeper,
    EncoderConfig,
    LRUStore,
    RecordCache,
    TextRecord,
    TieredStore,
    answer_id,
    record_key,
    tokens_hash,
)
from topicserve.cache.dynamodb import DynamoDBStore
from topicserve.cache.record import MAX_VALUE_BYTES, dequantize, quantize

CONFIG = EncoderConfig("enc1", "tok1", 256, 1, 1, "int8-per-vector-v1")


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_record_keys_name_the_tokens_and_the_whole_configuration() -> None:
    t = tokens_hash([101, 7592, 102])
    assert t == tokens_hash([101, 7592, 102]) and t != tokens_hash([101, 7593, 102])
    assert tokens_hash([1, 2]) != tokens_hash([1, 2, 0])  # the length is part of the bytes hashed
    key = record_key(t, CONFIG)
    assert key == record_key(t, EncoderConfig(**vars(CONFIG)))
    assert len(key) < 60  # the key is billed with every item
    with pytest.raises(ValueError):
        record_key("a#b", CONFIG)
    with pytest.raises(ValueError):
        EncoderConfig("", "tok1", 256, 1, 1, "int8")
    assert answer_id("rf", "3") == "rf@3"
    with pytest.raises(ValueError):
        answer_id("rf", "")


def test_int8_embedding_is_close_to_float32() -> None:
    vectors = [unit(i) for i in range(200)]
    cos = []
    for v in vectors:
        back = dequantize(*quantize(v))
        cos.append(float(np.dot(v, back)))
        assert abs(float(np.linalg.norm(back)) - 1) < 1e-5
    assert np.mean(cos) > 0.9999 and min(cos) > 0.999


def test_record_roundtrip_answers_exact_and_under_one_write_unit() -> None:
    probs = np.random.default_rng(1).dirichlet(np.ones(20)).astype(np.float32)
    answer = Answer.from_probabilities(probs, 3)
    assert answer.label_id == int(np.argmax(probs)) and answer.confidence == float(probs.max())
    record = TextRecord(
        unit(0), {f"{m}@{v}": answer for m in ("logreg", "rf", "hgb", "mlp", "ensemble") for v in "1"}
    )
    blob = record.encode()
    assert len(blob) <= MAX_VALUE_BYTES
    back = TextRecord.decode(blob, 384)
    assert back.answers == record.answers  # float32 probabilities: bit-identical to the fresh answer
    assert back.embedding is not None and float(np.dot(back.embedding, unit(0))) > 0.9999
    # with its key and TTL the item stays under one write unit (1 KiB)
    item_bytes = len("k") + len(record_key("f" * 32, CONFIG)) + len("v") + len(blob) + len("ttl") + 6
    assert item_bytes <= 1024


def test_record_drops_the_oldest_answers_to_fit() -> None:
    answer = Answer((1, 2, 3), (0.5, 0.3, 0.2))
    record = TextRecord(unit(0))
    for v in range(40):
        record = record.merged(None, {f"logreg@{v}": answer})
    back = TextRecord.decode(record.encode(), 384)
    assert len(record.encode()) <= MAX_VALUE_BYTES
    assert "logreg@39" in back.answers and "logreg@0" not in back.answers
    assert len(back.answers) < 40


def test_unreadable_records_are_misses() -> None:
    store = LRUStore()
    cache = RecordCache(store, CONFIG)
    store.put_many({cache.key("t1"): b"\x09garbage", cache.key("t2"): TextRecord(unit(0, 8)).encode()})
    assert cache.get_many(["t1", "t2"]).records == {}  # another format; another dimension


def test_doorkeeper_says_seen_on_the_second_sighting_and_ages() -> None:
    door = Doorkeeper(capacity=1000)
    assert not door.sighted("a") and door.sighted("a") and door.sighted("a")
    false_positives = sum(door.sighted(f"new{i}") for i in range(999))
    assert false_positives < 30  # ~1 % by construction
    for i in range(2000):
        door.sighted(f"more{i}")
    assert door.resets >= 1
    assert not Doorkeeper(10).sighted("x")
    with pytest.raises(ValueError):
        Doorkeeper(0)


def test_admission_writes_the_shared_tier_only_on_a_repeated_sighting(cache_table: str, ddb: Any) -> None:
    back = DynamoDBStore(cache_table, client=ddb)
    cache = RecordCache(TieredStore(LRUStore(), back), CONFIG, doorkeeper=Doorkeeper(1000))
    first = cache.get_many(["t1"])
    assert first.repeated == set() and first.shared_reads == 1
    assert cache.put_many({"t1": TextRecord(unit(0))}, admitted=first.repeated) == 0
    assert ddb.scan(TableName=cache_table)["Count"] == 0
    second = cache.get_many(["t1", "t2"])
    assert second.repeated == {"t1"} and set(second.records) == {"t1"}  # from the LRU: no shared read
    assert second.shared_reads == 1  # t2 only
    written = cache.put_many(
        {"t1": second.records["t1"], "t2": TextRecord(unit(1))}, admitted=second.repeated
    )
    assert written == 1
    items = ddb.scan(TableName=cache_table)["Items"]
    assert [i["k"]["S"] for i in items] == [cache.key("t1")]
    assert len(items[0]["v"]["B"]) <= MAX_VALUE_BYTES


def test_a_new_head_version_reuses_the_embedding_and_adds_its_answer(cache_table: str, ddb: Any) -> None:
    back = DynamoDBStore(cache_table, client=ddb)
    cache = RecordCache(TieredStore(LRUStore(), back), CONFIG)  # no doorkeeper: every record shared
    a1 = Answer((1, 2, 3), (0.5, 0.25, 0.125))  # float32-exact values
    cache.put_many({"t": TextRecord(unit(0), {"rf@1": a1})})
    other = RecordCache(TieredStore(LRUStore(), back), CONFIG)  # another environment
    record = other.get_many(["t"]).records["t"]
    assert record.answers == {"rf@1": a1} and record.embedding is not None
    other.put_many({"t": record.merged(None, {"rf@2": Answer((4, 1, 2), (0.5, 0.4, 0.1))})})
    again = RecordCache(TieredStore(LRUStore(), back), CONFIG).get_many(["t"]).records["t"]
    assert set(again.answers) == {"rf@1", "rf@2"}
    assert ddb.scan(TableName=cache_table)["Count"] == 1  # one record per text


def test_lru_evicts_least_recently_used() -> None:
    lru = LRUStore(max_items=2)
    lru.put_many({"a": b"1", "b": b"2"})
    assert lru.get_many(["a"]) == {"a": b"1"}  # a is now most recent
    lru.put_many({"c": b"3"})
    assert lru.get_many(["a", "b", "c"]) == {"a": b"1", "c": b"3"}
    assert len(lru) == 2


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
    a chunk that fails is reported after every other chunk was still written.

    In flight together, shown without timing: every chunk waits at a barrier for the other three, which
    only all four chunks in flight at once can pass (written one after another, the first chunk waits
    alone until the barrier's timeout breaks it and every chunk fails)."""
    import threading

    from topicserve.dynamo import WRITE_CONCURRENCY, RetryPolicy, batch_put

    class AllAtOnce:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.together = threading.Barrier(4, timeout=30)
            self.written: list[str] = []

        def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            ((_, reqs),) = RequestItems.items()
            self.together.wait()
            if reqs[0]["PutRequest"]["Item"]["k"]["S"] == "k25":  # the second chunk
                error = {"Error": {"Code": "ValidationException", "Message": "no"}}
                raise ClientError(error, "BatchWriteItem")
            with self.lock:
                self.written += [r["PutRequest"]["Item"]["k"]["S"] for r in reqs]
            return {}

    assert WRITE_CONCURRENCY >= 4
    client = AllAtOnce()
    items = [{"k": {"S": f"k{i}"}} for i in range(100)]
    with pytest.raises(Exception, match="ValidationException"):
        batch_put(client, "t", items, retry=RetryPolicy(max_attempts=1))
    assert not client.together.broken
    assert len(client.written) == 75 and "k24" in client.written and "k50" in client.written


def test_read_gate_stops_reading_first_sightings_that_never_hit_and_reopens() -> None:
    from topicserve.cache.admission import ReadGate

    gate = ReadGate(break_even=0.2, sample=0.1)
    assert gate.open  # a fresh environment reads
    gate.observe(reads=30, hits=0)  # a unique stream: every first-sighting read missed
    assert not gate.open
    admitted = sum(gate.admits(f"k{i}") for i in range(2000))
    assert 120 < admitted < 280  # the sample keeps measuring (~10 %)
    gate.observe(reads=20, hits=15)  # texts recur across environments: reads pay again
    assert gate.open and gate.admits("anything")
    with pytest.raises(ValueError):
        ReadGate(break_even=0)


def test_gated_reads_skip_unique_first_sightings_but_read_repeated_keys(cache_table: str, ddb: Any) -> None:
    from topicserve.cache.admission import ReadGate

    back = DynamoDBStore(cache_table, client=ddb)
    gate = ReadGate()
    cache = RecordCache(TieredStore(LRUStore(0), back), CONFIG, doorkeeper=Doorkeeper(10_000), read_gate=gate)
    reads = [cache.get_many([f"u{i}"]).shared_reads for i in range(200)]
    assert sum(reads[:5]) == 5 and sum(reads[100:]) < 30  # first reads, then only a sample
    assert cache.get_many(["u150"]).shared_reads == 1  # sighted before here: always read (the LRU lacks it)


def test_a_closed_read_gate_also_holds_back_shared_writes_but_for_its_sample() -> None:
    """When first-sighting reads stop paying, writes for others to read would not pay either: only the
    sample of keys the gate still reads is written, the same keys in every environment."""
    from topicserve.cache.admission import ReadGate

    gate = ReadGate(sample=0.1)
    keys = [f"t{i}" for i in range(500)]
    records = {t: TextRecord(unit(0, 8)) for t in keys}

    def cache_over(back: LRUStore) -> RecordCache:
        return RecordCache(
            TieredStore(LRUStore(), back), CONFIG, doorkeeper=Doorkeeper(10_000), read_gate=gate
        )

    assert cache_over(LRUStore()).put_many(records, admitted=keys) == 500  # open: every admitted record
    gate.observe(reads=50, hits=0)
    assert not gate.open
    back = LRUStore()
    cache = cache_over(back)
    assert 20 < cache.put_many(records, admitted=keys) < 90
    assert set(back._data) == {cache.key(t) for t in keys if gate.admits(cache.key(t))}
