"""What a million predictions cost at AWS prices, from what the benchmark measured.

Pure arithmetic (no I/O), unit-tested in tests/unit/test_bench_cost.py. The cloud half of the benchmark
(bench/cloud/billing.py) supplies the measured inputs: billed durations from the functions' REPORT lines,
memory sizes from the deployed configuration, message and item sizes from what was really sent and
stored, batch statistics from the batcher's own per-batch log. This module turns them into billed units
per prediction and dollars, so every figure in the cost table can be traced to a line item.

Billing rules applied (us-east-1 list prices, ../shared/DESIGN.md section 5):

* Lambda: $0.20 per million requests plus $0.0000166667 per GB-second (x86); each invocation's billed
  duration is its duration plus any init, rounded *up* to the millisecond, times the configured memory.
* API Gateway REST API: $3.50 per million requests.
* SQS: $0.40 per million requests, where every 64 KiB chunk of one call's payload is a request: a
  SendMessageBatch of ten 10 KiB messages is 2 requests. ReceiveMessage and DeleteMessageBatch take at
  most 10 messages per call, so the event source mapping makes at least ``ceil(B / 10)`` of each per
  batch of ``B`` messages.
* DynamoDB on demand: $0.625 per million write request units (1 per KiB of item, rounded up per item)
  and $0.125 per million read request units (1 per 4 KiB of item for a strongly consistent read, half
  for an eventually consistent one; a miss still costs the minimum; a Query rounds the *sum* of the
  items it read up to 4 KiB). A COUNT query is billed as if it read the items it counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SQS_CHUNK_BYTES = 64 * 1024
SQS_MAX_BATCH = 10  # SendMessageBatch / ReceiveMessage / DeleteMessageBatch entries per call
DDB_WRITE_UNIT_BYTES = 1024
DDB_READ_UNIT_BYTES = 4096
MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """USD per unit (us-east-1 list prices, x86)."""

    lambda_request: float = 0.20 / MILLION
    lambda_gb_second: float = 0.0000166667
    rest_api_request: float = 3.50 / MILLION
    sqs_request: float = 0.40 / MILLION
    ddb_write_unit: float = 0.625 / MILLION
    ddb_read_unit: float = 0.125 / MILLION


PRICES = Prices()


# -- billed units -------------------------------------------------------------------------------------------
def billed_ms(duration_ms: float, init_ms: float | None = None) -> int:
    """Lambda's billed duration: duration plus init (billed since August 2025), rounded up to 1 ms."""
    return math.ceil(duration_ms + (init_ms or 0.0))


def gb_seconds(billed: float, memory_mb: float) -> float:
    """GB-seconds of ``billed`` milliseconds at ``memory_mb`` (Lambda's GB is 1,024 MB)."""
    return billed / 1000 * memory_mb / 1024


def sqs_requests(call_payload_bytes: Iterable[int]) -> int:
    """Billed SQS requests of some calls: each call is one request per started 64 KiB chunk (min 1)."""
    return sum(max(1, math.ceil(b / SQS_CHUNK_BYTES)) for b in call_payload_bytes)


def sqs_batch_payloads(message_bytes: Sequence[int], per_call: int = SQS_MAX_BATCH) -> list[int]:
    """Payload bytes of each batch call when ``message_bytes`` go out (or come in) ``per_call`` at a time."""
    return [sum(message_bytes[i : i + per_call]) for i in range(0, len(message_bytes), per_call)]


