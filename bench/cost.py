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

import dataclasses
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
#: when the list prices above were read (us-east-1; DynamoDB on demand since its November 2024 cut)
PRICES_DATE = "2026-12-06"


# -- billed units -------------------------------------------------------------------------------------------
def billed_ms(duration_ms: float, init_ms: float | None = None) -> int:
    """Lambda's billed duration: duration plus init (billed since August 2025), rounded up to 1 ms."""
    return math.ceil(duration_ms + (init_ms or 0.0))


def gb_seconds(billed: float, memory_mb: float) -> float:
    """GB-seconds of ``billed`` milliseconds at ``memory_mb`` (Lambda's GB is 1,024 MB)."""
    return billed / 1000 * memory_mb / 1024


def compute_usd_per_million(billed: float, memory_mb: float, prices: Prices = PRICES) -> float:
    """$ per million invocations (or texts) of ``billed`` ms each at ``memory_mb``: duration only."""
    return gb_seconds(billed, memory_mb) * prices.lambda_gb_second * 1e6


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
    front_door: str = "rest_api",
    prices: Prices = PRICES,
) -> PathCost:
    """The synchronous path: each request is one front-door call and one predict invocation. The REST
    API bills every request; a function URL (template parameter FunctionUrls=iam) bills nothing on top of
    the invocation."""
    per = 1 / texts_per_request
    door = (
        [LineItem("api_gateway", "REST API requests", per, prices.rest_api_request)]
        if front_door == "rest_api"
        else []
    )
    return PathCost(
        f"sync_http_{front_door}",
        [
            *door,
            *lambda_items("predict", per, predict.billed_ms_per_invocation * per, predict.memory_mb, prices),
            LineItem("dynamodb", "cache record reads (RRU)", ddb_read_units_per_text, prices.ddb_read_unit),
            LineItem(
                "dynamodb", "cache record writes (WRU)", ddb_write_units_per_text, prices.ddb_write_unit
            ),
        ],
    )


@dataclass(frozen=True)
class BatchStats:
    """What the batcher's per-batch log says about a window: sums over its invocations."""

    batches: int  # invocations
    messages: int  # SQS messages received (chunks of requests, or one request each)
    texts: int  # requests (= texts; predictions = texts x models)
    unique_texts: int  # after in-batch dedup
    prediction_hits: int  # answered from a cache record
    embedding_hits: int
    encoded: int
    cache_reads: int = 0  # records asked of the shared tier (DynamoDB)
    cache_writes: int = 0  # records written to it (admitted)

    @classmethod
    def from_log(cls, batches: Sequence[Mapping[str, Any]]) -> BatchStats:
        def total(key: str) -> int:
            return int(sum(b.get(key, 0) or 0 for b in batches))

        return cls(
            batches=len(batches),
            messages=total("batch_size"),
            texts=total("texts") or total("batch_size"),
            unique_texts=total("unique_texts"),
            prediction_hits=total("prediction_hits"),
            embedding_hits=total("embedding_hits"),
            encoded=total("encoded"),
            cache_reads=total("cache_reads"),
            cache_writes=total("cache_writes"),
        )


@dataclass(frozen=True)
class ItemSizes:
    """Measured item sizes (bytes) of the tables a prediction touches. The defaults stand in for a table
    the run left empty: a cache record (int8 embedding + answers + key + TTL), a chunk of ten compressed
    results, a one-request result, the batch's ``#meta`` item."""

    record: float = 900.0
    result_chunk: float = 700.0
    result: float = 600.0
    meta: float = 150.0


