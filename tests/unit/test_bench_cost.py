"""The cost model of bench/cost.py: prices, Lambda's rounding, SQS's 64 KiB chunks, DynamoDB's units, and
the line items of each path."""

from __future__ import annotations

import dataclasses
import json
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
    assert p.ddb_storage_gb_month == pytest.approx(0.25)
    assert p.s3_put * 1000 == pytest.approx(0.005) and p.s3_list * 1000 == pytest.approx(0.005)
    assert p.s3_get * 1000 == pytest.approx(0.0004)
    assert p.s3_storage_gb_month == pytest.approx(0.023)
    assert p.logs_ingested_gb == pytest.approx(0.50)
    assert cost.PRICES_DATE


def test_billed_duration_rounds_up_to_the_millisecond_and_includes_init() -> None:
    assert cost.billed_ms(12.01) == 13
    assert cost.billed_ms(12.0) == 12
    assert cost.billed_ms(0.2, init_ms=700.5) == 701


def test_a_million_one_second_invocations_at_1024_mb() -> None:
    items = cost.lambda_items("f", invocations=1.0, billed_ms_total=1000.0, memory_mb=1024)
    total = sum(i.usd_per_million_texts for i in items)
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


#: no sampled monitoring writes (ledger, embeddings), so a test of another column sees fewer items; the
#: window sums stay (one ADD per flush, every request or batch at flush_seconds 0)
NO_MONITORING = cost.Basis(monitoring=cost.Monitoring(ledger_sample=0, embedding_sample=0, flush_seconds=0))


def test_sync_http_line_items() -> None:
    fn = cost.FunctionBill(invocations=10, billed_ms=1000.0, memory_mb=2048)
    sizes = cost.ItemSizes(record=900)
    path = cost.sync_http(
        fn,
        texts_per_request=1,
        sizes=sizes,
        cache_reads_per_text=2.0,
        cache_writes_per_text=3.0,
        basis=cost.Basis(monitoring=cost.Monitoring(ledger_sample=0, embedding_sample=0)),
    )
    col = path.by_column()
    assert list(col) == list(cost.COLUMNS)
    assert col["front_door"] == pytest.approx(3.50)
    assert col["lambda_requests"] == pytest.approx(0.20)
    assert col["compute"] == pytest.approx(0.2 * 16.6667, rel=1e-5)  # 100 ms at 2 GB = 0.2 GB-s per text
    assert col["dynamodb"] == pytest.approx(2 * 0.5 * 0.125 + 3 * 0.625)  # two misses (0.5 RRU), 3 writes
    # 3 records of 900 B (+100 B overhead) kept 7 days: 3 x 1e-6 GB x 7/30 month x $0.25
    assert col["storage"] == pytest.approx(3 * 1e-6 * 7 / 30 * 0.25 * 1e6)
    # one sums ADD per 10 s flush at 1 request/s: 0.1 WRU per request
    assert col["monitoring"] == pytest.approx(0.1 * 0.625)
    assert col["init"] == col["logs"] == col["queue"] == col["s3"] == 0
    assert path.usd_per_million == pytest.approx(sum(col.values()))
    assert sum(path.by_service().values()) == pytest.approx(path.usd_per_million)
    units = path.units()
    assert units["billed_ms_per_text"] == [
        {"function": "predict", "billed_ms": pytest.approx(100.0), "memory_mb": 2048}
    ]
    assert units["rru"] == pytest.approx(1.0) and units["wru"] == pytest.approx(3.1)
    assert units["log_bytes"] is None and not path.log_bytes_measured  # not measured: n/a, priced 0


def test_sync_http_init_and_log_bytes_and_texts_per_request() -> None:
    # 16 invocations of 16 texts: 1,600 billed ms of which 320 init, 32 KB of log events
    fn = cost.FunctionBill(16, 1600.0, 1024, init_ms=320.0, log_bytes=32_000)
    path = cost.sync_http(fn, texts_per_request=16, front_door="function_url", basis=NO_MONITORING)
    col = path.by_column()
    assert col["front_door"] == 0  # a function URL bills nothing per request
    assert col["lambda_requests"] == pytest.approx(0.20 / 16)
    assert col["compute"] == pytest.approx(gb(80 / 16, 1024) * 16.6667e-6 * 1e6)  # 80 ms of work per call
    assert col["init"] == pytest.approx(gb(20 / 16, 1024) * 16.6667e-6 * 1e6)  # 20 ms of init per call
    assert col["logs"] == pytest.approx(2000 / 16 / 1e9 * 0.50 * 1e6)  # 2,000 B per call over 16 texts
    u = path.units()
    assert u["init_ms_per_text"] == pytest.approx(20 / 16)
    assert u["billed_ms_per_text"][0]["billed_ms"] == pytest.approx(80 / 16)
    assert u["log_bytes"] == pytest.approx(125.0) and path.log_bytes_measured