def ddb_item_bytes(item: Mapping[str, Any]) -> int:
    """Size of an item in DynamoDB's wire format (``{"name": {"S": ...}}``) as DynamoDB bills it:
    attribute names plus values (strings as UTF-8, binary as bytes, numbers ~1 byte per 2 digits + 1)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: Mapping[str, Any]) -> int:
    (kind, v), *_ = value.items()
    if kind == "S":
        return len(str(v).encode())
    if kind == "B":
        return len(v) if isinstance(v, bytes | bytearray) else len(str(v))
    if kind == "N":
        digits = len(str(v).lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "BOOL" or kind == "NULL":
        return 1
    if kind in ("L", "M"):
        inner = v if kind == "L" else list(v.values())
        names = 0 if kind == "L" else sum(len(k.encode()) for k in v)
        return 3 + names + sum(_value_bytes(x) + 1 for x in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(_value_bytes({kind[0]: x}) for x in v)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def write_units(item_bytes: float) -> int:
    """Write request units of one item write (1 per KiB, rounded up; at least 1)."""
    return max(1, math.ceil(item_bytes / DDB_WRITE_UNIT_BYTES))


def read_units(item_bytes: float, *, consistent: bool) -> float:
    """Read request units of one item read by GetItem / BatchGetItem (per item; a miss costs the minimum)."""
    units = max(1, math.ceil(item_bytes / DDB_READ_UNIT_BYTES))
    return units if consistent else units / 2


def query_read_units(total_bytes: float, *, consistent: bool) -> float:
    """Read request units of a Query: the items' summed size rounded up to 4 KiB (at least one unit)."""
    units = max(1, math.ceil(total_bytes / DDB_READ_UNIT_BYTES))
    return units if consistent else units / 2


# -- line items and paths ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineItem:
    """One billed quantity per prediction and its unit price."""

    service: str  # "lambda", "api_gateway", "sqs", "dynamodb"
    what: str
    per_prediction: float  # billed units per prediction
    unit_usd: float

    @property
    def usd_per_million(self) -> float:
        return self.per_prediction * self.unit_usd * MILLION


@dataclass
class PathCost:
    """The line items of one serving path; ``note`` says what was measured and what was assumed."""

    name: str
    items: list[LineItem] = field(default_factory=list)
    note: str = ""

    @property
    def usd_per_million(self) -> float:
        return sum(i.usd_per_million for i in self.items)

    def by_service(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for i in self.items:
            out[i.service] = out.get(i.service, 0.0) + i.usd_per_million
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "usd_per_million": self.usd_per_million,
            "by_service": self.by_service(),
            "items": [
                {
                    "service": i.service,
                    "what": i.what,
                    "per_prediction": i.per_prediction,
                    "usd_per_million": i.usd_per_million,
                }
                for i in self.items
            ],
            "note": self.note,
        }


def lambda_items(
    what: str, invocations: float, billed_ms_total: float, memory_mb: float, prices: Prices = PRICES
) -> list[LineItem]:
    """Requests and GB-seconds of a function, per prediction (both arguments already per prediction)."""
    return [
        LineItem("lambda", f"{what} requests", invocations, prices.lambda_request),
        LineItem(
            "lambda",
            f"{what} GB-s ({memory_mb:.0f} MB)",
            gb_seconds(billed_ms_total, memory_mb),
            prices.lambda_gb_second,
        ),
    ]


@dataclass(frozen=True)
class FunctionBill:
    """Measured billing of one function over a window: invocations, summed billed ms, configured memory."""

    invocations: int
    billed_ms: float
    memory_mb: float

    @property
    def billed_ms_per_invocation(self) -> float:
        return self.billed_ms / max(1, self.invocations)


def sync_http(
    predict: FunctionBill,
    *,
    texts_per_request: float,
    ddb_read_units_per_text: float,
    ddb_write_units_per_text: float,
    prices: Prices = PRICES,
) -> PathCost:
    """The synchronous path: each request is one REST API call and one predict invocation."""
    per = 1 / texts_per_request
    return PathCost(
        "sync_http",
        [
            LineItem("api_gateway", "REST API requests", per, prices.rest_api_request),
            *lambda_items("predict", per, predict.billed_ms_per_invocation * per, predict.memory_mb, prices),
            LineItem("dynamodb", "cache reads (RRU)", ddb_read_units_per_text, prices.ddb_read_unit),
            LineItem("dynamodb", "cache writes (WRU)", ddb_write_units_per_text, prices.ddb_write_unit),
        ],
    )


