"""bench.results_storage: the same stream of result chunks as grouped DynamoDB items (served) and as one S3
object per chunk, under moto: both round-trip every result once and in order, the S3 pages follow the
served store's limit/next, and the billed units and dollars match hand-computed figures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench import results_storage as rs
from bench.cost import PRICES, Prices, ddb_item_bytes
from tests.helpers import RESULTS_KEYS, create_table
from tests.unit.test_results_queue import answer
from topicserve.results import BatchPage, ResultChunk, ResultsStore, public
from topicserve.settings import Settings

BUCKET = "results-storage-bench"


@pytest.fixture
def tables(ddb: Any, s3: Any) -> tuple[Any, Any]:
    create_table(ddb, "results", RESULTS_KEYS)
    s3.create_bucket(Bucket=BUCKET)
    return ddb, s3


@pytest.fixture
def s3_store(tables: tuple[Any, Any]) -> Iterator[rs.S3ChunkStore]:
    ddb, s3 = tables
    store = rs.S3ChunkStore("results", BUCKET, ddb=ddb, s3=s3)
    yield store
    store.close()


def stream(n: int, size: int, batch_id: str = "stream") -> list[ResultChunk]:
    return rs.stream_from_results([answer(i) for i in range(n)], chunk_texts=size, batch_id=batch_id)


def pages(store: rs.ChunkStore, batch_id: str, limit: int) -> list[BatchPage]:
    out: list[BatchPage] = []
    after = None
    for _ in range(1000):
        page = store.get_page(batch_id, limit=limit, after=after)
        assert page is not None
        out.append(page)
        after = page.last_request_id
        if after is None:
            return out
    raise AssertionError("pagination never ended")


def store_both(ddb: Any, s3_store: rs.S3ChunkStore, chunks: list[ResultChunk], expected: int) -> ResultsStore:
    served = ResultsStore("results", client=ddb)
    for batch_id, store in (("grouped", served), ("objects", s3_store)):
        store.create_batch(batch_id, expected)
        store.put_chunks([ResultChunk(batch_id, c.chunk, c.results) for c in chunks])
    return served


# -- streams -----------------------------------------------------------------------------------------------
def test_a_stream_is_packed_as_the_api_packs_a_batch() -> None:
    chunks = stream(23, 10)
    assert [c.chunk for c in chunks] == [0, 1, 2]
    assert [len(c.results) for c in chunks] == [10, 10, 3]
    assert [r for c in chunks for r, _ in c.results] == [str(i) for i in range(23)]  # a texts submission
    assert chunks[0].results[0][1] == answer(0)
    default = rs.stream_from_results([answer(i) for i in range(40)])
    assert len(default[0].results) == Settings().chunk_texts


def test_results_read_back_from_a_batch_keep_their_request_ids() -> None:
    read_back = [{"request_id": f"r{i}", **answer(i)} for i in range(3)]
    (chunk,) = rs.stream_from_results(read_back, chunk_texts=15)
    assert chunk.results == tuple((f"r{i}", answer(i)) for i in range(3))


def test_read_chunks_returns_what_a_batch_stored(tables: tuple[Any, Any]) -> None:
    ddb, _ = tables
    served = ResultsStore("results", client=ddb)
    chunks = stream(23, 10, batch_id="done")
    served.create_batch("done", 23)
    served.put_chunks(chunks[::-1])
    assert rs.read_chunks(ddb, "results", "done") == chunks


# -- the S3 adapter ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1, 4, 7, 10, 11, 20, 23, 100])
def test_s3_pages_follow_the_served_store_page_for_page(
    tables: tuple[Any, Any], s3_store: rs.S3ChunkStore, limit: int
) -> None:
    ddb, _ = tables
    chunks = stream(23, 10)  # uneven chunks: 10, 10, 3
    served = store_both(ddb, s3_store, chunks, 23)
    grouped, objects = pages(served, "grouped", limit), pages(s3_store, "objects", limit)
    assert [p.results for p in objects] == [p.results for p in grouped]
    assert [p.last_request_id for p in objects] == [p.last_request_id for p in grouped]
    assert [(p.completed, p.expected, p.status) for p in objects] == [(23, 23, "complete")] * len(objects)
    written = [public({"request_id": r, **res}) for c in chunks for r, res in c.results]
    assert [r for p in objects for r in p.results] == written  # every result once, in order
    assert all(len(p.results) <= limit for p in objects)


def test_a_pending_batch_shows_its_counted_chunks_and_knows_completed_from_meta(
    tables: tuple[Any, Any], s3_store: rs.S3ChunkStore
) -> None:
    ddb, _ = tables
    chunks = stream(23, 10)
    served = store_both(ddb, s3_store, [chunks[2], chunks[0]], 23)
    grouped, objects = served.get_page("grouped", limit=100), s3_store.get_page("objects", limit=100)
    assert grouped is not None and objects is not None
    assert objects.results == grouped.results and objects.last_request_id is None
    assert (objects.completed, objects.expected, objects.status) == (13, 23, "pending")
    assert s3_store.get_page("nothing", limit=10) is None
    with pytest.raises(ValueError):
        s3_store.get_page("objects", limit=10, after="12")


def test_a_redelivered_chunk_overwrites_its_object_and_is_counted_once(tables: tuple[Any, Any]) -> None:
    ddb, s3 = tables
    recorded = rs.Recorder(ddb)
    store = rs.S3ChunkStore("results", BUCKET, ddb=recorded, s3=s3)  # type: ignore[arg-type]
    chunks = stream(23, 10, batch_id="b")
    store.create_batch("b", 23)
    store.put_chunks(chunks[:2])
    store.put_chunks(chunks[1:])  # chunk 1 again: the group's count fails, then one at a time
    page = store.get_page("b", limit=100)
    store.close()
    assert page is not None and page.completed == 23 and len(page.results) == 23
    updates = [c for c in recorded.calls if c.op == "update_item"]
    assert [c.response is None for c in updates] == [False, True, True, False]  # failed ones still bill
    assert len(s3.list_objects_v2(Bucket=BUCKET)["Contents"]) == 3


# -- the measurement ---------------------------------------------------------------------------------------
def test_run_stores_the_stream_both_ways_and_counts_their_units(tables: tuple[Any, Any]) -> None:
    ddb, s3 = tables
    chunks = stream(60, 15)
    out = rs.run(ddb, s3, "results", BUCKET, chunks, rounds=2)  # raises if a way reads back anything else
    assert out["stream"]["texts"] == 60 and out["stream"]["chunks"] == 4
    assert out["stream"]["chunk_texts_max"] == 15 and out["rounds"] == 2
    grouped, objects = (out["variants"][v] for v in rs.VARIANTS)
    # each chunk is under 1 KiB: create #meta 1 + per chunk (item 1 + #meta update 1)
    assert grouped["units_per_text"]["wru"] * 60 == pytest.approx(1 + 4 + 4)
    assert grouped["units_per_text"]["rru"] * 60 == pytest.approx(2)  # #meta GetItem + one Query
    assert objects["units_per_text"]["wru"] * 60 == pytest.approx(1 + 4)
    assert objects["units_per_text"]["rru"] * 60 == pytest.approx(1)
    assert objects["units_per_text"]["s3_put"] * 60 == pytest.approx(4)
    assert objects["units_per_text"]["s3_get"] * 60 == pytest.approx(4)
    assert objects["units_per_text"]["s3_list"] == 0  # keys come from #meta's done set
    assert objects["units_per_text"]["s3_bytes"] * 60 == pytest.approx(
        out["stream"]["chunk_payload_bytes_mean"] * 4
    )
    for figures in (grouped, objects):
        assert len(figures["raw_ms"]["write_per_chunk"]) == 2 * 4 and len(figures["raw_ms"]["page_read"]) == 2
        usd = figures["usd_per_million_texts"]
        assert usd["total"] == pytest.approx(usd["writes"] + usd["reads"] + usd["storage"])
    assert out["choice"]["variant"] == "grouped_items"  # 4 PUTs cost 32 write units; these chunks need 4
    assert out["break_even"]["write_chunk_bytes"] == 8192
    assert ddb.scan(TableName="results")["Count"] == 0  # cleaned up
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_several_chunks_per_write_share_one_meta_update(tables: tuple[Any, Any]) -> None:
    ddb, s3 = tables
    out = rs.run(ddb, s3, "results", BUCKET, stream(60, 15), rounds=1, chunks_per_write=4, limit=7)
    grouped, objects = (out["variants"][v]["units_per_text"] for v in rs.VARIANTS)
    assert grouped["wru"] * 60 == pytest.approx(1 + 4 + 1)
    assert objects["wru"] * 60 == pytest.approx(1 + 1)
    assert out["variants"]["s3_objects"]["pages_per_read"] == 9  # ceil(60 / 7)


# -- pure arithmetic ---------------------------------------------------------------------------------------
def call(op: str, response: dict[str, Any] | None = None, **params: Any) -> rs.Call:
    return rs.Call(op, params, response)


def item(key: str, blob: int) -> dict[str, Any]:
    return {"batch_id": {"S": "b"}, "request_id": {"S": key}, "r": {"B": b"\0" * blob}}


def test_tally_bills_each_call_as_aws_does() -> None:
    meta = {"batch_id": {"S": "b"}, "request_id": {"S": "#meta"}, "expected": {"N": "60"}}
    assert ddb_item_bytes(meta) == 9 + 15 + 10  # names + values; 60 -> 1 + 1
    big, small = item("c#000000", 1500), item("c#000001", 10)
    sizes = {"#meta": 2100, "c#000000": ddb_item_bytes(big), "c#000001": 5000}
    calls = [
        call("put_item", {}, Item=meta),  # 1 WRU
        call(  # 2 WRU: the small item was left unprocessed (billed when sent again)
            "batch_write_item",
            {"UnprocessedItems": {"t": [{"PutRequest": {"Item": small}}]}},
            RequestItems={"t": [{"PutRequest": {"Item": big}}, {"PutRequest": {"Item": small}}]},
        ),
        call("update_item", None, Key={"request_id": {"S": "#meta"}}),  # failed: 3 WRU at 2,100 B
        call("get_item", {"Item": meta}, ConsistentRead=True),  # 1 RRU (2,100 B)
        call("get_item", {}),  # a miss, eventually consistent: 0.5
        # a Query sums the full items it read: 1,528 + 5,000 (projected, still billed in full) -> 2 RRU
        call("query", {"Items": [big, {"request_id": {"S": "c#000001"}}]}, ConsistentRead=True),
        call("put_object", {}, Key="k1", Body=b"x" * 100),
        call("put_object", {}, Key="k2", Body=b"x" * 300),
        *[call("get_object", {}) for _ in range(3)],
        call("list_objects_v2", {}),
    ]
    assert ddb_item_bytes(big) == 9 + 18 + 1 + 1500
    assert rs.tally(calls, sizes) == rs.Units(wru=6, rru=3.5, s3_put=2, s3_get=3, s3_list=1)
    assert rs.written_objects(calls) == {"k1": 100, "k2": 300}
    assert rs.written_items(calls) == {"#meta": 34, "c#000000": 1528, "c#000001": ddb_item_bytes(small)}
    assert rs.stored({"#meta": 34, "c#000000": 1528}, {"k1": 100}) == rs.Units(
        ddb_bytes=34 + 1528 + 200, s3_bytes=100
    )
    with pytest.raises(ValueError, match="no billing rule"):
        rs.tally([call("scan", {})], sizes)


def test_dollars_per_million_texts_by_hand() -> None:
    per_text = rs.Units(
        wru=0.15, rru=1 / 30, s3_put=0.1, s3_get=0.2, s3_list=0.05, ddb_bytes=1000, s3_bytes=2000
    )
    usd = rs.usd_per_million(per_text, ttl_seconds=30 * 24 * 3600)  # one month, as bench.cost counts it
    assert usd["writes"] == pytest.approx(0.15 * 0.625 + 0.1 * 5.0)
    assert usd["reads"] == pytest.approx(0.125 / 30 + 0.2 * 0.4 + 0.05 * 5.0)
    assert usd["storage"] == pytest.approx((1000 * 0.25 + 2000 * 0.023) / 1e9 * 1e6)
    assert usd["total"] == pytest.approx(usd["writes"] + usd["reads"] + usd["storage"])
    assert rs.storage_usd(1e9, 0.25, 24 * 3600) == pytest.approx(0.25 / 30)  # a GB for a day


def test_break_even_chunk_bytes() -> None:
    assert rs.break_even_chunk_bytes() == 8192  # a PUT ($5 per M) is 8 write units ($0.625 per M)
    ten = Prices(s3_put=10 * PRICES.ddb_write_unit)
    assert rs.break_even_chunk_bytes(ten) == 10 * 1024
    # with a GET and a day's storage: up to 8 KiB an item (8 WRU + 2 RRU = $5.25 per M) beats PUT + GET
    # ($5.40); from 8,193 B it takes 9 WRU ($5.875)
    day = 24 * 3600
    assert rs.break_even_total_bytes(day) == 8193
    assert rs.chunk_usd(8192, day)["grouped_items"] < rs.chunk_usd(8192, day)["s3_objects"]
    assert rs.chunk_usd(8193, day)["s3_objects"] < rs.chunk_usd(8193, day)["grouped_items"]
    assert rs.break_even_total_bytes(day, Prices(s3_put=1.0)) is None
    assert rs.break_even_total_bytes(day, Prices(s3_put=0.0, s3_get=0.0)) == 1


def figures(total: float, write_ms: float, read_ms: float) -> dict[str, Any]:
    usd = {"writes": total * 0.9, "reads": total * 0.1, "storage": 0.0, "total": total}
    return {"usd_per_million_texts": usd, "write_ms_per_chunk_p50": write_ms, "page_read_ms_p50": read_ms}


def test_the_choice_is_the_cheaper_way_and_says_when_latency_is_not_comparable() -> None:
    choice = rs.choose({"grouped_items": figures(1.0, 10, 10), "s3_objects": figures(4.0, 15, 18)})
    assert choice["variant"] == "grouped_items" and choice["latency_comparable"]
    assert "4.0x" in choice["reason"] and "mostly writes" in choice["reason"]
    slow = rs.choose({"grouped_items": figures(2.0, 10, 10), "s3_objects": figures(1.0, 10, 30)})
    assert slow["variant"] == "s3_objects" and not slow["latency_comparable"]
    assert "page read p50 is over 2x slower" in slow["reason"]


def test_the_report_shows_both_ways_of_each_stream_and_the_choice(tables: tuple[Any, Any]) -> None:
    from bench.report.results_storage import section

    ddb, s3 = tables
    out = rs.run(ddb, s3, "results", BUCKET, stream(30, 15), rounds=1)
    text = "\n".join(section({"one_model": out}))
    assert "one model per text: grouped DynamoDB items (served)" in text
    assert "one model per text: S3 object per chunk" in text
    assert f"**{out['choice']['variant']}**" in text and "8,192 B a chunk" in text