def gb(ms: float, mb: float) -> float:
    return ms / 1000 * mb / 1024


def test_storage_is_item_bytes_plus_overhead_for_the_ttl() -> None:
    assert cost.stored_gb_months(900, 30 * 24 * 3600) == pytest.approx(1e-6)
    assert cost.stored_gb_months(0, 15 * 24 * 3600) == pytest.approx(100 / 1e9 / 2)
    item = cost.storage_item("x", [(2.0, 400), (1.0, 900)], 30 * 24 * 3600)
    assert item.usd_per_million_texts == pytest.approx((2 * 500 + 1000) / 1e9 * 0.25 * 1e6)
    assert item.column == "storage" and item.unit == "GB-month"


def test_log_bytes_priced_per_gb_ingested() -> None:
    item = cost.log_item("f log events", 2000.0)
    assert item.usd_per_million_texts == pytest.approx(2000 * 1e6 / 1e9 * 0.50)  # 2 GB per M texts: $1


def test_retention_is_the_serving_defaults() -> None:
    import inspect

    from topicserve.feedback.ledger import ServedLedger
    from topicserve.monitoring.capture import MonitorStore
    from topicserve.settings import Settings

    r, s = cost.Retention(), Settings()
    assert r.results_seconds == s.results_ttl_seconds == 24 * 3600
    assert r.cache_seconds == s.cache_ttl_seconds == 7 * 24 * 3600
    for cls in (MonitorStore, ServedLedger):
        assert inspect.signature(cls).parameters["ttl_seconds"].default == r.monitor_seconds
    m = cost.Monitoring()
    assert (m.ledger_sample, m.embedding_sample, m.flush_seconds) == (
        s.feedback_ledger_sample,
        s.monitor_embedding_sample,
        s.monitor_flush_seconds,
    )


def test_monitoring_writes_per_text() -> None:
    basis = cost.Basis(
        monitoring=cost.Monitoring(ledger_sample=0.1, embedding_sample=0.05, embedding_item_bytes=1600)
    )
    items = {
        i.what: i
        for i in cost.monitoring_items(models=5, distinct=0.5, embeddings=0.4, flushes=0.01, basis=basis)
    }
    assert all(i.column == "monitoring" for i in items.values())
    # one ledger item per text whatever the models (190 B + 90 B per other model: one write unit)
    assert items["served-answers ledger writes (WRU)"].per_text == pytest.approx(0.1 * 0.5)
    assert items["sampled embedding writes (WRU)"].per_text == pytest.approx(0.05 * 0.4 * 2)  # 2 KiB units
    assert items["window sums ADDs (WRU)"].per_text == pytest.approx(0.01 * 5)
    kept = items["ledger entries and sampled embeddings kept"].per_text
    assert kept == pytest.approx((0.05 * (190 + 4 * 90 + 100) + 0.02 * 1700) / 1e9 * 14 / 30)
    assert cost.Monitoring(sync_requests_per_second=0.05).sync_flushes_per_request == 1.0  # at most one
    assert cost.Monitoring(sync_requests_per_second=2.0).sync_flushes_per_request == pytest.approx(0.05)