@dataclass(frozen=True)
class BatchStats:
    """What the batcher's per-batch log says about a window: sums over its batches."""

    batches: int
    messages: int  # SQS messages received (= requests = predictions asked for)
    unique_texts: int  # after in-batch dedup
    prediction_hits: int  # answered by the prediction cache (LRU or DynamoDB)
    embedding_hits: int
    encoded: int

    @classmethod
    def from_log(cls, batches: Sequence[Mapping[str, Any]]) -> BatchStats:
        def total(key: str) -> int:
            return int(sum(b.get(key, 0) or 0 for b in batches))

        return cls(
            batches=len(batches),
            messages=total("batch_size"),
            unique_texts=total("unique_texts"),
            prediction_hits=total("prediction_hits"),
            embedding_hits=total("embedding_hits"),
            encoded=total("encoded"),
        )


@dataclass(frozen=True)
class ItemSizes:
    """Measured item sizes (bytes) of the tables a prediction touches. The defaults stand in for a table
    the run left empty: what its item holds (384 float32 + key + TTL for an embedding, 20 float32 + key
    for a prediction, a ~600-byte JSON result, the batch's small #meta item)."""

    embedding: float = 1700.0
    prediction: float = 250.0
    result: float = 600.0
    meta: float = 100.0


def batcher_ddb_items(
    stats: BatchStats, sizes: ItemSizes, *, caches: bool, prices: Prices = PRICES
) -> list[LineItem]:
    """The batcher's DynamoDB units per prediction, from its per-batch counts.

    Every cache lookup is counted as a DynamoDB read (eventually consistent), although the in-process
    LRU answers some of them for free: an upper bound on the Zipf stream, exact on unique texts.
    Prediction lookups: one per unique text; embedding lookups: one per prediction miss; writes: one
    embedding per text encoded and one prediction per prediction miss; results: one row per request.
    """
    n = max(1, stats.messages)
    items = [
        LineItem(
            "dynamodb",
            "result writes (WRU)",
            stats.messages * write_units(sizes.result) / n,
            prices.ddb_write_unit,
        )
    ]
    if caches:
        misses = stats.unique_texts - stats.prediction_hits
        reads = stats.unique_texts * read_units(sizes.prediction, consistent=False) + misses * read_units(
            sizes.embedding, consistent=False
        )
        writes = stats.encoded * write_units(sizes.embedding) + misses * write_units(sizes.prediction)
        items += [
            LineItem("dynamodb", "cache reads (RRU)", reads / n, prices.ddb_read_unit),
            LineItem("dynamodb", "cache writes (WRU)", writes / n, prices.ddb_write_unit),
        ]
    return items


@dataclass(frozen=True)
class ApiBill:
    """The API function's side of the SQS path, per client submission of ``texts_per_submit`` texts:
    POST /v1/batches (enqueue) and one GET /v1/batches/{id} page with every result."""

    post: FunctionBill
    get: FunctionBill
    texts_per_submit: int


def sqs_path(
    name: str,
    batcher: FunctionBill,
    stats: BatchStats,
    api: ApiBill,
    message_bytes: Sequence[int],
    sizes: ItemSizes,
    *,
    caches: bool,
    prices: Prices = PRICES,
) -> PathCost:
    """The asynchronous path, per prediction: the client's POST and GET through the REST API and the api
    function, SendMessageBatch chunks, the event source mapping's receives and deletes, the batcher's
    invocations and its DynamoDB units, the result page reads."""
    n = max(1, stats.messages)
    k = api.texts_per_submit
    payloads = sqs_batch_payloads(list(message_bytes))
    sends = sqs_requests(payloads) / max(1, len(message_bytes))
    mean_batch = stats.messages / max(1, stats.batches)
    calls_per_batch = math.ceil(mean_batch / SQS_MAX_BATCH)
    # a receive carries the same bodies as the sends (64 KiB chunks) in calls of at most 10 messages; a
    # delete carries receipt handles only
    receives = max(sends, stats.batches * calls_per_batch / n)
    deletes = stats.batches * calls_per_batch / n
    page_read = 2 * query_read_units(k * sizes.result, consistent=True) + read_units(
        sizes.meta, consistent=True
    )  # the page's Query, the COUNT query over the same items, the #meta GetItem
    return PathCost(
        name,
        [
            LineItem("api_gateway", "REST API requests (POST + GET)", 2 / k, prices.rest_api_request),
            *lambda_items(
                "api",
                2 / k,
                (api.post.billed_ms_per_invocation + api.get.billed_ms_per_invocation) / k,
                api.post.memory_mb,
                prices,
            ),
            LineItem(
                "dynamodb", "batch #meta write (WRU)", write_units(sizes.meta) / k, prices.ddb_write_unit
            ),
            LineItem("dynamodb", "result page reads (RRU)", page_read / k, prices.ddb_read_unit),
            LineItem("sqs", "SendMessageBatch (64 KiB chunks)", sends, prices.sqs_request),
            LineItem("sqs", "ReceiveMessage (event source mapping)", receives, prices.sqs_request),
            LineItem("sqs", "DeleteMessageBatch (event source mapping)", deletes, prices.sqs_request),
            *lambda_items(
                "batcher", batcher.invocations / n, batcher.billed_ms / n, batcher.memory_mb, prices
            ),
            *batcher_ddb_items(stats, sizes, caches=caches, prices=prices),
        ],
    )


