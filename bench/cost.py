"""What a million predictions cost at AWS prices, from what the benchmark measured.

Pure arithmetic (no I/O), unit-tested in tests/unit/test_bench_cost.py. The cloud half of the benchmark
(bench/cloud/billing.py) supplies the measured inputs: billed durations from the functions' REPORT lines,
memory sizes from the deployed configuration, message and item sizes from what was really sent and
stored, batch statistics from the batcher's own per-batch log, log bytes from the functions' log groups.
This module turns them into billed units per text and dollars, so every figure in the cost table can be
traced to a line item.

A prediction is one text answered by one model. A path's line items count billed units *per text* (for
every model the text was asked of); its dollars per million are per *prediction* (per text over its
number of models), so a five-model row compares with a one-model row and with the naive function, which
answers one model per request. ``PathCost.usd_per_million_texts`` keeps the per-text figure: the goal "a
text answered by all five models costs <= 1.3x a text answered by one" compares texts.

Billing rules applied (us-east-1 list prices, ../shared/DESIGN.md sections 5 and 6):

* Lambda: $0.20 per million requests plus $0.0000166667 per GB-second (x86); each invocation's billed
  duration is its duration plus any init (billed since August 2025), rounded *up* to the millisecond, times
  the configured memory. The init part is its own column (init amortisation).
* API Gateway REST API: $3.50 per million requests; a function URL adds nothing to the invocation.
* SQS: $0.40 per million requests, where every 64 KiB chunk of one call's payload is a request: a
  SendMessageBatch of ten 10 KiB messages is 2 requests. ReceiveMessage and DeleteMessageBatch take at
  most 10 messages per call, so the event source mapping makes at least ``ceil(B / 10)`` of each per
  batch of ``B`` messages.
* DynamoDB on demand: $0.625 per million write request units (1 per KiB of item, rounded up per item)
  and $0.125 per million read request units (1 per 4 KiB of item for a strongly consistent read, half
  for an eventually consistent one; a miss still costs the minimum; a Query rounds the *sum* of the
  items it read up to 4 KiB). A COUNT query is billed as if it read the items it counted. Storage: $0.25
  per GB-month of item bytes plus 100 bytes of per-item indexing overhead, for as long as the item's TTL
  keeps it (TTL deletion runs some time after expiry, so this is a lower bound).
* S3: PUT and LIST $0.005 per 1,000 requests, GET $0.0004 per 1,000, storage $0.023 per GB-month.
* CloudWatch Logs: $0.50 per GB ingested, every byte of a function's log events (REPORT lines, JSON logs,
  EMF metric blobs alike).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from topicserve.catalogue import MODEL_NAMES
from topicserve.settings import Settings

SQS_CHUNK_BYTES = 64 * 1024
SQS_MAX_BATCH = 10  # SendMessageBatch / ReceiveMessage / DeleteMessageBatch entries per call
DDB_WRITE_UNIT_BYTES = 1024
DDB_READ_UNIT_BYTES = 4096
DDB_ITEM_OVERHEAD_BYTES = 100  # per item, billed as storage (DynamoDB's "item sizes and formats")
GB = 1e9  # storage and log ingestion are billed per (decimal) GB
MONTH_SECONDS = 30 * 24 * 3600
MILLION = 1_000_000
#: the model of the one-model rows (bench.cloud.stack.MODEL)
SYNC_MODEL = "logreg"
#: how long MonitorTable items live: topicserve.monitoring.capture.MonitorStore's and the served-answers
#: ledger's ``ttl_seconds`` default (no setting; tests/unit/test_bench_cost.py checks they agree)
MONITOR_TTL_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class Prices:
    """USD per unit (us-east-1 list prices, x86; read on PRICES_DATE)."""

    lambda_request: float = 0.20 / MILLION
    lambda_gb_second: float = 0.0000166667
    rest_api_request: float = 3.50 / MILLION
    sqs_request: float = 0.40 / MILLION
    ddb_write_unit: float = 0.625 / MILLION
    ddb_read_unit: float = 0.125 / MILLION
    ddb_storage_gb_month: float = 0.25
    s3_put: float = 0.005 / 1000
    s3_get: float = 0.0004 / 1000
    s3_list: float = 0.005 / 1000
    s3_storage_gb_month: float = 0.023
    logs_ingested_gb: float = 0.50
    custom_metric_month: float = 0.30
    alarm_month: float = 0.10


PRICES = Prices()
#: when the list prices above were read (us-east-1; DynamoDB on demand since its November 2024 cut; the S3,
#: CloudWatch Logs and DynamoDB storage prices added on this date)
PRICES_DATE = "2026-12-07"

_DEFAULTS = Settings()  # the declared defaults (no environment read): template.yaml's defaults too


@dataclass(frozen=True)
class Retention:
    """How long stored items are kept, so billed as storage: the serving settings' defaults."""

    results_seconds: float = _DEFAULTS.results_ttl_seconds  # a batch's result items and #meta
    cache_seconds: float = _DEFAULTS.cache_ttl_seconds  # a cache record
    monitor_seconds: float = MONITOR_TTL_SECONDS  # ledger entries and sampled embeddings


