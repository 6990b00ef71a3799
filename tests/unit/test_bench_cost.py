"""The cost model of bench/cost.py: prices, Lambda's rounding, SQS's 64 KiB chunks, DynamoDB's units, and
the line items of each path."""

from __future__ import annotations

import math

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
        "messages": 100,
        "unique_texts": 100,
        "prediction_hits": 0,
        "embedding_hits": 0,
        "encoded": 100,
    }
    return cost.BatchStats(**{**base, **kw})


def test_batcher_dynamodb_units_on_unique_texts() -> None:
    sizes = cost.ItemSizes(embedding=1600, prediction=200, result=700)
    items = {i.what: i.per_prediction for i in cost.batcher_ddb_items(_stats(), sizes, caches=True)}
    assert items["result writes (WRU)"] == 1
    assert items["cache reads (RRU)"] == 0.5 + 0.5  # prediction miss, then embedding miss
    assert items["cache writes (WRU)"] == 2 + 1  # embedding (2 KiB units), prediction
    off = {i.what for i in cost.batcher_ddb_items(_stats(), sizes, caches=False)}
    assert off == {"result writes (WRU)"}


def test_cache_hits_remove_reads_and_writes() -> None:
    sizes = cost.ItemSizes(embedding=1600, prediction=200, result=700)
    stats = _stats(unique_texts=40, prediction_hits=30, encoded=10)
    items = {i.what: i.per_prediction for i in cost.batcher_ddb_items(stats, sizes, caches=True)}
    assert items["cache reads (RRU)"] == pytest.approx((40 * 0.5 + 10 * 0.5) / 100)
    assert items["cache writes (WRU)"] == pytest.approx((10 * 2 + 10 * 1) / 100)


def test_sqs_path_counts_every_request() -> None:
    api = cost.ApiBill(
        post=cost.FunctionBill(1, 300.0, 1024), get=cost.FunctionBill(1, 200.0, 1024), texts_per_submit=100
    )
    batcher = cost.FunctionBill(invocations=2, billed_ms=2000.0, memory_mb=2048)
    sizes = cost.ItemSizes(embedding=1600, prediction=200, result=700)
    path = cost.sqs_path("sqs", batcher, _stats(), api, [2000] * 100, sizes, caches=True)
    items = {i.what: i.per_prediction for i in path.items}
    assert items["REST API requests (POST + GET)"] == pytest.approx(2 / 100)
    assert items["SendMessageBatch (64 KiB chunks)"] == pytest.approx(10 / 100)
    # batches of 50: five ReceiveMessage and five DeleteMessageBatch calls each
    assert items["ReceiveMessage (event source mapping)"] == pytest.approx(10 / 100)
    assert items["DeleteMessageBatch (event source mapping)"] == pytest.approx(10 / 100)
    assert items["batcher requests"] == pytest.approx(2 / 100)
    assert items["batcher GB-s (2048 MB)"] == pytest.approx(20 / 1000 * 2)
    # one GET page: query + COUNT query of 100 x 700 B (18 RRU each) + the #meta read
    assert items["result page reads (RRU)"] == pytest.approx((2 * 18 + 1) / 100)
    assert path.usd_per_million == pytest.approx(sum(i.usd_per_million for i in path.items))


def test_naive_is_one_invocation_per_prediction() -> None:
    path = cost.per_request_lambda("naive", cost.FunctionBill(4, 400.0, 2048))
    assert path.usd_per_million == pytest.approx(0.20 + 0.2 * 16.6667, rel=1e-5)


def test_paths_from_measured_json() -> None:
    def bill(n: int, ms: float, mb: float) -> dict[str, float]:
        return {"invocations": n, "billed_ms": ms, "memory_mb": mb}

    batches = [
        {
            "batch_size": 50,
            "unique_texts": 50,
            "prediction_hits": 0,
            "embedding_hits": 0,
            "encoded": 50,
        }
    ] * 2
    run = {"bill": bill(2, 2000, 2048), "batches": batches, "message_bytes": [2000] * 100}
    measured = {
        "item_sizes": {"embedding": 1600, "prediction": 200, "result": None},
        "http": {"bill": bill(10, 500, 2048)},
        "api": {"texts": 100, "post": bill(1, 300, 1024), "get": bill(1, 200, 1024)},
        "sqs_unique": run,
        "naive": {"bill": bill(5, 1000, 2048)},
    }
    paths = cost.paths_from_measured(measured)
    assert paths["gpu_worker"] is None
    assert paths["sqs_zipf_cached"] is None
    for name in ("sync_http", "sqs_unique", "naive_lambda"):
        p = paths[name]
        assert p is not None and p.usd_per_million > 0
        assert p.to_dict()["usd_per_million"] == pytest.approx(p.usd_per_million)


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
