"""Where a batch's results are kept: grouped DynamoDB items (served) or one S3 object per chunk, measured.

The cost issue asks whether results should be stored per chunk as S3 objects, as SageMaker Batch Transform
and Async Inference write their outputs, or as the compact grouped items ``topicserve.results`` serves. This
module stores ONE stream of result chunks both ways, interleaved (the two alternate in order, round after
round, each round under a fresh batch id), reads every page back, checks that each way returns every
result exactly once and in order, and counts what AWS would bill for it:

1. ``grouped_items``: the served :class:`topicserve.results.ResultsStore` itself (``create_batch``,
   ``put_chunks``, ``get_page``): one item per chunk, ``r`` = zlib(JSON results), and one conditional
   ``#meta`` update per write counting the chunks; a page is the ``#meta`` GetItem and a Query.
2. ``s3_objects``: :class:`S3ChunkStore`, an adapter kept here because it is a measured alternative, not
   served code. Each chunk is one object holding the same compressed payload under
   ``<prefix>/<batch_id>/c#000001``; progress stays in DynamoDB exactly as today (the ``#meta`` item and
   its conditional count), because S3 cannot count atomically (there is no conditional increment; a
   read-modify-write of a progress object loses counts when two batchers finish at once) and ``GET
   /v1/batches/{id}`` must know ``completed`` without reading the whole batch. A page is the ``#meta``
   GetItem plus one GET per chunk on the page, the chunk keys computed from the ``done`` set that
   ``#meta`` already holds (the chunk numbers counted; numbers are fixed at submission) rather than
   listed: a ListObjectsV2 costs as much as a PUT (12.5 GETs), adds a round trip before the GETs can
   start, and would show chunks written but not yet counted, so a page could hold results that
   ``completed`` does not include. The object is written before its number is counted and S3 reads are
   strongly consistent, so every counted chunk can be read.

Billed units are counted from the calls each way really made (a recording wrapper around the caller's
clients): DynamoDB write units from the sizes of the items written (``bench.cost.ddb_item_bytes``, the
``#meta`` updates at the item's final size, which only grows), read units of each GetItem and Query from
the full sizes of the items they read (a projection does not lower the bill), S3 requests one by one, and
the bytes kept for ``Settings.results_ttl_seconds``. Wall times under an emulator say little about AWS;
the units are the point, the times only guard against a choice that would be much slower.

The benchmark calls :func:`run` with its own clients (LocalStack); the unit tests call it under moto.
The pricing, break-even and choice arithmetic are small pure functions (the first section), apart from
the I/O, so they are tested on hand-computed figures.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from botocore.exceptions import ClientError

from bench.common import say
from bench.cost import (
    DDB_ITEM_OVERHEAD_BYTES,
    DDB_READ_UNIT_BYTES,
    DDB_WRITE_UNIT_BYTES,
    GB,
    MILLION,
    MONTH_SECONDS,
    PRICES,
    Prices,
    ddb_item_bytes,
    query_read_units,
    read_units,
    write_units,
)
from topicserve.dynamo import partition
from topicserve.requests import DEFAULT_PAGE_LIMIT, QueuedRequest, pack_chunks
from topicserve.results import (
    CHUNK_PREFIX,
    META,
    BatchPage,
    ResultChunk,
    ResultsStore,
    chunk_key,
    pack_results,
    parse_position,
    public,
    unpack_results,
)
from topicserve.settings import Settings

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

    from topicserve.aws import DynamoDBClient, S3Client

GROUPED, S3 = "grouped_items", "s3_objects"
VARIANTS = (GROUPED, S3)
#: the cheaper way must not be more than this many times slower at p50 (write or page read) to be chosen
#: on cost alone; beyond it the reason says so
LATENCY_TOLERANCE = 2.0
#: the largest DynamoDB item: where the break-even search stops
DDB_MAX_ITEM_BYTES = 400 * 1024


# -- pure arithmetic -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Units:
    """Billed quantities: DynamoDB request units, S3 requests, bytes kept (DynamoDB's with its overhead)."""

    wru: float = 0.0
    rru: float = 0.0
    s3_put: float = 0.0
    s3_get: float = 0.0
    s3_list: float = 0.0
    ddb_bytes: float = 0.0
    s3_bytes: float = 0.0

    def __add__(self, other: Units) -> Units:
        return Units(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)}
        )

    def per(self, n: float) -> Units:
        """Each quantity divided by ``n`` (texts, rounds)."""
        return Units(**{f.name: getattr(self, f.name) / n for f in dataclasses.fields(self)})