@dataclass(frozen=True)
class Monitoring:
    """What serving writes for monitoring per text at the template's defaults (MonitorTable is set on every
    serving function), read from topicserve.monitoring.capture and topicserve.feedback.ledger:

    * the served-answers ledger: one item per sampled distinct text (FeedbackLedgerSample of the texts, by
      hash) and writer, ~190 bytes with one model's answer and ~90 more per other model a writer answered
      it with (a batcher pass answering five models writes it once: one write unit), written once per
      environment;
    * a sampled embedding: one item of 384 half-precision floats (~0.9 KB, 1 write unit) for
      MonitorEmbeddingSample of the distinct texts whose embedding the request had in hand (encoded, or an
      embedding hit); the per-window cap (MonitorEmbeddingCap per environment) only lowers it, so this is
      an upper bound;
    * the window sums: one ADD per model version per flush; the batcher flushes after every batch
      (MONITOR_FLUSH_SECONDS 0), a predict function every MonitorFlushSeconds, which per request depends on
      its rate: ``sync_requests_per_second`` per environment is an assumption;
    * rollout records: one ADD per candidate version per flush, and only while a shadow or canary is
      running; none at the defaults (no candidate), so not priced. Label feedback writes when labels
      arrive, not per prediction. EMF metrics are log lines: they are in the measured log bytes.

    Item sizes are estimates from the item layouts (the run does not scan MonitorTable)."""

    ledger_sample: float = _DEFAULTS.feedback_ledger_sample
    embedding_sample: float = _DEFAULTS.monitor_embedding_sample
    flush_seconds: float = _DEFAULTS.monitor_flush_seconds
    sync_requests_per_second: float = 1.0
    ledger_item_bytes: float = 190.0
    ledger_model_bytes: float = 90.0
    embedding_item_bytes: float = 880.0  # 384 half-precision floats + key, format and TTL
    sums_item_bytes: float = 300.0

    @property
    def sync_flushes_per_request(self) -> float:
        """Sums flushes per synchronous request: one per ``flush_seconds`` at the assumed rate, at most 1."""
        per_flush = self.sync_requests_per_second * self.flush_seconds
        return min(1.0, 1.0 / per_flush) if per_flush > 0 else 1.0


@dataclass(frozen=True)
class Basis:
    """Everything a cost is computed on besides the measurements: list prices, how long items are kept,
    what monitoring writes. One argument, so every path is priced on the same basis."""

    prices: Prices = PRICES
    retention: Retention = Retention()
    monitoring: Monitoring = Monitoring()


BASIS = Basis()


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


def stored_gb_months(item_bytes: float, seconds: float) -> float:
    """GB-months of storage of one DynamoDB item of ``item_bytes`` kept ``seconds`` (with its overhead)."""
    return (item_bytes + DDB_ITEM_OVERHEAD_BYTES) / GB * seconds / MONTH_SECONDS


# -- line items ----------------------------------------------------------------------------------------------
#: the cost table's columns, in order, with their titles; every line item belongs to exactly one
COLUMNS = {
    "front_door": "front door",
    "lambda_requests": "Lambda requests",
    "compute": "compute",
    "init": "init",
    "queue": "queue",
    "dynamodb": "DynamoDB",
    "s3": "S3",
    "logs": "logs",
    "storage": "storage",
    "monitoring": "monitoring",
}


@dataclass(frozen=True)
class LineItem:
    """One billed quantity per text and its unit price, in one column of the cost table.

    ``unit`` names what ``per_text`` counts (request, GB-s, RRU, WRU, S3 request, byte, GB-month), so the
    table's unit columns add items up without knowing the paths; a GB-s item names its ``function`` and
    ``memory_mb``, so the billed milliseconds per text can be read back from it."""

    service: str  # "lambda", "api_gateway", "sqs", "dynamodb", "s3", "logs"
    what: str
    per_text: float  # billed units per text (all the models it was asked of)
    unit_usd: float
    column: str
    unit: str
    function: str = ""
    memory_mb: float = 0.0

    @property
    def usd_per_million_texts(self) -> float:
        return self.per_text * self.unit_usd * MILLION

    @property
    def billed_ms_per_text(self) -> float:
        """A GB-s item's billed milliseconds per text at its function's memory (0 for other items)."""
        return self.per_text * 1000 * 1024 / self.memory_mb if self.unit == "GB-s" and self.memory_mb else 0.0


def door_item(what: str, per_text: float, prices: Prices = PRICES) -> LineItem:
    return LineItem("api_gateway", what, per_text, prices.rest_api_request, "front_door", "request")


def sqs_item(what: str, per_text: float, prices: Prices = PRICES) -> LineItem:
    return LineItem("sqs", what, per_text, prices.sqs_request, "queue", "request")


def read_item(what: str, units: float, prices: Prices = PRICES, column: str = "dynamodb") -> LineItem:
    return LineItem("dynamodb", what, units, prices.ddb_read_unit, column, "RRU")


def write_item(what: str, units: float, prices: Prices = PRICES, column: str = "dynamodb") -> LineItem:
    return LineItem("dynamodb", what, units, prices.ddb_write_unit, column, "WRU")


def storage_item(
    what: str,
    stored: Iterable[tuple[float, float]],
    seconds: float,
    prices: Prices = PRICES,
    column: str = "storage",
) -> LineItem:
    """DynamoDB storage of ``stored`` (items per text, bytes per item) pairs, each kept ``seconds``."""
    gb_months = sum(count * stored_gb_months(size, seconds) for count, size in stored)
    return LineItem("dynamodb", what, gb_months, prices.ddb_storage_gb_month, column, "GB-month")


def log_item(what: str, bytes_per_text: float, prices: Prices = PRICES) -> LineItem:
    return LineItem("logs", what, bytes_per_text, prices.logs_ingested_gb / GB, "logs", "byte")


def gb_s_item(
    function: str, billed: float, memory_mb: float, prices: Prices = PRICES, *, init: bool = False
) -> LineItem:
    """GB-seconds of ``billed`` ms per text of ``function``: duration (compute) or init (amortised)."""
    return LineItem(
        "lambda",
        f"{function} {'init ' if init else ''}GB-s ({memory_mb:.0f} MB)",
        gb_seconds(billed, memory_mb),
        prices.lambda_gb_second,
        "init" if init else "compute",
        "GB-s",
        function,
        memory_mb,
    )