def test_combined_paths_are_per_prediction_and_per_text() -> None:
    fn = cost.FunctionBill(10, 1000.0, 1024)
    one = cost.sync_http(fn, texts_per_request=1, basis=NO_MONITORING)
    one = dataclasses.replace(one, latency_ms={"p50": 10.0, "p99": 30.0})
    slow = dataclasses.replace(one, latency_ms={"p50": 20.0, "p99": 25.0})
    five = cost.combine("five", [one, one, slow, one, one])
    assert five.models == 5
    assert five.usd_per_million_texts == pytest.approx(5 * one.usd_per_million_texts)
    assert five.usd_per_million == pytest.approx(one.usd_per_million)  # the same per prediction
    assert five.latency_ms == {"p50": 20.0, "p99": 30.0}  # each percentile's slowest
    assert five.units()["rru"] == pytest.approx(one.units()["rru"])  # per prediction


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
    items = {i.what: i.per_text for i in cost.batcher_ddb_items(_stats(), SIZES)}
    assert items["result item writes (WRU)"] == pytest.approx(10 * 2 / 100)  # a 1,100-byte chunk: 2 units
    assert items["#meta progress updates (WRU)"] == pytest.approx(2 / 100)  # one per invocation
    assert items["cache record reads (RRU)"] == pytest.approx(0.5)  # every unique text misses once
    assert items["cache record writes (WRU)"] == 0  # first sightings: nothing admitted


def test_one_request_messages_write_one_result_each() -> None:
    stats = _stats(messages=100)
    items = {i.what: i.per_text for i in cost.batcher_ddb_items(stats, SIZES)}
    assert items["result item writes (WRU)"] == 1 and items["#meta progress updates (WRU)"] == 0


def test_admitted_records_cost_one_write_unit_each() -> None:
    stats = _stats(unique_texts=40, prediction_hits=30, encoded=10, cache_reads=40, cache_writes=10)
    items = {i.what: i.per_text for i in cost.batcher_ddb_items(stats, SIZES)}
    assert items["cache record reads (RRU)"] == pytest.approx(40 * 0.5 / 100)
    assert items["cache record writes (WRU)"] == pytest.approx(10 / 100)


API = cost.ApiBill(
    post=cost.FunctionBill(1, 300.0, 1024), get=cost.FunctionBill(1, 200.0, 1024), texts_per_submit=100
)


def _run(**kw: object) -> cost.SqsRun:
    base: dict[str, object] = {
        "batcher": cost.FunctionBill(invocations=2, billed_ms=2000.0, memory_mb=2048),
        "stats": _stats(),
        "api": API,
        "message_bytes": [20000] * 10,
        "sizes": SIZES,
    }
    return cost.SqsRun(**{**base, **kw})  # type: ignore[arg-type]


def test_sqs_path_counts_every_request() -> None:
    path = cost.sqs_path("sqs", _run(), emulator_ms_per_text=5.0, basis=NO_MONITORING)
    items = {i.what: i.per_text for i in path.items}
    assert items["REST API requests (POST + GET)"] == pytest.approx(2 / 100)
    assert items["SendMessageBatch (64 KiB chunks)"] == pytest.approx(4 / 100)  # 200 KB in 64 KiB pieces
    assert items["ReceiveMessage (event source mapping)"] == pytest.approx(4 / 100)
    assert items["DeleteMessageBatch (event source mapping)"] == pytest.approx(2 / 100)
    assert items["batcher requests"] == pytest.approx(2 / 100)
    # 2,000 billed ms less 5 ms per text of emulator: 15 ms per text at 2 GB
    assert items["batcher GB-s (2048 MB)"] == pytest.approx(15 / 1000 * 2)
    # one GET page: the query over 10 chunk items (11 KB: 3 RRU) + the #meta read
    assert items["result page reads (RRU)"] == pytest.approx((3 + 1) / 100)
    # ten chunk items of 1,100 B per 100 texts and one #meta of 150 B per submission of 100, kept a day
    kept = (10 / 100 * 1200 + 1 / 100 * 250) / 1e9 / 30
    assert items["result items and #meta kept"] == pytest.approx(kept)
    assert path.usd_per_million == pytest.approx(sum(i.usd_per_million_texts for i in path.items))
    col = path.by_column()
    assert col["queue"] == pytest.approx((4 + 4 + 2) / 100 * 0.40)
    assert col["storage"] == pytest.approx(kept * 0.25 * 1e6)
    assert col["logs"] == 0 and path.units()["log_bytes"] is None
    u = path.units()
    assert {r["function"]: r["billed_ms"] for r in u["billed_ms_per_text"]} == pytest.approx(
        {"api": 5.0, "batcher": 15.0}
    )
    # RRU: page (4 / 100) + record misses 0.5; WRU: #meta 1/100, chunks 20/100, progress 2/100, and the
    # monitoring sums the batcher adds after each of its 2 batches (one per model)
    assert u["rru"] == pytest.approx(0.04 + 0.5) and u["wru"] == pytest.approx(0.01 + 0.2 + 0.02 + 0.02)
    assert path.item_bytes == {"record": 600, "result_chunk": 1100, "meta": 150}