def storage_usd(stored_bytes: float, gb_month: float, ttl_seconds: float) -> float:
    """What ``stored_bytes`` kept for ``ttl_seconds`` cost (GB-months, as bench.cost counts them)."""
    return stored_bytes / GB * gb_month * ttl_seconds / MONTH_SECONDS


def usd_per_million(per_text: Units, ttl_seconds: float, prices: Prices = PRICES) -> dict[str, float]:
    """$ per million texts of ``per_text`` units: writes (WRU, PUTs), one full read (RRU, GETs, LISTs) and
    storage for the results' lifetime."""
    writes = per_text.wru * prices.ddb_write_unit + per_text.s3_put * prices.s3_put
    reads = (
        per_text.rru * prices.ddb_read_unit
        + per_text.s3_get * prices.s3_get
        + per_text.s3_list * prices.s3_list
    )
    storage = storage_usd(per_text.ddb_bytes, prices.ddb_storage_gb_month, ttl_seconds) + storage_usd(
        per_text.s3_bytes, prices.s3_storage_gb_month, ttl_seconds
    )
    out = {"writes": writes * MILLION, "reads": reads * MILLION, "storage": storage * MILLION}
    out["total"] = sum(out.values())
    return out


def break_even_chunk_bytes(prices: Prices = PRICES) -> float:
    """Chunk bytes at which one S3 PUT costs what the chunk's DynamoDB item write costs: a PUT is worth
    ``s3_put / ddb_write_unit`` write units of 1 KiB each (8 at list prices: 8,192 bytes). Smaller
    chunks are cheaper to write as items, larger ones as objects (both ways pay the same ``#meta``
    update)."""
    return prices.s3_put / prices.ddb_write_unit * DDB_WRITE_UNIT_BYTES


def chunk_usd(chunk_bytes: int, ttl_seconds: float, prices: Prices = PRICES) -> dict[str, float]:
    """One chunk's own cost each way, written once, read once, kept for ``ttl_seconds``: the item's write
    units, its share of a Query (which sums the items it reads before rounding to 4 KiB) and its storage
    with DynamoDB's per-item overhead; or one PUT, one GET and the object's storage. The ``#meta`` item
    is the same both ways and left out."""
    item = (
        write_units(chunk_bytes) * prices.ddb_write_unit
        + chunk_bytes / DDB_READ_UNIT_BYTES * prices.ddb_read_unit
        + storage_usd(chunk_bytes + DDB_ITEM_OVERHEAD_BYTES, prices.ddb_storage_gb_month, ttl_seconds)
    )
    obj = prices.s3_put + prices.s3_get + storage_usd(chunk_bytes, prices.s3_storage_gb_month, ttl_seconds)
    return {GROUPED: item, S3: obj}