def lambda_items(
    what: str,
    invocations: float,
    billed_ms_total: float,
    memory_mb: float,
    prices: Prices = PRICES,
    *,
    init_ms: float = 0.0,
) -> list[LineItem]:
    """Requests, duration GB-seconds and (where any) init GB-seconds of a function, per text (every
    argument already per text; ``billed_ms_total`` without the init)."""
    return [
        LineItem(
            "lambda", f"{what} requests", invocations, prices.lambda_request, "lambda_requests", "request"
        ),
        gb_s_item(what, billed_ms_total, memory_mb, prices),
        *([gb_s_item(what, init_ms, memory_mb, prices, init=True)] if init_ms > 0 else []),
    ]


# -- paths ---------------------------------------------------------------------------------------------------
@dataclass
class PathCost:
    """The line items of one serving path (per text) and what the table shows beside them: the models per
    text (predictions = texts x models), latency where measured, whether its log bytes were measured (else
    logs are priced 0 and shown n/a), the item sizes its units were computed from. ``note`` says what was
    measured and what was assumed."""

    name: str
    items: list[LineItem] = field(default_factory=list)
    note: str = ""
    models: int = 1
    latency_ms: Mapping[str, Any] | None = None
    log_bytes_measured: bool = False
    item_bytes: dict[str, float] = field(default_factory=dict)

    @property
    def usd_per_million_texts(self) -> float:
        return sum(i.usd_per_million_texts for i in self.items)

    @property
    def usd_per_million(self) -> float:
        """Per million predictions (one text x one model)."""
        return self.usd_per_million_texts / self.models

    def _per_prediction(self, key: str, items: Iterable[LineItem]) -> dict[str, float]:
        out: dict[str, float] = {}
        for i in items:
            k = getattr(i, key)
            out[k] = out.get(k, 0.0) + i.usd_per_million_texts / self.models
        return out

    def by_service(self) -> dict[str, float]:
        """$ per million predictions per AWS service."""
        return self._per_prediction("service", self.items)

    def by_column(self) -> dict[str, float]:
        """$ per million predictions per column of the cost table (every column, 0 where none)."""
        return {c: 0.0 for c in COLUMNS} | self._per_prediction("column", self.items)

    def units(self) -> dict[str, Any]:
        """The table's units: billed ms per text per function (with its memory), init ms per text, and per
        prediction the DynamoDB read and write units (all tables), S3 requests and log bytes."""

        def per_prediction(unit: str) -> float:
            return sum(i.per_text for i in self.items if i.unit == unit) / self.models

        functions: dict[tuple[str, float], float] = {}
        for i in self.items:
            if i.column == "compute":
                key = (i.function, i.memory_mb)
                functions[key] = functions.get(key, 0.0) + i.billed_ms_per_text
        return {
            "billed_ms_per_text": [
                {"function": fn, "billed_ms": ms, "memory_mb": mb} for (fn, mb), ms in functions.items()
            ],
            "init_ms_per_text": sum(i.billed_ms_per_text for i in self.items if i.column == "init"),
            "rru": per_prediction("RRU"),
            "wru": per_prediction("WRU"),
            "s3_requests": per_prediction("S3 request"),
            "log_bytes": per_prediction("byte") if self.log_bytes_measured else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "usd_per_million": self.usd_per_million,
            "usd_per_million_texts": self.usd_per_million_texts,
            "models": self.models,
            "by_service": self.by_service(),
            "by_column": self.by_column(),
            "units": self.units(),
            "item_bytes": self.item_bytes,
            "latency_ms": dict(self.latency_ms) if self.latency_ms else None,
            "items": [
                {
                    "service": i.service,
                    "column": i.column,
                    "what": i.what,
                    "unit": i.unit,
                    "per_text": i.per_text,
                    "usd_per_million": i.usd_per_million_texts / self.models,
                }
                for i in self.items
            ],
            "note": self.note,
        }


def combine(name: str, paths: Sequence[PathCost], note: str = "") -> PathCost:
    """One text sent down several paths (one per model): their items summed per text, their models added.
    Latency: each percentile's slowest path, a lower bound of the text's when they are asked in parallel."""
    lat = [p.latency_ms for p in paths if p.latency_ms]
    latency = (
        {k: max((float(x[k]) for x in lat if x.get(k) is not None), default=None) for k in ("p50", "p99")}
        if len(lat) == len(paths)
        else None
    )
    return PathCost(
        name,
        [i for p in paths for i in p.items],
        note,
        models=sum(p.models for p in paths),
        latency_ms=latency,
        log_bytes_measured=all(p.log_bytes_measured for p in paths),
        item_bytes={k: v for p in paths for k, v in p.item_bytes.items()},
    )


@dataclass(frozen=True)
class FunctionBill:
    """Measured billing of one function over a window: invocations, summed billed ms (init included), the
    init part of it, configured memory, and the bytes of its log events where measured."""

    invocations: int
    billed_ms: float
    memory_mb: float
    init_ms: float = 0.0
    log_bytes: float | None = None

    @property
    def billed_ms_per_invocation(self) -> float:
        return self.billed_ms / max(1, self.invocations)

    @property
    def duration_ms_per_invocation(self) -> float:
        """Billed ms per invocation less its init (the init is amortised in its own column)."""
        return max(0.0, self.billed_ms - self.init_ms) / max(1, self.invocations)

    @property
    def init_ms_per_invocation(self) -> float:
        return self.init_ms / max(1, self.invocations)

    @property
    def log_bytes_per_invocation(self) -> float | None:
        return None if self.log_bytes is None else self.log_bytes / max(1, self.invocations)


@dataclass(frozen=True)
class ItemSizes:
    """Measured item sizes (bytes) of the tables a prediction touches. The defaults stand in for a table
    the run left empty: a cache record (int8 embedding + answers + key + TTL), a chunk of ten compressed
    results, a one-request result, the batch's ``#meta`` item."""

    record: float = 900.0
    result_chunk: float = 700.0
    result: float = 600.0
    meta: float = 150.0

    def result_item(self, chunked: bool) -> float:
        """The size of one result item: a chunk's when messages carry chunks, else a single result's."""
        return self.result_chunk if chunked else self.result


