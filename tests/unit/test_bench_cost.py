"""The cost model of bench/cost.py: prices, Lambda's rounding, SQS's 64 KiB chunks, DynamoDB's units, and
the line items of each path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import cost
from bench.lambda_report import parse_report


def test_prices_are_the_published_ones() -> None:
    p = cost.PRICES
    assert p.lambda_request * 1e6 == pytest.approx(0.20)
    assert p.lambda_gb_second == pytest.approx(0.0000166667)
    assert p.rest_api_request * 1e6 == pytest.approx(3.50)
    assert p.sqs_request * 1e6 == pytest.approx(0.40)
    assert p.ddb_write_unit * 1e6 == pytest.approx(0.625)
    assert p.ddb_read_unit * 1e6 == pytest.approx(0.125)


def test_billed_duration_rounds_up_to_the_millisecond_and_includes_init() -> None:
    assert cost.billed_ms(12.01) == 13
    assert cost.billed_ms(12.0) == 12
    assert cost.billed_ms(0.2, init_ms=700.5) == 701


def test_a_million_one_second_invocations_at_1024_mb() -> None:
    items = cost.lambda_items("f", invocations=1.0, billed_ms_total=1000.0, memory_mb=1024)
    total = sum(i.usd_per_million for i in items)
    assert total == pytest.approx(0.20 + 16.6667, rel=1e-6)


def test_gb_seconds_use_1024_mb_per_gb() -> None:
    assert cost.gb_seconds(500, 2048) == pytest.approx(1.0)


def test_sqs_requests_count_64_kib_chunks_per_call() -> None:
    kib = 1024
    assert cost.sqs_requests([10 * kib]) == 1
    assert cost.sqs_requests([64 * kib]) == 1
    assert cost.sqs_requests([64 * kib + 1]) == 2
    assert cost.sqs_requests([100 * kib, 1]) == 3
    assert cost.sqs_requests([0]) == 1  # a call is at least one request


def test_sqs_batch_payloads_group_ten_messages_per_call() -> None:
    sizes = [1000] * 25
    assert cost.sqs_batch_payloads(sizes) == [10_000, 10_000, 5_000]
    # ten 10 KiB messages in one SendMessageBatch are two requests
    assert cost.sqs_requests(cost.sqs_batch_payloads([10 * 1024] * 10)) == 2


def test_dynamodb_item_size_and_units() -> None:
    item = {"k": {"S": "abc"}, "v": {"B": b"\0" * 1536}, "ttl": {"N": "1700000000"}}
    # names: k(1) + v(1) + ttl(3); values: 3 + 1536 + (10 digits -> 5 + 1 = 6)
    assert cost.ddb_item_bytes(item) == 5 + 3 + 1536 + 6
    assert cost.write_units(1024) == 1
    assert cost.write_units(1025) == 2
    assert cost.write_units(0) == 1
    assert cost.read_units(4096, consistent=True) == 1
    assert cost.read_units(4097, consistent=True) == 2
    assert cost.read_units(100, consistent=False) == 0.5  # a miss or a small item: the minimum
    assert cost.query_read_units(100 * 500, consistent=True) == math.ceil(50_000 / 4096)


def test_dynamodb_item_size_of_nested_values() -> None:
    assert cost.ddb_item_bytes({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + 1 + 2 + 1
    assert cost.ddb_item_bytes({"flag": {"BOOL": True}}) == 5
    with pytest.raises(ValueError):
        cost.ddb_item_bytes({"x": {"Q": 1}})


def test_sync_http_line_items() -> None:
    fn = cost.FunctionBill(invocations=10, billed_ms=1000.0, memory_mb=2048)
    path = cost.sync_http(fn, texts_per_request=1, ddb_read_units_per_text=1.0, ddb_write_units_per_text=3)
    by = path.by_service()
    assert by["api_gateway"] == pytest.approx(3.50)
    # 100 ms at 2 GB = 0.2 GB-s per prediction
    assert by["lambda"] == pytest.approx(0.20 + 0.2 * 16.6667, rel=1e-5)
    assert by["dynamodb"] == pytest.approx(0.125 + 3 * 0.625)
    assert path.usd_per_million == pytest.approx(sum(by.values()))


def _stats(**kw: int) -> cost.BatchStats:
    base = {
        "batches": 2,
        "messages": 10,  # chunks of ten
        "texts": 100,
        "unique_texts": 100,
        "prediction_hits": 0,
        "embedding_hits": 0,
        "encoded": 100,
        "cache_reads": 100,
        "cache_writes": 0,
    }
    return cost.BatchStats(**{**base, **kw})


SIZES = cost.ItemSizes(record=600, result_chunk=1100, result=700, meta=150)


def test_batcher_dynamodb_units_on_unique_texts() -> None:
    items = {i.what: i.per_prediction for i in cost.batcher_ddb_items(_stats(), SIZES)}
    assert items["result item writes (WRU)"] == pytest.approx(10 * 2 / 100)  # a 1,100-byte chunk: 2 units
    assert items["#meta progress updates (WRU)"] == pytest.approx(2 / 100)  # one per invocation
    assert items["cache record reads (RRU)"] == pytest.approx(0.5)  # every unique text misses once
    assert items["cache record writes (WRU)"] == 0  # first sightings: nothing admitted
    assert cost.write_units_per_text(_stats(), SIZES) == pytest.approx(0.22)


def test_one_request_messages_write_one_result_each() -> None:
    stats = _stats(messages=100)
    items = {i.what: i.per_prediction for i in cost.batcher_ddb_items(stats, SIZES)}
    assert items["result item writes (WRU)"] == 1 and items["#meta progress updates (WRU)"] == 0


def test_admitted_records_cost_one_write_unit_each() -> None:
    stats = _stats(unique_texts=40, prediction_hits=30, encoded=10, cache_reads=40, cache_writes=10)
    items = {i.what: i.per_prediction for i in cost.batcher_ddb_items(stats, SIZES)}
    assert items["cache record reads (RRU)"] == pytest.approx(40 * 0.5 / 100)
    assert items["cache record writes (WRU)"] == pytest.approx(10 / 100)


def test_sqs_path_counts_every_request() -> None:
    api = cost.ApiBill(
        post=cost.FunctionBill(1, 300.0, 1024), get=cost.FunctionBill(1, 200.0, 1024), texts_per_submit=100
    )
    batcher = cost.FunctionBill(invocations=2, billed_ms=2000.0, memory_mb=2048)
    path = cost.sqs_path("sqs", batcher, _stats(), api, [20000] * 10, SIZES, emulator_ms_per_text=5.0)
    items = {i.what: i.per_prediction for i in path.items}
    assert items["REST API requests (POST + GET)"] == pytest.approx(2 / 100)
    assert items["SendMessageBatch (64 KiB chunks)"] == pytest.approx(4 / 100)  # 200 KB in 64 KiB pieces
    assert items["ReceiveMessage (event source mapping)"] == pytest.approx(4 / 100)
    assert items["DeleteMessageBatch (event source mapping)"] == pytest.approx(2 / 100)
    assert items["batcher requests"] == pytest.approx(2 / 100)
    # 2,000 billed ms less 5 ms per text of emulator: 15 ms per text at 2 GB
    assert items["batcher GB-s (2048 MB)"] == pytest.approx(15 / 1000 * 2)
    # one GET page: the query over 10 chunk items (11 KB: 3 RRU) + the #meta read
    assert items["result page reads (RRU)"] == pytest.approx((3 + 1) / 100)
    assert path.usd_per_million == pytest.approx(sum(i.usd_per_million for i in path.items))


def test_fair_naive_adds_the_front_door_a_stored_result_and_cold_starts() -> None:
    fn = cost.FunctionBill(4, 80.0, 2048)
    v = cost.naive_fair(fn, init_ms=4000, cold_share=0.05, result_bytes=600)
    bare = v["naive_lambda"].usd_per_million
    assert v["naive_front_door"].usd_per_million == pytest.approx(bare + 3.50)
    assert v["naive_fair"].usd_per_million == pytest.approx(bare + 3.50 + 0.625 + 0.125)
    cold = 0.05 * 4000 / 1000 * 2 * 16.6667  # 200 ms of init per request on average at 2 GB
    assert v["naive_fair_cold"].usd_per_million == pytest.approx(bare + 3.50 + 0.75 + cold, rel=1e-4)


def test_break_even_hits_from_prices() -> None:
    # 11 ms at 1,769 MB saved per hit (~$0.317 per million) less a $0.0625 read: a $0.625 write pays
    # back after ~2.5 hits
    assert cost.break_even_hits(11.0, 1769, SIZES) == pytest.approx(0.625 / (0.3167 - 0.0625), rel=0.01)
    assert cost.break_even_hits(0.1, 1769, SIZES) == float("inf")


def test_fixed_cost_and_break_even_volume() -> None:
    fixed = cost.Fixed(metrics=20, alarms=5)
    items = fixed.items()
    assert items["custom metrics"] == pytest.approx(6.0) and items["alarms"] == pytest.approx(0.5)
    assert items["idle SQS polls"] == pytest.approx(5 * 3 * 60 * 24 * 30 * 0.4e-6)
    usd = fixed.usd_per_month()
    assert usd == pytest.approx(sum(items.values())) and 6.5 < usd < 12.0
    assert cost.break_even_volume(usd, 0.5, 5.0) == pytest.approx(usd / 4.5 * 1e6)
    assert cost.break_even_volume(usd, 5.0, 0.5) is None


def test_naive_is_one_invocation_per_prediction() -> None:
    path = cost.per_request_lambda("naive", cost.FunctionBill(4, 400.0, 2048))
    assert path.usd_per_million == pytest.approx(0.20 + 0.2 * 16.6667, rel=1e-5)


def test_paths_from_measured_json() -> None:
    def bill(n: int, ms: float, mb: float) -> dict[str, float]:
        return {"invocations": n, "billed_ms": ms, "memory_mb": mb}

    batches = [{"batch_size": 5, "texts": 50, "unique_texts": 50, "encoded": 50, "cache_reads": 50}] * 2
    run = {"bill": bill(2, 2000, 1769), "batches": batches, "message_bytes": [20000] * 10}
    steady = {
        "requests": 20000,
        "on": {"encoded_per_request": 0.1, "reads_per_request": 0.1, "writes_per_request": 0.05},
        "off": {"encoded_per_request": 0.6, "reads_per_request": 0, "writes_per_request": 0},
    }
    measured = {
        "item_sizes": {"record": 600, "result_chunk": 1100, "result": None},
        "http": {"bill": bill(10, 500, 1769)},
        "api": {"texts": 100, "post": bill(1, 300, 1024), "get": bill(1, 200, 1024)},
        "sqs_unique": run,
        "naive": {"bill": bill(5, 1000, 2048)},
        "emulator_ms_per_text": 5.0,
        "encode_ms_per_text": 10.0,
        "zipf_steady": steady,
        "naive_init_ms": 4000,
        "cold_share": 0.05,
    }
    paths = cost.paths_from_measured(measured)
    raw = cost.paths_from_measured(measured, own_work=False)
    assert paths["gpu_worker"] is None and paths["sqs_zipf_cached"] is None
    for name in ("sync_http", "sync_http_function_url", "sqs_unique", "naive_lambda", "naive_fair_cold"):
        p = paths[name]
        assert p is not None and p.usd_per_million > 0
        assert p.to_dict()["usd_per_million"] == pytest.approx(p.usd_per_million)
    assert raw["sqs_unique"].usd_per_million > paths["sqs_unique"].usd_per_million  # type: ignore[union-attr]
    assert paths["sync_http"].usd_per_million - paths["sync_http_function_url"].usd_per_million == (  # type: ignore[union-attr]
        pytest.approx(3.50)
    )
    on, off = paths["sqs_zipf_steady_cached"], paths["sqs_zipf_steady_uncached"]
    assert on is not None and off is not None and on.usd_per_million < off.usd_per_million
    d = cost.derived(measured, paths)
    assert d["x_cheaper_than_naive_fair"] > 1 and d["zipf_steady_cached_over_uncached"] < 1
    assert d["dynamodb_write_units_per_unique_text"] == pytest.approx(10 * 2 / 100 + 2 / 100 + 1 / 100)


def test_report_line_parsing() -> None:
    line = (
        "REPORT RequestId: r\tDuration: 12.50 ms\tBilled Duration: 713 ms\tMemory Size: 2048 MB\t"
        "Max Memory Used: 170 MB\tInit Duration: 700.10 ms"
    )
    r = parse_report(line)
    assert r == {
        "duration_ms": 12.5,
        "billed_ms": 713.0,
        "memory_size_mb": 2048.0,
        "max_memory_mb": 170.0,
        "init_ms": 700.1,
    }
    assert parse_report("REPORT RequestId: r\tDuration: 1.00 ms")["init_ms"] is None


def test_admission_simulation_counts_the_real_cache_code() -> None:
    """bench/admission.py runs the service's own cache code: with caches on a repeated stream encodes far
    less than with them off, and the doorkeeper writes fewer records than writing every one, at the same
    hit rate once texts recur."""
    from bench.admission import simulate

    pool = [f"text {i}" for i in range(300)]
    stream = [pool[int(i)] for i in np.random.default_rng(0).zipf(1.3, 3000) % len(pool)]
    off = simulate(stream, caches=False, batch_size=50)
    on = simulate(stream, batch_size=50)
    every = simulate(stream, batch_size=50, admission=False)
    assert on.encoded_per_request < off.encoded_per_request / 3
    assert on.writes_per_request < every.writes_per_request
    assert on.answer_hit_rate == pytest.approx(every.answer_hit_rate, abs=0.01)
    two = simulate(stream, batch_size=50, environments=2)
    assert two.reads_per_request >= on.reads_per_request  # a second environment reads what the first shared
