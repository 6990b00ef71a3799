"""DynamoDB adapter for asynchronous batch results: one item per chunk of requests, not per request.

Why chunks: a result row per request cost a write unit per text, as much as the rest of the bulk path's
DynamoDB bill put together. ``POST /v1/batches`` queues its requests as chunks (one SQS message of up to
``Settings.chunk_texts`` texts each, :class:`~topicserve.requests.QueuedChunk`), and the batcher stores each
chunk's results as one item, zlib-compressed JSON: 15 one-model results in one write unit, as SageMaker Batch
Transform writes one output object per input object.

Table shape: partition key ``batch_id`` (S), sort key ``request_id`` (S), TTL attribute ``ttl``.

* ``#meta``: ``expected`` results, ``created_at``, and the progress: ``completed`` (a count) and ``done``
  (the set of chunk numbers counted). The batcher writes a chunk item first, then adds its number and size
  with one conditional update (``NOT contains(done, :c)``): a redelivered chunk overwrites its own item with
  the same request ids and is never counted twice, and a chunk whose batcher died between the two writes is
  counted when SQS delivers it again (its message was not deleted). So ``GET`` knows ``completed`` from one
  item, without reading the batch.
* ``c#<chunk>``: a chunk's results, ``r`` = zlib(JSON ``[[request_id, result], ...]``), ``n`` = how many.
  Chunk numbers are fixed at submission, so a chunk has one key whichever batcher serves it. The items a
  submission rejected at once are its last chunk, written with the ``#meta`` item.
* ``<request_id>``: one result, for requests sent straight to SQS one per message (no ``#meta``: the size
  of such a batch is unknown and ``completed`` is a COUNT query).

``#`` and ``~`` cannot occur in request ids, so the three kinds never collide, and every result item sorts
after ``#meta``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from topicserve.aws import aws_client
from topicserve.dynamo import RetryPolicy, batch_put, pages

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from topicserve.aws import DynamoDBClient

META = "#meta"
CHUNK_PREFIX = "c#"
#: what a stored answer may carry for label feedback only (topicserve.feedback.model.comparison_fields): the
#: answers a candidate was compared with on that text, and the answering candidate's epoch. Kept in the
#: item, so feedback by batch_id + request_id feeds the gate; left out of what ``GET /v1/batches`` returns
COMPARED_KEY, EPOCH_KEY = "compared", "epoch"
PRIVATE_ANSWER_KEYS = frozenset({COMPARED_KEY, EPOCH_KEY})
#: a page position: a result item's sort key and how many results of it were already returned
_POSITION = re.compile(r"(?P<key>[^|]+)(?:\|(?P<skip>[0-9]{1,4}))?")

ResultRow = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class ResultChunk:
    """The results of one queued chunk, in its request order."""

    batch_id: str
    chunk: int
    results: tuple[tuple[str, dict[str, Any]], ...]  # (request id, result)


def chunk_key(chunk: int) -> str:
    return f"{CHUNK_PREFIX}{chunk:06d}"


def pack_results(results: Sequence[tuple[str, dict[str, Any]]]) -> bytes:
    return zlib.compress(json.dumps(results, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), 6)


def unpack_results(blob: bytes) -> list[tuple[str, dict[str, Any]]]:
    return [(r, res) for r, res in json.loads(zlib.decompress(blob).decode("utf-8"))]


@dataclass(frozen=True)
class BatchPage:
    """One page of a batch's results (chunk order, request order inside a chunk) and its progress."""

    batch_id: str
    expected: int | None  # None: the batch was submitted straight to SQS, not through the API
    completed: int
    created_at: str | None
    results: list[dict[str, Any]]
    last_request_id: str | None  # the position after this page when more results follow

    @property
    def status(self) -> str:
        if self.expected is None:
            return "unknown_size"
        return "complete" if self.completed >= self.expected else "pending"

    def to_dict(self, next_token: str | None = None) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "expected": self.expected,
            "completed": self.completed,
            "created_at": self.created_at,
            "results": self.results,
            "next": next_token,
        }