@dataclass(frozen=True)
class Work:
    """A serving function's work per text (the predict function on the synchronous path, the batcher on the
    asynchronous one): what its bill and log say, or a projection onto another stream. Both paths price it
    with :func:`serving_items`, so a projection changes only what differs.

    ``embeddings``: texts whose embedding the request had in hand (encoded, or an embedding hit), which the
    monitoring sample is drawn from; ``distinct``: distinct texts, which the served-answers ledger writes
    once; ``flushes``: monitoring sums flushes (one ADD per model each)."""

    function: str
    invocations: float
    billed_ms: float  # duration, the emulator's share taken out where asked; without the init
    init_ms: float
    memory_mb: float
    cache_reads: float
    cache_writes: float
    embeddings: float
    distinct: float
    flushes: float
    log_bytes: float | None


def cache_items(reads: float, writes: float, sizes: ItemSizes, prices: Prices = PRICES) -> list[LineItem]:
    """Shared-tier cache record reads (eventually consistent; a miss costs the minimum) and writes."""
    return [
        read_item("cache record reads (RRU)", reads * read_units(sizes.record, consistent=False), prices),
        write_item("cache record writes (WRU)", writes * write_units(sizes.record), prices),
    ]


def monitoring_items(
    *, models: int, distinct: float, embeddings: float, flushes: float, basis: Basis
) -> list[LineItem]:
    """What serving writes for monitoring per text (see :class:`Monitoring`), and those items' storage."""
    m, p, keep = basis.monitoring, basis.prices, basis.retention.monitor_seconds
    ledger = m.ledger_sample * distinct  # one item per text, whatever the models (feedback.ledger)
    ledger_bytes = m.ledger_item_bytes + (models - 1) * m.ledger_model_bytes
    sampled = m.embedding_sample * embeddings
    return [
        write_item("served-answers ledger writes (WRU)", ledger * write_units(ledger_bytes), p, "monitoring"),
        write_item(
            "sampled embedding writes (WRU)", sampled * write_units(m.embedding_item_bytes), p, "monitoring"
        ),
        write_item(
            "window sums ADDs (WRU)", flushes * models * write_units(m.sums_item_bytes), p, "monitoring"
        ),
        storage_item(
            "ledger entries and sampled embeddings kept",
            [(ledger, ledger_bytes), (sampled, m.embedding_item_bytes)],
            keep,
            p,
            "monitoring",
        ),
    ]


def serving_items(work: Work, sizes: ItemSizes, models: int, basis: Basis) -> list[LineItem]:
    """The serving function's own line items per text: its invocations, duration and init, its cache
    record reads and writes and the records' storage for their TTL, its log events, its monitoring writes."""
    p = basis.prices
    logs = [] if work.log_bytes is None else [log_item(f"{work.function} log events", work.log_bytes, p)]
    return [
        *lambda_items(
            work.function, work.invocations, work.billed_ms, work.memory_mb, p, init_ms=work.init_ms
        ),
        *cache_items(work.cache_reads, work.cache_writes, sizes, p),
        storage_item(
            "cache records kept", [(work.cache_writes, sizes.record)], basis.retention.cache_seconds, p
        ),
        *logs,
        *monitoring_items(
            models=models,
            distinct=work.distinct,
            embeddings=work.embeddings,
            flushes=work.flushes,
            basis=basis,
        ),
    ]