def per_request_lambda(name: str, fn: FunctionBill, prices: Prices = PRICES) -> PathCost:
    """One invocation per prediction and nothing else (the naive peer, invoked directly: no REST API is
    counted, so it is if anything cheaper than a real deployment of it)."""
    return PathCost(name, lambda_items(name, 1.0, fn.billed_ms_per_invocation, fn.memory_mb, prices))


# -- from the benchmark's results ----------------------------------------------------------------------------
def _fb(b: Mapping[str, Any]) -> FunctionBill:
    return FunctionBill(int(b["invocations"]), float(b["billed_ms"]), float(b["memory_mb"]))


def paths_from_measured(m: Mapping[str, Any], prices: Prices = PRICES) -> dict[str, PathCost | None]:
    """Every path's cost from the ``measured`` dict the benchmark saves (sections.cost.measured); a path
    whose measurement is missing is None. Shared by the benchmark and the report, so the report can be
    regenerated from the JSON alone."""
    sizes = ItemSizes(**{k: v for k, v in m["item_sizes"].items() if v is not None})
    out: dict[str, PathCost | None] = {}

    http = m.get("http")
    if http and http["bill"]["invocations"]:
        # unique texts, caches on: a prediction lookup and an embedding lookup miss (eventually consistent),
        # then an embedding and a prediction written
        reads = read_units(sizes.prediction, consistent=False) + read_units(sizes.embedding, consistent=False)
        writes = write_units(sizes.embedding) + write_units(sizes.prediction)
        out["sync_http"] = sync_http(
            _fb(http["bill"]),
            texts_per_request=1,
            ddb_read_units_per_text=reads,
            ddb_write_units_per_text=writes,
            prices=prices,
        )
        out["sync_http"].note = "one text per request, unique texts, caches on (as deployed)"
    else:
        out["sync_http"] = None

    api = m.get("api")
    api_bill = (
        ApiBill(_fb(api["post"]), _fb(api["get"]), int(api["texts"]))
        if api and api.get("post") and api["post"]["invocations"] and api["get"]["invocations"]
        else None
    )
    for name, caches in (("sqs_unique", True), ("sqs_zipf_cached", True), ("sqs_zipf_uncached", False)):
        run = m.get(name)
        if not run or api_bill is None or not run["bill"]["invocations"]:
            out[name] = None
            continue
        stats = BatchStats.from_log(run["batches"])
        out[name] = sqs_path(
            name,
            _fb(run["bill"]),
            stats,
            api_bill,
            run["message_bytes"],
            sizes,
            caches=caches,
            prices=prices,
        )
        out[name].note = run.get("note", "")

    naive = m.get("naive")
    out["naive_lambda"] = (
        per_request_lambda("naive_lambda", _fb(naive["bill"]), prices)
        if naive and naive["bill"]["invocations"]
        else None
    )
    if out["naive_lambda"] is not None:
        out["naive_lambda"].note = "warm, one text per request, invoked directly (no REST API counted)"
    out["gpu_worker"] = None  # no GPU measured on this machine
    return out