class ResultsStore:
    def __init__(
        self,
        table: str,
        *,
        client: DynamoDBClient | None = None,
        ttl_seconds: int = 24 * 3600,
        retry: RetryPolicy | None = None,
    ) -> None:
        client = client or aws_client("dynamodb", serving=False)
        self.table = table
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.retry = retry or RetryPolicy()

    def _ttl(self) -> dict[str, str]:
        return {"N": str(int(time.time()) + self.ttl_seconds)}

    # -- writes ----------------------------------------------------------------------------------------------
    def create_batch(self, batch_id: str, expected: int, rejected: ResultChunk | None = None) -> None:
        """The ``#meta`` item; with the submission's rejected items as its chunk, already counted."""
        item: dict[str, Any] = {
            "batch_id": {"S": batch_id},
            "request_id": {"S": META},
            "expected": {"N": str(expected)},
            "created_at": {"S": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
            "completed": {"N": "0"},
            "ttl": self._ttl(),
        }
        if rejected is not None and rejected.results:
            self.client.put_item(TableName=self.table, Item=self._chunk_item(rejected, self._ttl()))
            item["completed"] = {"N": str(len(rejected.results))}
            item["done"] = {"NS": [str(rejected.chunk)]}
        self.client.put_item(TableName=self.table, Item=item)

    def write(self, items: Sequence[ResultRow | ResultChunk]) -> None:
        """Store what a batcher pass answered: single results and chunks; raise if any stays unwritten."""
        rows = [i for i in items if not isinstance(i, ResultChunk)]
        chunks = [i for i in items if isinstance(i, ResultChunk)]
        if rows:
            self.put_results(rows)
        if chunks:
            self.put_chunks(chunks)

    def put_results(self, rows: Sequence[ResultRow]) -> None:
        """Write ``(batch_id, request_id, result)`` rows; raise if any stay unwritten."""
        unique = {(b, r): res for b, r, res in rows}  # one write per key even inside one SQS batch
        ttl = self._ttl()
        completed_ms = {"N": str(int(time.time() * 1000))}  # end-to-end latency of the SQS path (bench/)
        items = [
            {
                "batch_id": {"S": b},
                "request_id": {"S": r},
                "result": {"S": json.dumps(res, separators=(",", ":"), ensure_ascii=False)},
                "ttl": ttl,
                "completed_ms": completed_ms,
            }
            for (b, r), res in unique.items()
        ]
        batch_put(self.client, self.table, items, retry=self.retry)

    def _chunk_item(self, chunk: ResultChunk, ttl: dict[str, str]) -> dict[str, Any]:
        return {
            "batch_id": {"S": chunk.batch_id},
            "request_id": {"S": chunk_key(chunk.chunk)},
            "r": {"B": pack_results(chunk.results)},
            "n": {"N": str(len(chunk.results))},
            "ttl": ttl,
            "completed_ms": {"N": str(int(time.time() * 1000))},
        }

    def put_chunks(self, chunks: Sequence[ResultChunk]) -> None:
        """Each chunk's item, then its count on the batch's ``#meta`` item (see the module docstring)."""
        unique = {(c.batch_id, c.chunk): c for c in chunks}
        ttl = self._ttl()
        batch_put(
            self.client, self.table, [self._chunk_item(c, ttl) for c in unique.values()], retry=self.retry
        )
        self.count_chunks(list(unique.values()))

    def count_chunks(self, chunks: Sequence[ResultChunk]) -> None:
        """Each written chunk's number and size added to its batch's ``#meta`` item: one conditional update
        per batch, and one per chunk when one of them was counted before (a redelivery), so none counts
        twice. Apart from the write so another way of storing the chunks keeps the same progress."""
        by_batch: dict[str, list[ResultChunk]] = {}
        for c in chunks:
            by_batch.setdefault(c.batch_id, []).append(c)
        for batch_id, group in by_batch.items():
            if not self._count(batch_id, group):  # one of them was counted before: one at a time
                for c in group:
                    self._count(batch_id, [c])

    def _count(self, batch_id: str, chunks: Sequence[ResultChunk]) -> bool:
        """Add ``chunks`` to the batch's progress unless one of them is already counted (False then)."""
        numbers = [str(c.chunk) for c in chunks]
        condition = " AND ".join(f"NOT contains(done, :c{i})" for i in range(len(numbers)))
        values: dict[str, Any] = {f":c{i}": {"N": n} for i, n in enumerate(numbers)}
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"batch_id": {"S": batch_id}, "request_id": {"S": META}},
                UpdateExpression="ADD completed :n, done :set",
                ConditionExpression=f"attribute_exists(expected) AND ({condition})",
                ExpressionAttributeValues={
                    ":n": {"N": str(sum(len(c.results) for c in chunks))},
                    ":set": {"NS": numbers},
                    **values,
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    # -- reads -----------------------------------------------------------------------------------------------
    def get_page(self, batch_id: str, *, limit: int, after: str | None = None) -> BatchPage | None:
        """Up to ``limit`` results from the position ``after`` (a page token's content); None when the
        batch has no item at all. Result items sort after ``#meta``, so the key condition skips it; a chunk
        item holds several results, so a page may end inside one (the next position says how far)."""
        meta = self.client.get_item(
            TableName=self.table,
            Key={"batch_id": {"S": batch_id}, "request_id": {"S": META}},
            ConsistentRead=True,
        ).get("Item")
        results, position = self._read(batch_id, limit, *parse_position(after))
        if meta is None:
            completed = self._count_items(batch_id)
            if completed == 0:
                return None
        else:
            completed = int(meta.get("completed", {}).get("N", "0"))
        return BatchPage(
            batch_id=batch_id,
            expected=int(meta["expected"]["N"]) if meta else None,
            completed=completed,
            created_at=meta["created_at"]["S"] if meta else None,
            results=results,
            last_request_id=position,
        )

    def _read(
        self, batch_id: str, limit: int, start: str | None, skip: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` results from a position, and the position after them (None: nothing follows).

        Each Query asks for about as many items as the results still wanted need (chunks hold up to ~10),
        so a page reads little more than it returns: reads are billed by the bytes read."""
        results: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "batch_id = :b AND request_id " + (">= :after" if skip else "> :after"),
            "ExpressionAttributeValues": {":b": {"S": batch_id}, ":after": {"S": start or META}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs, Limit=max(1, (limit - len(results)) // 10 + 1))
            items = page.get("Items", [])
            for n, item in enumerate(items):
                key = item["request_id"]["S"]
                expanded = _expand(item)[skip:]
                done_before, skip = _size(item) - len(expanded), 0
                room = limit - len(results)
                results.extend(public(r) for r in expanded[:room])
                if len(expanded) > room:
                    return results, f"{key}|{done_before + room}"
                if len(results) == limit:
                    more = n + 1 < len(items) or (
                        "LastEvaluatedKey" in page and self._more_after(batch_id, key)
                    )
                    return results, key if more else None
            if "LastEvaluatedKey" not in page:
                return results, None
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _more_after(self, batch_id: str, key: str) -> bool:
        page = self.client.query(
            TableName=self.table,
            KeyConditionExpression="batch_id = :b AND request_id > :after",
            ExpressionAttributeValues={":b": {"S": batch_id}, ":after": {"S": key}},
            ProjectionExpression="request_id",
            ConsistentRead=True,
            Limit=1,
        )
        return bool(page.get("Items"))

    def _count_items(self, batch_id: str) -> int:
        """Results of a batch without ``#meta`` (sent straight to SQS, one result per item)."""
        query = pages(
            self.client.query,
            TableName=self.table,
            KeyConditionExpression="batch_id = :b AND request_id > :meta",
            ExpressionAttributeValues={":b": {"S": batch_id}, ":meta": {"S": META}},
            Select="COUNT",
            ConsistentRead=True,
        )
        return sum(int(page.get("Count", 0)) for page in query)


def parse_position(after: str | None) -> tuple[str | None, int]:
    """A page token's content: ``<sort key>`` (start after it) or ``<chunk key>|<n>`` (inside that chunk,
    after its first ``n`` results)."""
    if after is None:
        return None, 0
    match = _POSITION.fullmatch(after)
    if match is None:
        raise ValueError(f"not a page position: {after!r}")
    return match["key"], int(match["skip"] or 0)


def _expand(item: dict[str, Any]) -> list[dict[str, Any]]:
    if "r" in item:
        return [{"request_id": r, **res} for r, res in unpack_results(bytes(item["r"]["B"]))]
    return [{"request_id": item["request_id"]["S"], **json.loads(item["result"]["S"])}]


def public(result: dict[str, Any]) -> dict[str, Any]:
    """A stored result as callers see it: each model's answer without :data:`PRIVATE_ANSWER_KEYS`."""
    models = result.get("models")
    if not isinstance(models, dict) or not any(
        isinstance(a, dict) and PRIVATE_ANSWER_KEYS & a.keys() for a in models.values()
    ):
        return result
    shown = {
        m: {k: v for k, v in a.items() if k not in PRIVATE_ANSWER_KEYS} if isinstance(a, dict) else a
        for m, a in models.items()
    }
    return {**result, "models": shown}


def _size(item: dict[str, Any]) -> int:
    return int(item["n"]["N"]) if "n" in item else 1


def expand_items(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every result the given result items hold, with the item's completion time (benchmarks)."""
    out = []
    for item in items:
        if item["request_id"]["S"] == META:
            continue
        done = float(item["completed_ms"]["N"]) if "completed_ms" in item else None
        for result in _expand(item):
            rid = result.pop("request_id")
            out.append({"request_id": rid, "completed_ms": done, "result": result})
    return out