def sync_http(
    predict: FunctionBill,
    *,
    texts_per_request: float,
    sizes: ItemSizes | None = None,
    cache_reads_per_text: float = 1.0,
    cache_writes_per_text: float = 0.0,
    front_door: str = "rest_api",
    basis: Basis = BASIS,
) -> PathCost:
    """The synchronous path of one model on unique texts: each request is one front-door call and one
    invocation of that model's predict function. The REST API bills every request; a function URL
    (template parameter FunctionUrls=iam) bills nothing on top of the invocation. Every unique text is
    encoded and distinct (monitoring samples and the ledger see each); the monitoring sums flush at the
    rate :class:`Monitoring` assumes."""
    sizes = sizes or ItemSizes()
    per = 1 / texts_per_request
    log_bytes = predict.log_bytes_per_invocation
    work = Work(
        function="predict",
        invocations=per,
        billed_ms=predict.duration_ms_per_invocation * per,
        init_ms=predict.init_ms_per_invocation * per,
        memory_mb=predict.memory_mb,
        cache_reads=cache_reads_per_text,
        cache_writes=cache_writes_per_text,
        embeddings=1.0,
        distinct=1.0,
        flushes=basis.monitoring.sync_flushes_per_request * per,
        log_bytes=None if log_bytes is None else log_bytes * per,
    )
    door = [door_item("REST API requests", per, basis.prices)] if front_door == "rest_api" else []
    return PathCost(
        f"sync_http_{front_door}",
        [*door, *serving_items(work, sizes, 1, basis)],
        log_bytes_measured=log_bytes is not None,
        item_bytes={"record": sizes.record},
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

    @property
    def chunked(self) -> bool:
        """Whether messages carried chunks of requests (one result item and #meta update per chunk)."""
        return self.messages < self.texts

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


def result_items(stats: BatchStats, sizes: ItemSizes, prices: Prices = PRICES) -> list[LineItem]:
    """The batcher's result writes per text: one result item per message (a chunk or a single result) and
    one conditional ``#meta`` update per invocation (its batch's progress) when messages are chunks."""
    n = max(1, stats.texts)
    result_units = stats.messages * write_units(sizes.result_item(stats.chunked))
    meta_units = stats.batches * write_units(sizes.meta) if stats.chunked else 0
    return [
        write_item("result item writes (WRU)", result_units / n, prices),
        write_item("#meta progress updates (WRU)", meta_units / n, prices),
    ]


def batcher_ddb_items(stats: BatchStats, sizes: ItemSizes, *, prices: Prices = PRICES) -> list[LineItem]:
    """The batcher's DynamoDB units per text, from its own counts: its result writes and every shared-tier
    read and write of a cache record."""
    n = max(1, stats.texts)
    return [
        *result_items(stats, sizes, prices),
        *cache_items(stats.cache_reads / n, stats.cache_writes / n, sizes, prices),
    ]


@dataclass(frozen=True)
class ApiBill:
    """The API function's side of the SQS path, per client submission of ``texts_per_submit`` texts:
    POST /v1/batches (enqueue) and one GET /v1/batches/{id} page with every result."""

    post: FunctionBill
    get: FunctionBill
    texts_per_submit: int


@dataclass(frozen=True)
class SqsRun:
    """One measured run of the asynchronous path: the batcher's bill and log, the api function's side,
    the message sizes really sent, the item sizes of its chunks, ``models`` per text, latency (send to
    result written) where measured."""

    batcher: FunctionBill
    stats: BatchStats
    api: ApiBill
    message_bytes: Sequence[int]
    sizes: ItemSizes
    chunk_texts: int = 10
    models: int = 1
    latency_ms: Mapping[str, Any] | None = None

    def work(self, emulator_ms_per_text: float = 0.0) -> Work:
        """The batcher's measured work per text, less the emulator's measured share per text (when given)."""
        s, b = self.stats, self.batcher
        n = max(1, s.texts)
        duration = max(0.0, b.billed_ms - b.init_ms - emulator_ms_per_text * n)
        return Work(
            function="batcher",
            invocations=b.invocations / n,
            billed_ms=duration / n,
            init_ms=b.init_ms / n,
            memory_mb=b.memory_mb,
            cache_reads=s.cache_reads / n,
            cache_writes=s.cache_writes / n,
            embeddings=(s.encoded + s.embedding_hits) / n,
            distinct=(s.unique_texts or s.texts) / n,
            flushes=b.invocations / n,  # the batcher flushes after every batch
            log_bytes=None if b.log_bytes is None else b.log_bytes / n,
        )


def sqs_path(name: str, run: SqsRun, *, emulator_ms_per_text: float = 0.0, basis: Basis = BASIS) -> PathCost:
    """The asynchronous path, per text: the client's POST and GET through the REST API and the api
    function, SendMessageBatch chunks, the event source mapping's receives and deletes, the batcher's
    invocations (less the emulator's measured share per text, when given) and its DynamoDB units, the
    result page reads, the result items' storage for the results TTL, logs and monitoring."""
    return _sqs_cost(name, run, run.work(emulator_ms_per_text), basis)


def _sqs_cost(name: str, run: SqsRun, work: Work, basis: Basis) -> PathCost:
    """The asynchronous path's items: the queue and api side from ``run``, the batcher's from ``work``."""
    p = basis.prices
    stats, api, sizes = run.stats, run.api, run.sizes
    n = max(1, stats.texts)
    k = api.texts_per_submit
    sends = sqs_requests(sqs_batch_payloads(list(run.message_bytes))) / n
    calls_per_batch = math.ceil(stats.messages / max(1, stats.batches) / SQS_MAX_BATCH)
    receives = max(sends, stats.batches * calls_per_batch / n)
    deletes = stats.batches * calls_per_batch / n
    chunk_items = math.ceil(k / run.chunk_texts)
    page_read = query_read_units(chunk_items * sizes.result_chunk, consistent=True) + read_units(
        sizes.meta, consistent=True
    )  # the page's Query over the chunk items, the #meta GetItem (it holds the count)
    result_bytes = sizes.result_item(stats.chunked)
    api_logs = [api.post.log_bytes_per_invocation, api.get.log_bytes_per_invocation]
    logs_known = work.log_bytes is not None and None not in api_logs
    return PathCost(
        name,
        [
            door_item("REST API requests (POST + GET)", 2 / k, p),
            *lambda_items(
                "api",
                2 / k,
                (api.post.duration_ms_per_invocation + api.get.duration_ms_per_invocation) / k,
                api.post.memory_mb,
                p,
                init_ms=(api.post.init_ms_per_invocation + api.get.init_ms_per_invocation) / k,
            ),
            *([log_item("api log events", sum(b or 0.0 for b in api_logs) / k, p)] if logs_known else []),
            write_item("batch #meta write (WRU)", write_units(sizes.meta) / k, p),
            read_item("result page reads (RRU)", page_read / k, p),
            sqs_item("SendMessageBatch (64 KiB chunks)", sends, p),
            sqs_item("ReceiveMessage (event source mapping)", receives, p),
            sqs_item("DeleteMessageBatch (event source mapping)", deletes, p),
            *result_items(stats, sizes, p),
            storage_item(
                "result items and #meta kept",
                [(stats.messages / n, result_bytes), (1 / k, sizes.meta)],
                basis.retention.results_seconds,
                p,
            ),
            *serving_items(
                dataclasses.replace(work, log_bytes=work.log_bytes if logs_known else None),
                sizes,
                run.models,
                basis,
            ),
        ],
        models=run.models,
        latency_ms=run.latency_ms,
        log_bytes_measured=logs_known,
        item_bytes={
            "record": sizes.record,
            ("result_chunk" if stats.chunked else "result"): result_bytes,
            "meta": sizes.meta,
        },
    )


def per_request_lambda(name: str, fn: FunctionBill, prices: Prices = PRICES) -> PathCost:
    """One invocation per prediction and nothing else (the naive peer invoked directly), its log events
    where measured."""
    logs = fn.log_bytes_per_invocation
    return PathCost(
        name,
        [
            *lambda_items(
                name,
                1.0,
                fn.duration_ms_per_invocation,
                fn.memory_mb,
                prices,
                init_ms=fn.init_ms_per_invocation,
            ),
            *([] if logs is None else [log_item(f"{name} log events", logs, prices)]),
        ],
        log_bytes_measured=logs is not None,
    )


def naive_fair(
    fn: FunctionBill,
    *,
    init_ms: float,
    cold_share: float,
    result_bytes: float,
    basis: Basis = BASIS,
) -> dict[str, PathCost]:
    """The naive function as a caller would deploy it, step by step: bare; behind the same front door
    (the REST API); ``naive_fair``: plus a stored result the caller can fetch (one item written, one read,
    kept for the results TTL), the comparison the cost goals use; ``naive_fair_cold``: plus its cold starts
    at the share the warmers' bursty trace measured (init is billed since August 2025; the trace is short
    and bursty, so this row is an upper bound). It answers one model per request: five models are five
    requests, the same per prediction."""
    p = basis.prices
    bare = per_request_lambda("naive_lambda", fn, p)
    door = door_item("REST API requests", 1.0, p)
    stored = [
        write_item("result write (WRU)", write_units(result_bytes), p),
        read_item("result read (RRU)", read_units(result_bytes, consistent=True), p),
        storage_item("result kept", [(1.0, result_bytes)], basis.retention.results_seconds, p),
    ]
    cold = gb_s_item("naive cold start", cold_share * init_ms, fn.memory_mb, p, init=True)
    result = {"result": result_bytes}
    return {
        "naive_lambda": dataclasses.replace(bare, note="warm, one text per request, invoked directly"),
        "naive_front_door": dataclasses.replace(
            bare, name="naive_front_door", items=[*bare.items, door], note="+ the REST API"
        ),
        "naive_fair": dataclasses.replace(
            bare,
            name="naive_fair",
            items=[*bare.items, door, *stored],
            item_bytes=result,
            note="+ the REST API + a stored result written, read and kept",
        ),
        "naive_fair_cold": dataclasses.replace(
            bare,
            name="naive_fair_cold",
            items=[*bare.items, door, *stored, cold],
            item_bytes=result,
            note=f"naive_fair + cold starts at {cold_share:.1%} of requests (warmers' trace: an upper bound)",
        ),
    }


def break_even_hits(encode_ms: float, memory_mb: float, sizes: ItemSizes, prices: Prices = PRICES) -> float:
    """Shared-tier hits a record needs to pay for its write: each hit saves an encode and pays a read."""
    saved = gb_seconds(encode_ms, memory_mb) * prices.lambda_gb_second
    read = read_units(sizes.record, consistent=False) * prices.ddb_read_unit
    write = write_units(sizes.record) * prices.ddb_write_unit
    return write / (saved - read) if saved > read else math.inf


def zipf_steady(
    name: str,
    run: SqsRun,
    counts: Mapping[str, float],
    *,
    encode_ms_per_text: float,
    distinct_per_request: float | None = None,
    emulator_ms_per_text: float = 0.0,
    basis: Basis = BASIS,
) -> PathCost:
    """A long Zipf stream's cost per request, projected from a unique run's measured units: its queue and
    api side as measured, the batcher's billed ms split into what every request pays (parsing, heads,
    results, hits) and what each encoded text adds, times the simulated counts (bench/admission.py: texts
    encoded, record reads and writes per request); monitoring samples the encoded texts and the ledger the
    stream's distinct texts. A five-model run projects the same stream at five models."""
    work = run.work(emulator_ms_per_text)
    encoded_share = run.stats.encoded / max(1, run.stats.texts)
    fixed_ms = max(0.0, work.billed_ms - encode_ms_per_text * encoded_share)
    projected = dataclasses.replace(
        work,
        billed_ms=fixed_ms + encode_ms_per_text * counts["encoded_per_request"],
        cache_reads=counts["reads_per_request"],
        cache_writes=counts["writes_per_request"],
        embeddings=counts["encoded_per_request"],
        distinct=work.distinct if distinct_per_request is None else distinct_per_request,
    )
    path = _sqs_cost(name, dataclasses.replace(run, latency_ms=None), projected, basis)
    return path


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
    monitor_report_puts: int = 4  # JSON + PNG, each as <window> and latest (functions/monitor/app.py)
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
            "monitor reports to S3": self.monitor_runs * self.monitor_report_puts * prices.s3_put,
            "idle SQS polls": self.queues * self.idle_receives_per_queue * prices.sqs_request,
            "custom metrics": self.metrics * prices.custom_metric_month,
            "alarms": self.alarms * prices.alarm_month,
        }

    def usd_per_month(self, prices: Prices = PRICES) -> float:
        return sum(self.items(prices).values())