def batcher_ddb_items(stats: BatchStats, sizes: ItemSizes, *, prices: Prices = PRICES) -> list[LineItem]:
    """The batcher's DynamoDB units per text, from its own counts: every shared-tier read (eventually
    consistent, a miss costs the minimum) and write of a cache record, one result item per message (a chunk
    or a single result) and one conditional ``#meta`` update per invocation (its batch's progress)."""
    n = max(1, stats.texts)
    chunked = stats.messages < stats.texts
    result_units = stats.messages * write_units(sizes.result_chunk if chunked else sizes.result)
    meta_units = stats.batches * write_units(sizes.meta) if chunked else 0
    return [
        LineItem("dynamodb", "result item writes (WRU)", result_units / n, prices.ddb_write_unit),
        LineItem("dynamodb", "#meta progress updates (WRU)", meta_units / n, prices.ddb_write_unit),
        LineItem(
            "dynamodb",
            "cache record reads (RRU)",
            stats.cache_reads * read_units(sizes.record, consistent=False) / n,
            prices.ddb_read_unit,
        ),
        LineItem(
            "dynamodb",
            "cache record writes (WRU)",
            stats.cache_writes * write_units(sizes.record) / n,
            prices.ddb_write_unit,
        ),
    ]


def write_units_per_text(stats: BatchStats, sizes: ItemSizes) -> float:
    """DynamoDB write units per text of the bulk path, all tables (results, #meta, cache records)."""
    items = batcher_ddb_items(stats, sizes)
    return sum(i.per_prediction for i in items if "WRU" in i.what)


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
    emulator_ms_per_text: float = 0.0,
    chunk_texts: int = 10,
    prices: Prices = PRICES,
) -> PathCost:
    """The asynchronous path, per text (one model): the client's POST and GET through the REST API and
    the api function, SendMessageBatch chunks, the event source mapping's receives and deletes, the
    batcher's invocations (less the emulator's measured share per text, when given) and its DynamoDB
    units, the result page reads."""
    n = max(1, stats.texts)
    k = api.texts_per_submit
    payloads = sqs_batch_payloads(list(message_bytes))
    sends = sqs_requests(payloads) / n
    mean_batch = stats.messages / max(1, stats.batches)
    calls_per_batch = math.ceil(mean_batch / SQS_MAX_BATCH)
    receives = max(sends, stats.batches * calls_per_batch / n)
    deletes = stats.batches * calls_per_batch / n
    chunk_items = math.ceil(k / chunk_texts)
    page_read = query_read_units(chunk_items * sizes.result_chunk, consistent=True) + read_units(
        sizes.meta, consistent=True
    )  # the page's Query over the chunk items, the #meta GetItem (it holds the count)
    own_ms = max(0.0, batcher.billed_ms - emulator_ms_per_text * n)
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
            *lambda_items("batcher", batcher.invocations / n, own_ms / n, batcher.memory_mb, prices),
            *batcher_ddb_items(stats, sizes, prices=prices),
        ],
    )


def per_request_lambda(name: str, fn: FunctionBill, prices: Prices = PRICES) -> PathCost:
    """One invocation per prediction and nothing else (the naive peer invoked directly)."""
    return PathCost(name, lambda_items(name, 1.0, fn.billed_ms_per_invocation, fn.memory_mb, prices))


def naive_fair(
    fn: FunctionBill,
    *,
    init_ms: float,
    cold_share: float,
    result_bytes: float,
    prices: Prices = PRICES,
) -> dict[str, PathCost]:
    """The naive function as a caller would deploy it, step by step: bare; behind the same front door
    (the REST API); ``naive_fair``: plus a stored result the caller can fetch (one item written, one read),
    the comparison the cost goals use; ``naive_fair_cold``: plus its cold starts at the share the warmers'
    bursty trace measured (init is billed since August 2025; the trace is short and bursty, so this row is
    an upper bound)."""
    bare = per_request_lambda("naive_lambda", fn, prices)
    door = LineItem("api_gateway", "REST API requests", 1.0, prices.rest_api_request)
    stored = [
        LineItem("dynamodb", "result write (WRU)", write_units(result_bytes), prices.ddb_write_unit),
        LineItem(
            "dynamodb", "result read (RRU)", read_units(result_bytes, consistent=True), prices.ddb_read_unit
        ),
    ]
    cold = lambda_items("naive init", 0.0, cold_share * init_ms, fn.memory_mb, prices)[1:]
    return {
        "naive_lambda": bare,
        "naive_front_door": PathCost("naive_front_door", [*bare.items, door]),
        "naive_fair": PathCost("naive_fair", [*bare.items, door, *stored]),
        "naive_fair_cold": PathCost("naive_fair_cold", [*bare.items, door, *stored, *cold]),
    }