def test_sqs_path_logs_need_every_function_measured() -> None:
    with_logs = cost.FunctionBill(2, 2000.0, 2048, log_bytes=50_000)
    api = dataclasses.replace(
        API,
        post=dataclasses.replace(API.post, log_bytes=3000),
        get=dataclasses.replace(API.get, log_bytes=1000),
    )
    path = cost.sqs_path("sqs", _run(batcher=with_logs, api=api), basis=NO_MONITORING)
    assert path.log_bytes_measured and path.units()["log_bytes"] == pytest.approx(40 + 500)
    assert path.by_column()["logs"] == pytest.approx(540 / 1e9 * 0.50 * 1e6)
    partial = cost.sqs_path("sqs", _run(batcher=with_logs), basis=NO_MONITORING)  # the api's not measured
    assert not partial.log_bytes_measured and partial.by_column()["logs"] == 0


def test_sqs_path_at_five_models_is_per_prediction() -> None:
    one = cost.sqs_path("one", _run())
    five = cost.sqs_path("five", _run(models=5))
    assert five.usd_per_million == pytest.approx(five.usd_per_million_texts / 5)
    # the same measured run: only monitoring differs per text: a window sums ADD per model, and the one
    # ledger item per text holds four more answers (bigger, still one write unit)
    m = cost.Monitoring()
    extra = 4 * 2 / 100 * 0.625 + m.ledger_sample * 4 * m.ledger_model_bytes / 1e9 * 14 / 30 * 0.25 * 1e6
    assert five.usd_per_million_texts - one.usd_per_million_texts == pytest.approx(extra)


def test_fair_naive_adds_the_front_door_a_stored_result_and_cold_starts() -> None:
    fn = cost.FunctionBill(4, 80.0, 2048)
    v = cost.naive_fair(fn, init_ms=4000, cold_share=0.05, result_bytes=600)
    bare = v["naive_lambda"].usd_per_million
    assert v["naive_front_door"].usd_per_million == pytest.approx(bare + 3.50)
    kept = 700 / 1e9 / 30 * 0.25 * 1e6  # 600 B + 100 B overhead for the results TTL (a day)
    assert v["naive_fair"].usd_per_million == pytest.approx(bare + 3.50 + 0.625 + 0.125 + kept)
    assert v["naive_fair"].by_column()["storage"] == pytest.approx(kept)
    cold = 0.05 * 4000 / 1000 * 2 * 16.6667  # 200 ms of init per request on average at 2 GB
    assert v["naive_fair_cold"].usd_per_million == pytest.approx(bare + 3.50 + 0.75 + kept + cold, rel=1e-4)
    assert v["naive_fair_cold"].by_column()["init"] == pytest.approx(cold, rel=1e-4)
    assert v["naive_fair_cold"].units()["init_ms_per_text"] == pytest.approx(200.0)
    assert all(p.by_column()["monitoring"] == 0 for p in v.values())  # the naive function has none


def test_break_even_hits_from_prices() -> None:
    # 11 ms at 1,769 MB saved per hit (~$0.317 per million) less a $0.0625 read: a $0.625 write pays
    # back after ~2.5 hits
    assert cost.break_even_hits(11.0, 1769, SIZES) == pytest.approx(0.625 / (0.3167 - 0.0625), rel=0.01)
    assert cost.break_even_hits(0.1, 1769, SIZES) == float("inf")


def test_fixed_cost_and_break_even_volume() -> None:
    fixed = cost.Fixed(metrics=20, alarms=5)
    items = fixed.items()
    assert items["custom metrics"] == pytest.approx(6.0) and items["alarms"] == pytest.approx(0.5)
    assert items["monitor reports to S3"] == pytest.approx(30 * 24 * 12 * 4 * 0.005 / 1000)
    assert items["idle SQS polls"] == pytest.approx(5 * 3 * 60 * 24 * 30 * 0.4e-6)
    usd = fixed.usd_per_month()
    assert usd == pytest.approx(sum(items.values())) and 6.5 < usd < 12.0
    assert cost.break_even_volume(usd, 0.5, 5.0) == pytest.approx(usd / 4.5 * 1e6)
    assert cost.break_even_volume(usd, 5.0, 0.5) is None