def break_even_volume(fixed_usd_per_month: float, ours: float, naive: float) -> float | None:
    """Predictions per month above which ours (fixed + per-prediction) is cheaper than the naive peer."""
    saving = (naive - ours) / MILLION
    return fixed_usd_per_month / saving if saving > 0 else None


# -- from the benchmark's results ----------------------------------------------------------------------------
#: every path of the cost table, in the order it is shown; a path not measured is None
PATHS = (
    "naive_lambda",
    "naive_front_door",
    "naive_fair",
    "naive_fair_cold",
    "sync_http",
    "sync_http_function_url",
    "sync_http_16",
    "sync_http_5",
    "sync_http_function_url_5",
    "sync_http_16_5",
    "sqs_unique",
    "sqs_unique_paired",
    "sqs_unique_5",
    "sqs_zipf_cached",
    "sqs_zipf_uncached",
    "sqs_zipf_steady_cached",
    "sqs_zipf_steady_uncached",
    "sqs_zipf_steady_cached_5",
    "sqs_zipf_steady_uncached_5",
    "gpu_worker",
)


def _fb(b: Mapping[str, Any]) -> FunctionBill:
    logs = b.get("log_bytes")
    return FunctionBill(
        int(b["invocations"]),
        float(b["billed_ms"]),
        float(b["memory_mb"]),
        init_ms=float(b.get("init_ms") or 0.0),
        log_bytes=None if logs is None else float(logs),
    )