def break_even_hits(encode_ms: float, memory_mb: float, sizes: ItemSizes, prices: Prices = PRICES) -> float:
    """Shared-tier hits a record needs to pay for its write: each hit saves an encode and pays a read."""
    saved = gb_seconds(encode_ms, memory_mb) * prices.lambda_gb_second
    read = read_units(sizes.record, consistent=False) * prices.ddb_read_unit
    write = write_units(sizes.record) * prices.ddb_write_unit
    return write / (saved - read) if saved > read else math.inf


def zipf_steady(
    name: str,
    unique: PathCost,
    unique_stats: BatchStats,
    batcher: FunctionBill,
    counts: Mapping[str, float],
    sizes: ItemSizes,
    *,
    encode_ms_per_text: float,
    emulator_ms_per_text: float = 0.0,
    prices: Prices = PRICES,
) -> PathCost:
    """A long Zipf stream's cost per request, projected from the unique run's measured units: its
    per-request items other than the batcher's compute and cache units, plus the batcher's billed ms split
    into what every request pays (parsing, results, hits) and what each encoded text adds, times the
    simulated counts (bench/admission.py: texts encoded, record reads and writes per request)."""
    n = max(1, unique_stats.texts)
    own = max(0.0, batcher.billed_ms - emulator_ms_per_text * n) / n
    fixed_ms = max(0.0, own - encode_ms_per_text * unique_stats.encoded / n)
    billed = fixed_ms + encode_ms_per_text * counts["encoded_per_request"]
    keep = [i for i in unique.items if not i.what.startswith(("batcher GB-s", "cache record"))]
    return PathCost(
        name,
        [
            *keep,
            LineItem(
                "lambda",
                f"batcher GB-s ({batcher.memory_mb:.0f} MB), projected",
                gb_seconds(billed, batcher.memory_mb),
                prices.lambda_gb_second,
            ),
            LineItem(
                "dynamodb",
                "cache record reads (RRU), projected",
                counts["reads_per_request"] * read_units(sizes.record, consistent=False),
                prices.ddb_read_unit,
            ),
            LineItem(
                "dynamodb",
                "cache record writes (WRU), projected",
                counts["writes_per_request"] * write_units(sizes.record),
                prices.ddb_write_unit,
            ),
        ],
    )


@dataclass(frozen=True)
class Fixed:
    """What the deployment costs per month before any prediction (us-east-1 list prices), from the
    template's default schedules; the per-run billed ms are assumptions stated in the report."""

    warmer_runs: float = 30 * 24 * 12  # WarmerSchedule rate(5 minutes)
    warmed_functions: int = 6  # five predict functions + the batcher, WarmerConcurrency 1
    warm_up_billed_ms: float = 5.0  # a warm environment answers {"warmer": true} at once
    warmer_billed_ms: float = 100.0  # the warmer function itself (256 MB)
    gate_runs: float = 30 * 24 * 60  # GateSchedule rate(1 minute)
    monitor_runs: float = 30 * 24 * 12  # MonitorSchedule rate(5 minutes)
    schedule_billed_ms: float = 300.0  # a gate or monitor run (256 MB)
    model_memory_mb: float = 1769.0
    queues: int = 1  # the requests queue (the bulk queue is off by default)
    idle_receives_per_queue: float = 5 * 3 * 60 * 24 * 30  # 5 pollers, a 20 s long poll each
    metrics: int = 40  # custom metric series (EMF names x dimension sets, an estimate)
    alarms: int = 10  # AWS::CloudWatch::Alarm resources in template.yaml

    def items(self, prices: Prices = PRICES) -> dict[str, float]:
        def runs(n: float, ms: float, mb: float) -> float:
            return n * (prices.lambda_request + gb_seconds(ms, mb) * prices.lambda_gb_second)

        return {
            "warmers": runs(self.warmer_runs, self.warmer_billed_ms, 256)
            + runs(self.warmer_runs * self.warmed_functions, self.warm_up_billed_ms, self.model_memory_mb),
            "gate and monitor schedules": runs(
                self.gate_runs + self.monitor_runs, self.schedule_billed_ms, 256
            ),
            "idle SQS polls": self.queues * self.idle_receives_per_queue * prices.sqs_request,
            "custom metrics": self.metrics * 0.30,
            "alarms": self.alarms * 0.10,
        }

    def usd_per_month(self, prices: Prices = PRICES) -> float:
        return sum(self.items(prices).values())