def test_naive_is_one_invocation_per_prediction() -> None:
    path = cost.per_request_lambda("naive", cost.FunctionBill(4, 400.0, 2048))
    assert path.usd_per_million == pytest.approx(0.20 + 0.2 * 16.6667, rel=1e-5)


def _bill(n: int, ms: float, mb: float, **extra: float) -> dict[str, float]:
    return {"invocations": n, "billed_ms": ms, "memory_mb": mb, **extra}


def _sqs_run_json(ms: float = 2000, chunk: float | None = None, **extra: object) -> dict[str, object]:
    batches = [{"batch_size": 5, "texts": 50, "unique_texts": 50, "encoded": 50, "cache_reads": 50}] * 2
    run = {"bill": _bill(2, ms, 1769), "batches": batches, "message_bytes": [20000] * 10, **extra}
    return {**run, "result_chunk_bytes": chunk} if chunk else run


STEADY = {
    "requests": 20000,
    "distinct_texts": 2000,
    "on": {
        "encoded_per_request": 0.1,
        "reads_per_request": 0.1,
        "writes_per_request": 0.05,
        "answer_hit_rate": 0.8,
    },
    "off": {
        "encoded_per_request": 0.6,
        "reads_per_request": 0,
        "writes_per_request": 0,
        "answer_hit_rate": 0,
    },
    "on_admit_all": {
        "encoded_per_request": 0.1,
        "reads_per_request": 0.1,
        "writes_per_request": 0.1,
        "answer_hit_rate": 0.8,
    },
}

#: what a run saved before the new measured inputs (sync probes, five_models, log bytes, latency) looks like
OLD = {
    "item_sizes": {"record": 600, "result_chunk": 1100, "result": None},
    "http": {"requests": 10, "ok": 10, "bill": _bill(10, 500, 1769)},
    "api": {"texts": 100, "post": _bill(1, 300, 1024), "get": _bill(1, 200, 1024)},
    "sqs_unique": _sqs_run_json(),
    "sqs_unique_5": _sqs_run_json(
        3000, 2200, note="unique texts, all five models per text (USD per M texts)"
    ),
    "naive": {"bill": _bill(5, 1000, 2048)},
    "emulator_ms_per_text": 5.0,
    "encode_ms_per_text": 10.0,
    "zipf_steady": STEADY,
    "naive_init_ms": 4000,
    "cold_share": 0.05,
}


def test_paths_from_measured_json_of_an_older_run() -> None:
    """A run saved before the new measured inputs still prices every path it measured; the new rows are
    None (n/a), logs are not measured (n/a, priced 0), the five-model ratio comes from the separate runs."""
    paths = cost.paths_from_measured(OLD)
    raw = cost.paths_from_measured(OLD, own_work=False)
    assert list(paths) == list(cost.PATHS)
    for name in ("gpu_worker", "sqs_zipf_cached", "sync_http_16", "sync_http_5", "sqs_unique_paired"):
        assert paths[name] is None
    for name in ("sync_http", "sync_http_function_url", "sqs_unique", "naive_lambda", "naive_fair_cold"):
        p = paths[name]
        assert p is not None and p.usd_per_million > 0 and not p.log_bytes_measured
        d = p.to_dict()
        assert d["usd_per_million"] == pytest.approx(p.usd_per_million) and d["units"]["log_bytes"] is None
        assert d["by_column"]["logs"] == 0
    assert raw["sqs_unique"].usd_per_million > paths["sqs_unique"].usd_per_million  # type: ignore[union-attr]
    assert paths["sync_http"].usd_per_million - paths["sync_http_function_url"].usd_per_million == (  # type: ignore[union-attr]
        pytest.approx(3.50)
    )
    on, off = paths["sqs_zipf_steady_cached"], paths["sqs_zipf_steady_uncached"]
    assert on is not None and off is not None and on.usd_per_million < off.usd_per_million
    five = paths["sqs_unique_5"]
    assert five is not None and five.models == 5 and "USD per M texts" not in five.note
    on5 = paths["sqs_zipf_steady_cached_5"]
    assert on5 is not None and on5.models == 5 and on5.item_bytes["result_chunk"] == 2200  # its own chunks
    d = cost.derived(OLD, paths)
    assert d["x_cheaper_than_naive_fair"] > 1 and d["zipf_steady_cached_over_uncached"] < 1
    # results, progress, the batch's #meta and cache records (0.23), plus what monitoring writes: all tables
    unique = paths["sqs_unique"]
    assert unique is not None
    monitoring = sum(i.per_text for i in unique.items if i.column == "monitoring" and i.unit == "WRU")
    assert monitoring > 0
    assert d["dynamodb_write_units_per_unique_text"] == pytest.approx(
        10 * 2 / 100 + 2 / 100 + 1 / 100 + monitoring
    )
    one = paths["sqs_unique"]
    assert one is not None and not d["five_models_paired"]
    assert d["five_models_cost_ratio"] == pytest.approx(
        five.usd_per_million_texts / one.usd_per_million_texts
    )
    assert d["five_models_batcher_ms_ratio_median"] is None
    json.dumps(cost.report(OLD))  # what the benchmark stores is JSON