def _billed(x: Mapping[str, Any] | None) -> bool:
    """Whether a probe or run has a bill with invocations in it."""
    return bool(x and x.get("bill") and x["bill"].get("invocations"))


def measured_sizes(m: Mapping[str, Any]) -> ItemSizes:
    """The measured item sizes (``item_sizes``), the defaults where the run left a table empty."""
    given = m.get("item_sizes") or {}
    return ItemSizes(
        **{k: v for k, v in given.items() if v is not None and k in ItemSizes.__dataclass_fields__}
    )


def _sync_paths(m: Mapping[str, Any], sizes: ItemSizes, basis: Basis) -> dict[str, PathCost | None]:
    """The synchronous rows from ``sync`` (one probe per text count and model), ``http`` (one text, the
    one model) where ``sync`` lacks it: one cache record read per text that misses (unique texts), no write
    (admission: a first sighting). A five-model row is one text sent to all five predict functions."""
    probes = m.get("sync") or {}
    one = dict(probes.get("1") or {})
    if not _billed(one.get(SYNC_MODEL)) and _billed(m.get("http")):
        one[SYNC_MODEL] = {"texts_per_request": 1, **m["http"]}
    out: dict[str, PathCost | None] = {}
    for key, group, door in (
        ("sync_http", one, "rest_api"),
        ("sync_http_function_url", one, "function_url"),
        ("sync_http_16", probes.get("16") or {}, "rest_api"),
    ):
        per_model = {model: _sync_probe(key, group.get(model), door, sizes, basis) for model in MODEL_NAMES}
        out[key] = per_model[SYNC_MODEL]
        every = [p for p in per_model.values() if p is not None]
        texts = float((group.get(SYNC_MODEL) or {}).get("texts_per_request") or 1)
        out[f"{key}_5"] = (
            combine(
                f"{key}_5", every, f"one text to each model's predict function; {_sync_note(texts, door)}"
            )
            if len(every) == len(MODEL_NAMES)
            else None
        )
    return out


def _sync_note(texts: float, door: str) -> str:
    return f"{texts:.0f} text(s) per request, unique texts, caches on, {door.replace('_', ' ')}"


def _sync_probe(
    key: str, probe: Mapping[str, Any] | None, door: str, sizes: ItemSizes, basis: Basis
) -> PathCost | None:
    if not probe or not _billed(probe):
        return None
    texts = float(probe.get("texts_per_request") or 1)
    path = sync_http(
        _fb(probe["bill"]),
        texts_per_request=texts,
        sizes=sizes,
        cache_reads_per_text=1.0,
        cache_writes_per_text=0.0,
        front_door=door,
        basis=basis,
    )
    ok = f", {probe['ok']}/{probe['requests']} ok" if "ok" in probe and "requests" in probe else ""
    return dataclasses.replace(
        path,
        name=key,
        latency_ms=probe.get("latency_ms"),
        note=_sync_note(texts, door) + ok,
    )


def _sqs_runs(m: Mapping[str, Any], sizes: ItemSizes) -> dict[str, SqsRun | None]:
    """The measured SQS runs. ``five_models`` (interleaved rounds of one and five models on the same texts)
    supplies ``sqs_unique_paired`` and ``sqs_unique_5`` when present; else ``sqs_unique_5`` is its own run."""
    api = m.get("api") or {}
    bill = (
        ApiBill(_fb(api["post"]), _fb(api["get"]), int(api["texts"]))
        if api.get("post") and api["post"]["invocations"] and api.get("get") and api["get"]["invocations"]
        else None
    )
    five = m.get("five_models") or {}
    chunk_texts = int(m.get("chunk_texts") or 10)
    sources: dict[str, tuple[Mapping[str, Any] | None, int]] = {
        "sqs_unique": (m.get("sqs_unique"), 1),
        "sqs_unique_paired": (five.get("one"), 1),
        "sqs_unique_5": (five.get("five") if five else m.get("sqs_unique_5"), 5),
        "sqs_zipf_cached": (m.get("sqs_zipf_cached"), 1),
        "sqs_zipf_uncached": (m.get("sqs_zipf_uncached"), 1),
    }
    out: dict[str, SqsRun | None] = {}
    for name, (run, models) in sources.items():
        if bill is None or run is None or not _billed(run):
            out[name] = None
            continue
        chunk = run.get("result_chunk_bytes")  # this run's chunks (five models make bigger ones)
        bb = run["bill"]
        if bb.get("log_bytes") is None and run.get("log_bytes") is not None:
            bb = {**bb, "log_bytes": run["log_bytes"]}
        out[name] = SqsRun(
            _fb(bb),
            BatchStats.from_log(run["batches"]),
            bill,
            tuple(run["message_bytes"]),
            dataclasses.replace(sizes, result_chunk=chunk) if chunk else sizes,
            chunk_texts=chunk_texts,
            models=models,
            latency_ms=run.get("latency_ms"),
        )
    return out


def _sqs_note(m: Mapping[str, Any], name: str) -> str:
    five = m.get("five_models")
    if five and name in ("sqs_unique_paired", "sqs_unique_5"):
        run = five["five" if name == "sqs_unique_5" else "one"]
        models = "five models" if name == "sqs_unique_5" else "one model"
        rounds = five.get("rounds", "n/a")
        return (f"{run.get('note', '')}; " if run.get("note") else "") + (
            f"unique texts, {models} per text, {rounds} rounds interleaved with the other variant on the "
            "same texts"
        )
    # older runs noted that this row was per text; every row is per prediction now (USD / M texts beside it)
    return str((m.get(name) or {}).get("note", "")).replace(" (USD per M texts)", "")