def break_even_volume(fixed_usd_per_month: float, ours: float, naive: float) -> float | None:
    """Predictions per month above which ours (fixed + per-prediction) is cheaper than the naive peer."""
    saving = (naive - ours) / MILLION
    return fixed_usd_per_month / saving if saving > 0 else None


# -- from the benchmark's results ----------------------------------------------------------------------------
def _fb(b: Mapping[str, Any]) -> FunctionBill:
    return FunctionBill(int(b["invocations"]), float(b["billed_ms"]), float(b["memory_mb"]))


def paths_from_measured(
    m: Mapping[str, Any], prices: Prices = PRICES, *, own_work: bool = True
) -> dict[str, PathCost | None]:
    """Every path's cost from the ``measured`` dict the benchmark saves (sections.cost.measured); a path
    whose measurement is missing is None. ``own_work``: the batcher's billed ms less the emulator's own
    measured share per text (as AWS would bill the function's work), else the raw local billed ms.
    Shared by the benchmark and the report, so the report can be regenerated from the JSON alone."""
    sizes = ItemSizes(
        **{
            k: v
            for k, v in m.get("item_sizes", {}).items()
            if v is not None and k in ItemSizes.__dataclass_fields__
        }
    )
    emulator = float(m.get("emulator_ms_per_text") or 0.0) if own_work else 0.0
    chunk_texts = int(m.get("chunk_texts") or 10)
    out: dict[str, PathCost | None] = {}

    http = m.get("http")
    if http and http["bill"]["invocations"]:
        # unique texts: one record read that misses, no write (admission: a first sighting)
        for door in ("rest_api", "function_url"):
            path = sync_http(
                _fb(http["bill"]),
                texts_per_request=1,
                ddb_read_units_per_text=read_units(sizes.record, consistent=False),
                ddb_write_units_per_text=0.0,
                front_door=door,
                prices=prices,
            )
            path.note = f"one text per request, unique texts, caches on, {door.replace('_', ' ')}"
            out["sync_http" if door == "rest_api" else "sync_http_function_url"] = path
    else:
        out["sync_http"] = out["sync_http_function_url"] = None

    api = m.get("api")
    api_bill = (
        ApiBill(_fb(api["post"]), _fb(api["get"]), int(api["texts"]))
        if api and api.get("post") and api["post"]["invocations"] and api["get"]["invocations"]
        else None
    )
    runs: dict[str, tuple[BatchStats, FunctionBill]] = {}
    for name in ("sqs_unique", "sqs_unique_5", "sqs_zipf_cached", "sqs_zipf_uncached"):
        run = m.get(name)
        if not run or api_bill is None or not run["bill"]["invocations"]:
            out[name] = None
            continue
        stats = BatchStats.from_log(run["batches"])
        runs[name] = (stats, _fb(run["bill"]))
        own = run.get("result_chunk_bytes")  # this run's chunks (five models make bigger ones)
        path = sqs_path(
            name,
            _fb(run["bill"]),
            stats,
            api_bill,
            run["message_bytes"],
            dataclasses.replace(sizes, result_chunk=own) if own else sizes,
            emulator_ms_per_text=emulator,
            chunk_texts=chunk_texts,
            prices=prices,
        )
        path.note = run.get("note", "")
        out[name] = path

    steady = m.get("zipf_steady")
    unique = out.get("sqs_unique")
    if steady and unique is not None and "sqs_unique" in runs:
        stats, bill = runs["sqs_unique"]
        encode_ms = float(m.get("encode_ms_per_text") or 0.0)
        for key, counts in (
            ("sqs_zipf_steady_cached", steady["on"]),
            ("sqs_zipf_steady_uncached", steady["off"]),
        ):
            projected = zipf_steady(
                key,
                unique,
                stats,
                bill,
                counts,
                sizes,
                encode_ms_per_text=encode_ms,
                emulator_ms_per_text=emulator,
                prices=prices,
            )
            projected.note = (
                f"projected: {steady['requests']} requests of Zipf(1.1), counts from bench/admission.py"
            )
            out[key] = projected

    naive = m.get("naive")
    if naive and naive["bill"]["invocations"]:
        variants = naive_fair(
            _fb(naive["bill"]),
            init_ms=float(m.get("naive_init_ms") or 0.0),
            cold_share=float(m.get("cold_share") or 0.0),
            result_bytes=sizes.result,
            prices=prices,
        )
        variants["naive_lambda"].note = "warm, one text per request, invoked directly"
        out.update(variants)
    else:
        out.update(dict.fromkeys(("naive_lambda", "naive_front_door", "naive_fair", "naive_fair_cold")))
    out["gpu_worker"] = None  # no GPU measured on this machine
    return out