def test_zipf_steady_projects_the_batchers_ms_and_the_counts() -> None:
    run = _run()  # 100 texts, all encoded, 20 ms per text billed
    path = cost.zipf_steady(
        "z", run, STEADY["on"], encode_ms_per_text=12.0, distinct_per_request=0.1, basis=NO_MONITORING
    )
    items = {i.what: i.per_text for i in path.items}
    # 20 ms per text = 8 ms paid by every request + 12 ms per encoded text; 0.1 encoded per request
    assert items["batcher GB-s (2048 MB)"] == pytest.approx(gb(8 + 1.2, 2048))
    assert items["cache record reads (RRU)"] == pytest.approx(0.1 * 0.5)
    assert items["cache record writes (WRU)"] == pytest.approx(0.05)
    assert items["cache records kept"] == pytest.approx(0.05 * 700 / 1e9 * 7 / 30)
    assert items["SendMessageBatch (64 KiB chunks)"] == pytest.approx(4 / 100)  # the queue side as measured
    monitored = cost.zipf_steady("z", run, STEADY["on"], encode_ms_per_text=12.0, distinct_per_request=0.1)
    ledger = {i.what: i.per_text for i in monitored.items}["served-answers ledger writes (WRU)"]
    assert ledger == pytest.approx(cost.Monitoring().ledger_sample * 0.1)  # the stream's distinct texts