def paths_from_measured(
    m: Mapping[str, Any], basis: Basis = BASIS, *, own_work: bool = True
) -> dict[str, PathCost | None]:
    """Every path's cost from the ``measured`` dict the benchmark saves (sections.cost.measured), in the
    order of :data:`PATHS`; a path whose measurement is missing is None. ``own_work``: the batcher's billed
    ms less the emulator's own measured share per text (as AWS would bill the function's work), else the raw
    local billed ms. Shared by the benchmark and the report, so the report can be regenerated from the JSON
    alone."""
    sizes = measured_sizes(m)
    emulator = float(m.get("emulator_ms_per_text") or 0.0) if own_work else 0.0
    out: dict[str, PathCost | None] = {}

    naive = m.get("naive")
    if _billed(naive):
        assert naive is not None
        variants = naive_fair(
            _fb(naive["bill"]),
            init_ms=float(m.get("naive_init_ms") or 0.0),
            cold_share=float(m.get("cold_share") or 0.0),
            result_bytes=sizes.result,
            basis=basis,
        )
        for v in variants.values():
            v.latency_ms = naive.get("latency_ms")
        out.update(variants)

    out.update(_sync_paths(m, sizes, basis))

    runs = _sqs_runs(m, sizes)
    for name, run in runs.items():
        if run is not None:
            path = sqs_path(name, run, emulator_ms_per_text=emulator, basis=basis)
            path.note = _sqs_note(m, name)
            out[name] = path

    steady = m.get("zipf_steady")
    if steady:
        encode_ms = float(m.get("encode_ms_per_text") or 0.0)
        distinct = steady["distinct_texts"] / steady["requests"] if steady.get("distinct_texts") else None
        for suffix, run in (("", runs.get("sqs_unique")), ("_5", runs.get("sqs_unique_5"))):
            if run is None:
                continue
            for variant, counts in (("cached", steady["on"]), ("uncached", steady["off"])):
                key = f"sqs_zipf_steady_{variant}{suffix}"
                projected = zipf_steady(
                    key,
                    run,
                    counts,
                    encode_ms_per_text=encode_ms,
                    distinct_per_request=distinct,
                    emulator_ms_per_text=emulator,
                    basis=basis,
                )
                projected.note = (
                    f"projected: {steady['requests']} requests of Zipf(1.1), counts from bench/admission.py"
                    + (", five models per text" if suffix else "")
                )
                out[key] = projected
    return {k: out.get(k) for k in PATHS}  # gpu_worker: no GPU measured on this machine


def derived(m: Mapping[str, Any], paths: Mapping[str, PathCost | None]) -> dict[str, Any]:
    """The cost issue's headline figures from the paths and the measured counts. ``five_models_cost_ratio``
    compares texts (a text with five models over a text with one), from the interleaved rounds on the same
    texts when the run has them, else from the two separate runs."""
    sizes = measured_sizes(m)
    out: dict[str, Any] = {}
    run = m.get("sqs_unique")
    if run and run.get("result_chunk_bytes"):
        sizes = dataclasses.replace(sizes, result_chunk=run["result_chunk_bytes"])
    unique = paths.get("sqs_unique")
    # every table the path writes: the batch's #meta, result chunks, progress, cache records, and what
    # serving writes for monitoring and label feedback (the ledger, sampled embeddings, window sums)
    out["dynamodb_write_units_per_unique_text"] = unique.units()["wru"] * unique.models if unique else None
    five = m.get("five_models")
    one = paths.get("sqs_unique_paired" if five else "sqs_unique")
    five_path = paths.get("sqs_unique_5")
    out["five_models_cost_ratio"] = (
        five_path.usd_per_million_texts / one.usd_per_million_texts if one and five_path else None
    )
    out["five_models_paired"] = bool(five)
    rounds = [r for r in (five or {}).get("per_round", []) if r.get("one_ms_per_text")]
    out["five_models_rounds"] = (five or {}).get("rounds")
    out["five_models_batcher_ms_ratio_median"] = (
        statistics.median(r["five_ms_per_text"] / r["one_ms_per_text"] for r in rounds) if rounds else None
    )
    ours, fair = paths.get("sqs_unique"), paths.get("naive_fair")
    out["x_cheaper_than_naive_fair"] = fair.usd_per_million / ours.usd_per_million if ours and fair else None
    on, off = paths.get("sqs_zipf_steady_cached"), paths.get("sqs_zipf_steady_uncached")
    out["zipf_steady_cached_over_uncached"] = on.usd_per_million / off.usd_per_million if on and off else None
    encode_ms = m.get("encode_ms_per_text")
    bill = (run or {}).get("bill")
    out["break_even_hits_per_write"] = (
        break_even_hits(float(encode_ms), float(bill["memory_mb"]), sizes) if encode_ms and bill else None
    )
    return out


def report(m: Mapping[str, Any], basis: Basis = BASIS) -> dict[str, Any]:
    """What the benchmark stores for the cost section: the paths as AWS would bill the functions' own
    work (the emulator's measured share taken out), the same from the raw local billed ms, the derived
    headline figures, the fixed monthly cost and the basis (retention, monitoring assumptions)."""
    paths = paths_from_measured(m, basis)
    raw = paths_from_measured(m, basis, own_work=False)
    fixed = Fixed()
    ours, fair = paths.get("sqs_unique"), paths.get("naive_fair")
    return {
        "paths": {k: (v.to_dict() if v else None) for k, v in paths.items()},
        "paths_as_measured": {k: (v.to_dict() if v else None) for k, v in raw.items()},
        "derived": derived(m, paths),
        "fixed": {
            "usd_per_month": fixed.usd_per_month(basis.prices),
            "items": fixed.items(basis.prices),
            "assumptions": dataclasses.asdict(fixed),
            "break_even_predictions_per_month": break_even_volume(
                fixed.usd_per_month(basis.prices), ours.usd_per_million, fair.usd_per_million
            )
            if ours and fair
            else None,
        },
        "basis": {
            "retention_seconds": dataclasses.asdict(basis.retention),
            "monitoring": dataclasses.asdict(basis.monitoring),
        },
        "prices_date": PRICES_DATE,
    }