def break_even_total_bytes(ttl_seconds: float, prices: Prices = PRICES) -> int | None:
    """The smallest chunk size (bytes, to the byte) from which an S3 object costs no more than a grouped
    item over a chunk's life (:func:`chunk_usd`); None if none up to DynamoDB's 400 KB item limit."""

    def cheaper(b: int) -> bool:
        usd = chunk_usd(b, ttl_seconds, prices)
        return usd[S3] <= usd[GROUPED]

    # Inside one KiB step the item's cost grows faster with the bytes than the object's (its Query share
    # and dearer storage), so its dearest byte is the step's last: find the first step whose last byte
    # S3 wins, then the first byte inside that step.
    kib = DDB_WRITE_UNIT_BYTES
    step = next((k for k in range(1, DDB_MAX_ITEM_BYTES // kib + 1) if cheaper(k * kib)), None)
    if step is None:
        return None
    return next(b for b in range((step - 1) * kib + 1, step * kib + 1) if cheaper(b))


def choose(figures: Mapping[str, Mapping[str, Any]], tolerance: float = LATENCY_TOLERANCE) -> dict[str, Any]:
    """The cheaper way by total $ per million texts; the reason gives both totals and their largest
    term, and says when the cheaper way is more than ``tolerance`` times slower at p50 (write per chunk
    or page read), in which case latency is not comparable and the cost alone should not decide."""
    (cheap, a), (dear, b) = sorted(figures.items(), key=lambda kv: kv[1]["usd_per_million_texts"]["total"])
    ca, cb = a["usd_per_million_texts"], b["usd_per_million_texts"]
    slower = [
        what
        for what, key in (("write", "write_ms_per_chunk_p50"), ("page read", "page_read_ms_p50"))
        if a[key] is not None and b[key] is not None and a[key] > tolerance * b[key]
    ]
    term = max(("writes", "reads", "storage"), key=lambda t: abs(cb[t] - ca[t]))
    reason = (
        f"{cheap} costs ${ca['total']:.4f} per million texts against {dear}'s ${cb['total']:.4f}"
        f" ({cb['total'] / ca['total']:.1f}x), mostly {term} (${ca[term]:.4f} vs ${cb[term]:.4f})"
        if ca["total"] > 0
        else f"{cheap} costs nothing measurable"
    )
    reason += (
        f"; but its {' and '.join(slower)} p50 is over {tolerance:g}x slower: latency not comparable"
        if slower
        else f"; p50 latencies within {tolerance:g}x"
    )
    return {"variant": cheap, "reason": reason, "latency_comparable": not slower}


# -- billed units from recorded calls ------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One client call: its operation, parameters and response (None: it raised, e.g. a failed
    conditional update, which DynamoDB still bills)."""

    op: str
    params: Mapping[str, Any]
    response: Mapping[str, Any] | None


class Recorder:
    """A client that records every call it passes on (thread-safe: list.append), so units are counted from
    what each way really sent and read, not from what it was meant to."""

    def __init__(self, client: Any, calls: list[Call] | None = None) -> None:
        self._client = client
        self.calls: list[Call] = [] if calls is None else calls

    def take(self) -> list[Call]:
        """The calls so far; the log starts afresh."""
        calls, self.calls = self.calls, []
        return calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(**kwargs: Any) -> Any:
            try:
                response = attr(**kwargs)
            except ClientError:
                self.calls.append(Call(name, kwargs, None))
                raise
            self.calls.append(Call(name, kwargs, response))
            return response

        return call


def written_items(calls: Iterable[Call]) -> dict[str, int]:
    """The size of each DynamoDB item put (by sort key; the last write wins), from the requests."""
    sizes: dict[str, int] = {}
    for c in calls:
        if c.op == "put_item":
            sizes[c.params["Item"]["request_id"]["S"]] = ddb_item_bytes(c.params["Item"])
        elif c.op == "batch_write_item":
            for requests in c.params["RequestItems"].values():
                for r in requests:
                    item = r["PutRequest"]["Item"]
                    sizes[item["request_id"]["S"]] = ddb_item_bytes(item)
    return sizes


def written_objects(calls: Iterable[Call]) -> dict[str, int]:
    """The size of each S3 object put (by key; the last write wins)."""
    return {c.params["Key"]: len(c.params["Body"]) for c in calls if c.op == "put_object"}


def tally(calls: Iterable[Call], item_bytes: Mapping[str, int]) -> Units:
    """Billed request units of some calls. ``item_bytes``: the full size of each stored item by sort key,
    for the calls that bill an item they do not carry (an UpdateItem: the larger of the item before and
    after, its final size here; a read with a projection: the full items read)."""
    wru = rru = puts = gets = lists = 0.0

    def size(item: Mapping[str, Any]) -> int:
        key = item.get("request_id", {}).get("S")
        return item_bytes[key] if key in item_bytes else ddb_item_bytes(item)

    for c in calls:
        consistent = bool(c.params.get("ConsistentRead", False))
        if c.op == "put_item":
            wru += write_units(ddb_item_bytes(c.params["Item"]))
        elif c.op == "batch_write_item":
            left = {  # sent again by the next call, billed there
                r["PutRequest"]["Item"]["request_id"]["S"]
                for rs in ((c.response or {}).get("UnprocessedItems") or {}).values()
                for r in rs
            }
            wru += sum(
                write_units(ddb_item_bytes(r["PutRequest"]["Item"]))
                for rs in c.params["RequestItems"].values()
                for r in rs
                if r["PutRequest"]["Item"]["request_id"]["S"] not in left
            )
        elif c.op == "update_item":
            wru += write_units(item_bytes[c.params["Key"]["request_id"]["S"]])
        elif c.op == "get_item":
            item = (c.response or {}).get("Item")
            rru += read_units(size(item) if item else 0, consistent=consistent)
        elif c.op == "query":
            rru += query_read_units(
                sum(size(i) for i in (c.response or {}).get("Items", [])), consistent=consistent
            )
        elif c.op == "put_object":
            puts += 1
        elif c.op == "get_object":
            gets += 1
        elif c.op == "list_objects_v2":
            lists += 1
        else:
            raise ValueError(f"no billing rule for {c.op}")
    return Units(wru=wru, rru=rru, s3_put=puts, s3_get=gets, s3_list=lists)


def stored(item_bytes: Mapping[str, int], object_bytes: Mapping[str, int]) -> Units:
    """Bytes kept: DynamoDB items with their per-item overhead, S3 objects as they are."""
    return Units(
        ddb_bytes=sum(item_bytes.values()) + DDB_ITEM_OVERHEAD_BYTES * len(item_bytes),
        s3_bytes=sum(object_bytes.values()),
    )


# -- the S3 alternative --------------------------------------------------------------------------------------
class ChunkStore(Protocol):
    """What a way of storing results offers the batcher and ``GET /v1/batches/{id}``."""

    def create_batch(self, batch_id: str, expected: int) -> None: ...
    def put_chunks(self, chunks: Sequence[ResultChunk]) -> None: ...
    def get_page(self, batch_id: str, *, limit: int, after: str | None = None) -> BatchPage | None: ...


class S3ChunkStore:
    """Chunks as S3 objects, progress in DynamoDB's ``#meta`` item as served (see the module docstring).

    Writes mirror :meth:`ResultsStore.put_chunks`: the objects first (concurrently when several, as
    ``batch_put`` writes items), then the served store's own conditional count, so a redelivered chunk
    overwrites its object and is never counted twice. Reads return the served store's :class:`BatchPage`
    and page positions (``c#000003`` or ``c#000003|5``), so the API's page tokens would not change.
    """

    def __init__(
        self,
        table: str,
        bucket: str,
        *,
        ddb: DynamoDBClient,
        s3: S3Client,
        prefix: str = "results",
        ttl_seconds: int = 24 * 3600,
        workers: int = 8,
    ) -> None:
        self.table, self.bucket, self.prefix = table, bucket, prefix.strip("/")
        self.ddb, self.s3 = ddb, s3
        self.meta = ResultsStore(table, client=ddb, ttl_seconds=ttl_seconds)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-chunks")

    def close(self) -> None:
        self.pool.shutdown()

    def key(self, batch_id: str, chunk: int) -> str:
        return f"{self.prefix}/{batch_id}/{chunk_key(chunk)}"

    def create_batch(self, batch_id: str, expected: int) -> None:
        self.meta.create_batch(batch_id, expected)

    def put_chunks(self, chunks: Sequence[ResultChunk]) -> None:
        unique = list({(c.batch_id, c.chunk): c for c in chunks}.values())

        def put(c: ResultChunk) -> None:
            self.s3.put_object(
                Bucket=self.bucket, Key=self.key(c.batch_id, c.chunk), Body=pack_results(c.results)
            )

        list(self.pool.map(put, unique) if len(unique) > 1 else map(put, unique))
        self.meta.count_chunks(unique)

    def _get(self, batch_id: str, chunk: int) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=self.key(batch_id, chunk))["Body"].read()
        return body

    def get_page(self, batch_id: str, *, limit: int, after: str | None = None) -> BatchPage | None:
        """Up to ``limit`` results from the position ``after``; None when the batch has no ``#meta``.

        The counted chunk numbers after the position come from ``#meta``; the GETs of a page go out
        together, as many chunks as the batch's mean chunk (``completed / len(done)``) says the page
        needs, and a second wave only if short chunks left it unfilled."""
        meta = self.ddb.get_item(
            TableName=self.table,
            Key={"batch_id": {"S": batch_id}, "request_id": {"S": META}},
            ConsistentRead=True,
        ).get("Item")
        if meta is None:
            return None
        done = sorted(int(n) for n in meta.get("done", {}).get("NS", []))
        completed = int(meta.get("completed", {}).get("N", "0"))
        start, skip = parse_position(after)
        if start is None:
            pending = done
        else:
            number = chunk_number(start)
            pending = [n for n in done if (n >= number if skip else n > number)]
        mean = completed / len(done) if done else 1.0
        results: list[dict[str, Any]] = []

        def page(position: str | None) -> BatchPage:
            return BatchPage(
                batch_id=batch_id,
                expected=int(meta["expected"]["N"]),
                completed=completed,
                created_at=meta["created_at"]["S"],
                results=results,
                last_request_id=position,
            )

        i = 0
        while i < len(pending):
            wave = pending[i : i + max(1, math.ceil((limit - len(results) + skip) / mean))]
            blobs = list(self.pool.map(lambda n: self._get(batch_id, n), wave))  # all in, none left running
            for n, blob in zip(wave, blobs, strict=True):
                i += 1
                rows = unpack_results(blob)
                done_before = min(skip, len(rows))  # results of this chunk returned by earlier pages
                rows, skip = rows[done_before:], 0
                room = limit - len(results)
                results.extend(public({"request_id": r, **res}) for r, res in rows[:room])
                if len(rows) > room:
                    return page(f"{chunk_key(n)}|{done_before + room}")
                if len(results) == limit:
                    return page(chunk_key(n) if i < len(pending) else None)
        return page(None)


def chunk_number(key: str) -> int:
    """The number of a chunk key (``c#000003`` -> 3)."""
    digits = key[len(CHUNK_PREFIX) :]
    if not key.startswith(CHUNK_PREFIX) or not digits.isdigit():
        raise ValueError(f"not a chunk position: {key!r}")
    return int(digits)


# -- streams -------------------------------------------------------------------------------------------------
def stream_from_results(
    results: Sequence[Mapping[str, Any]], *, chunk_texts: int | None = None, batch_id: str = "stream"
) -> list[ResultChunk]:
    """A stream of chunks as a batch of ``results`` would be stored: packed by the API's own
    :func:`topicserve.requests.pack_chunks` (``chunk_texts`` per chunk, default ``Settings.chunk_texts``),
    numbered from 0. A result carrying ``request_id`` (as ``GET /v1/batches`` returns them) keeps it as
    its id, the rest are numbered by position as a ``texts`` submission numbers them."""
    settings = Settings()
    ids = [str(r.get("request_id", i)) for i, r in enumerate(results)]
    answers = {
        rid: {k: v for k, v in r.items() if k != "request_id"} for rid, r in zip(ids, results, strict=True)
    }
    queued = [QueuedRequest(batch_id, rid, "", []) for rid in ids]
    chunks = pack_chunks(
        queued, max_texts=chunk_texts or settings.chunk_texts, max_bytes=settings.max_message_bytes
    )
    return [
        ResultChunk(batch_id, c.chunk, tuple((q.request_id, answers[q.request_id]) for q in c.requests))
        for c in chunks
    ]


def read_chunks(ddb: DynamoDBClient, table: str, batch_id: str) -> list[ResultChunk]:
    """The chunks a finished batch stored in the served results table, in chunk order (real results,
    private answer fields included, as stored)."""
    items = partition(ddb, table, "batch_id", {"S": batch_id})
    return [
        ResultChunk(batch_id, chunk_number(i["request_id"]["S"]), tuple(unpack_results(bytes(i["r"]["B"]))))
        for i in sorted(items, key=lambda i: i["request_id"]["S"])
        if i["request_id"]["S"].startswith(CHUNK_PREFIX)
    ]


# -- the measurement -----------------------------------------------------------------------------------------
@dataclass
class Samples:
    """One way's measurements over the rounds."""

    write_ms: list[float] = field(default_factory=list)  # per chunk
    read_ms: list[float] = field(default_factory=list)  # per page
    pages: int = 0
    units: Units = field(default_factory=Units)


def read_all(store: ChunkStore, batch_id: str, limit: int) -> Iterator[tuple[float, BatchPage]]:
    """Every page of a batch, as a client reads it once, with each page's wall ms."""
    after: str | None = None
    while True:
        started = time.perf_counter()
        page = store.get_page(batch_id, limit=limit, after=after)
        ms = (time.perf_counter() - started) * 1000
        if page is None:
            raise LookupError(f"batch {batch_id} has no #meta item")
        yield ms, page
        after = page.last_request_id
        if after is None:
            return


def _round(
    variant: str,
    store: ChunkStore,
    ddb: DynamoDBClient,
    recorders: Sequence[Recorder],
    table: str,
    chunks: Sequence[ResultChunk],
    *,
    limit: int,
    chunks_per_write: int,
    samples: Samples | None,
) -> list[dict[str, Any]]:
    """Store and read back one salted copy of the stream one way; add to ``samples`` (None: warm-up).
    Returns what the pages held."""
    for r in recorders:
        r.take()
    texts = sum(len(c.results) for c in chunks)
    store.create_batch(chunks[0].batch_id, texts)
    write_ms: list[float] = []
    for k in range(0, len(chunks), chunks_per_write):
        group = chunks[k : k + chunks_per_write]
        started = time.perf_counter()
        store.put_chunks(group)
        write_ms += [(time.perf_counter() - started) * 1000 / len(group)] * len(group)
    writes = [c for r in recorders for c in r.take()]
    meta = ddb.get_item(  # unrecorded: the #meta item's final size, which its updates are billed at
        TableName=table,
        Key={"batch_id": {"S": chunks[0].batch_id}, "request_id": {"S": META}},
        ConsistentRead=True,
    )["Item"]
    item_bytes = {**written_items(writes), META: ddb_item_bytes(meta)}
    pages = list(read_all(store, chunks[0].batch_id, limit))
    reads = [c for r in recorders for c in r.take()]
    if samples is not None:
        samples.write_ms += write_ms
        samples.read_ms += [ms for ms, _ in pages]
        samples.pages += len(pages)
        samples.units = (
            samples.units
            + tally(writes, item_bytes)
            + tally(reads, item_bytes)
            + stored(item_bytes, written_objects(writes))
        )
    say(
        f"  {variant}: {len(chunks)} chunks written at {statistics.median(write_ms):.1f} ms each (p50), "
        f"{len(pages)} page(s) read at {statistics.median(ms for ms, _ in pages):.1f} ms (p50)"
    )
    return [r for _, page in pages for r in page.results]


def _cleanup(
    ddb: DynamoDBClient, s3: S3Client, table: str, bucket: str, prefix: str, batch_ids: Iterable[str]
) -> None:
    """Delete what the rounds wrote (unrecorded): the items would expire, the objects would not."""
    for batch_id in batch_ids:
        items = partition(ddb, table, "batch_id", {"S": batch_id})
        for k in range(0, len(items), 25):
            ddb.batch_write_item(
                RequestItems={
                    table: [
                        {"DeleteRequest": {"Key": {"batch_id": i["batch_id"], "request_id": i["request_id"]}}}
                        for i in items[k : k + 25]
                    ]
                }
            )
        listing: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{prefix}/{batch_id}/"}
        while True:
            listed = s3.list_objects_v2(**listing)
            keys: list[ObjectIdentifierTypeDef] = [{"Key": o["Key"]} for o in listed.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
            if not listed.get("IsTruncated"):
                break
            listing["ContinuationToken"] = listed["NextContinuationToken"]


def p50(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def run(
    ddb_client: DynamoDBClient,
    s3_client: S3Client,
    table: str,
    bucket: str,
    chunks: Sequence[ResultChunk],
    rounds: int = 5,
    *,
    limit: int = DEFAULT_PAGE_LIMIT,
    chunks_per_write: int = 1,
    ttl_seconds: int | None = None,
    prefix: str = "bench-results-storage",
    cleanup: bool = True,
    prices: Prices = PRICES,
) -> dict[str, Any]:
    """Store the stream ``chunks`` (one batch's, any batch id) both ways ``rounds`` times, alternating
    which goes first, after one unmeasured warm-up round of each; read every page back (``limit``
    results a page) and check each way returned every result once, in chunk order. ``table``: a results
    table (partition ``batch_id`` S, sort ``request_id`` S); ``bucket``: an existing S3 bucket.
    ``chunks_per_write``: chunks per ``put_chunks`` call, as a batcher pass stores what its SQS batch
    held (one ``#meta`` update per call). Raises ``AssertionError`` if a way reads back anything else.
    Returns a JSON-able dict (:func:`summarise`)."""
    if not chunks:
        raise ValueError("an empty stream")
    if len({c.chunk for c in chunks}) != len(chunks):
        raise ValueError("chunk numbers repeat: one batch's stream has each number once")
    settings = Settings()
    ttl = settings.results_ttl_seconds if ttl_seconds is None else ttl_seconds
    ordered = sorted(chunks, key=lambda c: c.chunk)
    expected = [public({"request_id": r, **res}) for c in ordered for r, res in c.results]
    ddb_rec, s3_rec = Recorder(ddb_client), Recorder(s3_client)
    ddb = cast("DynamoDBClient", ddb_rec)  # a recording proxy stands in for the client
    s3_store = S3ChunkStore(
        table, bucket, ddb=ddb, s3=cast("S3Client", s3_rec), prefix=prefix, ttl_seconds=ttl
    )
    stores: dict[str, ChunkStore] = {GROUPED: ResultsStore(table, client=ddb, ttl_seconds=ttl), S3: s3_store}
    samples = {v: Samples() for v in VARIANTS}
    salt = uuid.uuid4().hex[:12]
    batch_ids: list[str] = []
    try:
        for r in range(-1, rounds):  # -1: warm-up (connections, first-call paths), not measured
            say(f"results storage round {r + 1}/{rounds}" if r >= 0 else "results storage warm-up")
            for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                batch_id = f"{salt}-{variant}-{r + 1}"
                batch_ids.append(batch_id)
                salted = [dataclasses.replace(c, batch_id=batch_id) for c in ordered]
                got = _round(
                    variant,
                    stores[variant],
                    ddb_client,
                    [ddb_rec, s3_rec],
                    table,
                    salted,
                    limit=limit,
                    chunks_per_write=chunks_per_write,
                    samples=samples[variant] if r >= 0 else None,
                )
                if got != expected:
                    raise AssertionError(
                        f"{variant} read back {len(got)} results, not the {len(expected)} written, in order"
                    )
    finally:
        s3_store.close()
        if cleanup:
            _cleanup(ddb_client, s3_client, table, bucket, prefix, batch_ids)
    return summarise(
        samples,
        ordered,
        rounds=rounds,
        limit=limit,
        chunks_per_write=chunks_per_write,
        ttl_seconds=ttl,
        prices=prices,
    )


def summarise(
    samples: Mapping[str, Samples],
    chunks: Sequence[ResultChunk],
    *,
    rounds: int,
    limit: int,
    chunks_per_write: int,
    ttl_seconds: int,
    prices: Prices = PRICES,
) -> dict[str, Any]:
    """The returned dict: per way, p50 wall ms, units and $ per text; the stream; the break-evens; the
    choice."""
    texts = sum(len(c.results) for c in chunks)
    figures: dict[str, dict[str, Any]] = {}
    for variant, s in samples.items():
        per_text = s.units.per(max(1, rounds) * texts)
        figures[variant] = {
            "write_ms_per_chunk_p50": p50(s.write_ms),
            "page_read_ms_p50": p50(s.read_ms),
            "pages_per_read": s.pages / max(1, rounds),
            "units_per_text": dataclasses.asdict(per_text),
            "usd_per_million_texts": usd_per_million(per_text, ttl_seconds, prices),
            "raw_ms": {"write_per_chunk": s.write_ms, "page_read": s.read_ms},
        }
    payload = [len(pack_results(c.results)) for c in chunks]
    bytes_per_text = sum(payload) / texts
    write_be = break_even_chunk_bytes(prices)
    total_be = break_even_total_bytes(ttl_seconds, prices)
    choice = choose(figures)
    choice["reason"] += (
        f"; S3 PUTs write cheaper only above {write_be:,.0f} B per chunk"
        f" (~{write_be / bytes_per_text:.0f} texts at this stream's {bytes_per_text:.0f} compressed B"
        f" per text; its chunks are {statistics.mean(payload):.0f} B)"
    )
    return {
        "stream": {
            "texts": texts,
            "chunks": len(chunks),
            "chunk_texts_max": max(len(c.results) for c in chunks),
            "chunk_texts_mean": texts / len(chunks),
            "chunk_payload_bytes_mean": statistics.mean(payload),
            "payload_bytes_per_text": bytes_per_text,
        },
        "rounds": rounds,
        "limit": limit,
        "chunks_per_write": chunks_per_write,
        "ttl_seconds": ttl_seconds,
        "variants": figures,
        "break_even": {
            "write_chunk_bytes": write_be,
            "write_chunk_texts": write_be / bytes_per_text,
            "total_chunk_bytes": total_be,
            "note": "write: one S3 PUT = the chunk item's write units; total: PUT + GET + storage for the TTL"
            " = item write + its Query share + storage; texts at this stream's compressed bytes per text"
            " (larger chunks compress better, so fewer texts would do)",
        },
        "choice": choice,
        "prices": dataclasses.asdict(prices),
    }