def test_paths_from_measured_json_with_the_new_inputs() -> None:
    def probe(texts: int, ms: float, p99: float) -> dict[str, object]:
        return {
            "requests": 10,
            "texts_per_request": texts,
            "ok": 10,
            "bill": _bill(10, ms, 1769, log_bytes=10 * 1500, init_ms=0.0),
            "latency_ms": {"n": 10, "p50": p99 / 2, "p95": p99, "p99": p99, "mean": p99 / 2},
        }

    models = ("logreg", "rf", "hgb", "mlp", "ensemble")
    measured = {
        **OLD,
        "sync": {
            "1": {m: probe(1, 500 + 100 * i, 100 + 10 * i) for i, m in enumerate(models)},
            "16": {m: probe(16, 2000, 400) for m in models},
        },
        "five_models": {
            "rounds": 3,
            "one": _sqs_run_json(1800, log_bytes=4000, latency_ms={"p50": 900, "p99": 1500}),
            "five": _sqs_run_json(2400, 2100, log_bytes=6000, latency_ms={"p50": 1000, "p99": 1700}),
            "per_round": [
                {"one_ms_per_text": 10.0, "five_ms_per_text": 13.0},
                {"one_ms_per_text": 10.0, "five_ms_per_text": 12.0},
                {"one_ms_per_text": 0.0, "five_ms_per_text": 12.0},  # a round that measured nothing
                {"one_ms_per_text": 10.0, "five_ms_per_text": 15.0},
            ],
        },
        "results_storage": {"dynamodb": {"chunk_items": 3}, "s3": {"objects": 3}},  # rendered elsewhere
        "api": {
            "texts": 100,
            "post": _bill(1, 300, 1024, log_bytes=2000),
            "get": _bill(1, 200, 1024, log_bytes=1000),
        },
    }
    paths = cost.paths_from_measured(measured)
    sync, sync16 = paths["sync_http"], paths["sync_http_16"]
    assert sync is not None and sync16 is not None
    assert sync.units()["billed_ms_per_text"][0]["billed_ms"] == pytest.approx(50.0)  # logreg's, not http's
    assert sync.latency_ms is not None and sync.latency_ms["p99"] == 100
    assert sync.units()["log_bytes"] == pytest.approx(1500) and sync.by_column()["logs"] > 0
    assert sync16.units()["billed_ms_per_text"][0]["billed_ms"] == pytest.approx(200 / 16)
    assert sync16.by_column()["front_door"] == pytest.approx(3.50 / 16)
    five = paths["sync_http_5"]
    assert five is not None and five.models == 5
    parts = [
        cost.sync_http(cost.FunctionBill(10, 500 + 100 * i, 1769, log_bytes=15000), texts_per_request=1)
        for i in range(5)
    ]
    assert five.usd_per_million_texts == pytest.approx(sum(p.usd_per_million_texts for p in parts))
    assert five.latency_ms == {"p50": 70.0, "p99": 140.0}  # the slowest model's
    url5, sixteen5 = paths["sync_http_function_url_5"], paths["sync_http_16_5"]
    assert url5 is not None and sixteen5 is not None
    assert five.usd_per_million - url5.usd_per_million == pytest.approx(3.50)
    # the paired rounds: sqs_unique_5 from the five-model variant, sqs_unique_paired from the one-model one
    paired, five_sqs = paths["sqs_unique_paired"], paths["sqs_unique_5"]
    assert paired is not None and five_sqs is not None
    assert five_sqs.item_bytes["result_chunk"] == 2100 and five_sqs.latency_ms == {"p50": 1000, "p99": 1700}
    assert paired.log_bytes_measured and paired.units()["log_bytes"] == pytest.approx(40 + 30)
    d = cost.derived(measured, paths)
    assert d["five_models_paired"] and d["five_models_rounds"] == 3
    assert d["five_models_cost_ratio"] == pytest.approx(
        five_sqs.usd_per_million_texts / paired.usd_per_million_texts
    )
    assert d["five_models_batcher_ms_ratio_median"] == pytest.approx(1.3)  # of 1.3, 1.2, 1.5
    steady5 = paths["sqs_zipf_steady_uncached_5"]
    assert steady5 is not None and steady5.item_bytes["result_chunk"] == 2100 and steady5.latency_ms is None
    report = cost.report(measured)
    json.dumps(report)
    assert report["paths"]["sync_http_16_5"]["models"] == 5


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


def test_the_report_renders_old_and_new_runs() -> None:
    """The cost section, summary.json and the goal rows from an older run (new rows n/a) and from one with
    the new inputs (paired five-model rounds stated); summary.json keeps its keys."""
    from bench.report import cost as section
    from bench.report.goals import cost_goals
    from bench.report.summary import summary_json

    new = {**OLD, "five_models": {"rounds": 2, "one": _sqs_run_json(), "five": _sqs_run_json(2500, 2100)}}
    for measured in (OLD, new):
        data = {
            "sections": {"cost": {"measured": measured, "paths": {"stale": None}}},
            "machine": {"loadavg_at_start": [1.0, 1.0, 1.0]},
            "command": "test",
        }
        section.complete_cost(data)  # the cost model as it stands, applied to the measured inputs
        c = data["sections"]["cost"]
        assert "stale" not in c["paths"] and "recomputed" not in c
        text = "\n".join(section.section(c))
        assert "| sync_http_16 | n/a |" in text and "| gpu_worker | n/a |" in text
        assert "| log B / pred. |" in text and "| monitoring |" in text
        assert ("interleaved rounds on the same texts" in text) == (measured is new)
        summary = summary_json(data)
        usd = summary["usd_per_million"]
        for key in ("sync_http", "sqs_unique", "sqs_unique_5", "naive_fair", "sqs_zipf_steady_cached"):
            assert usd[key] is not None and summary["usd_per_million_as_measured"][key] is not None
        assert usd["gpu_worker"] is None and usd["sync_http_5"] is None
        assert summary["usd_per_million_texts"]["sqs_unique_5"] == pytest.approx(5 * usd["sqs_unique_5"])
        assert summary["five_models_cost_ratio"] > 1 and summary["dynamodb_write_units_per_unique_text"] > 0
        five = next(g for g in cost_goals(data) if "five models" in g[0])
        assert ("interleaved" in five[1]) == (measured is new)