def derived(m: Mapping[str, Any], paths: Mapping[str, PathCost | None]) -> dict[str, Any]:
    """The cost issue's headline figures from the paths and the measured counts."""
    sizes = ItemSizes(
        **{
            k: v
            for k, v in m.get("item_sizes", {}).items()
            if v is not None and k in ItemSizes.__dataclass_fields__
        }
    )
    out: dict[str, Any] = {}
    run = m.get("sqs_unique")
    if run and run.get("result_chunk_bytes"):
        sizes = dataclasses.replace(sizes, result_chunk=run["result_chunk_bytes"])
    out["dynamodb_write_units_per_unique_text"] = (
        write_units_per_text(BatchStats.from_log(run["batches"]), sizes)
        + write_units(sizes.meta) / max(1, int((m.get("api") or {}).get("texts") or 1))
        if run
        else None
    )
    one, five = paths.get("sqs_unique"), paths.get("sqs_unique_5")
    out["five_models_cost_ratio"] = five.usd_per_million / one.usd_per_million if one and five else None
    fair = paths.get("naive_fair")
    out["x_cheaper_than_naive_fair"] = fair.usd_per_million / one.usd_per_million if one and fair else None
    on, off = paths.get("sqs_zipf_steady_cached"), paths.get("sqs_zipf_steady_uncached")
    out["zipf_steady_cached_over_uncached"] = on.usd_per_million / off.usd_per_million if on and off else None
    encode_ms = m.get("encode_ms_per_text")
    bill = (run or {}).get("bill")
    out["break_even_hits_per_write"] = (
        break_even_hits(float(encode_ms), float(bill["memory_mb"]), sizes) if encode_ms and bill else None
    )
    return out


def report(m: Mapping[str, Any]) -> dict[str, Any]:
    """What the benchmark stores for the cost section: the paths as AWS would bill the functions' own
    work (the emulator's measured share taken out), the same from the raw local billed ms, and the
    derived headline figures."""
    paths = paths_from_measured(m)
    raw = paths_from_measured(m, own_work=False)
    fixed = Fixed()
    ours, fair = paths.get("sqs_unique"), paths.get("naive_fair")
    return {
        "paths": {k: (v.to_dict() if v else None) for k, v in paths.items()},
        "paths_as_measured": {k: (v.to_dict() if v else None) for k, v in raw.items()},
        "derived": derived(m, paths),
        "fixed": {
            "usd_per_month": fixed.usd_per_month(),
            "items": fixed.items(),
            "assumptions": dataclasses.asdict(fixed),
            "break_even_predictions_per_month": break_even_volume(
                fixed.usd_per_month(), ours.usd_per_million, fair.usd_per_million
            )
            if ours and fair
            else None,
        },
        "prices_date": PRICES_DATE,
    }
