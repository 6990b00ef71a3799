"""DynamoDB adapter for asynchronous batch results.

Table shape: partition key ``batch_id`` (S), sort key ``request_id`` (S), TTL attribute ``ttl``. The item
``request_id = "#meta"`` (``#`` is not allowed in request ids) records how many requests the batch holds,
so ``GET /v1/batches/{id}`` can tell pending from complete; results are read a page at a time. One item
per (batch, request): a duplicate SQS delivery overwrites the same key with the same answer, so it can
never produce a second result. Rejected submission items without a usable id of their own are stored
under ``~<index>`` (``~`` is not allowed in request ids either).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from topicserve.aws import AwsClient, aws_client
from topicserve.dynamo import RetryPolicy, batch_put, pages

META = "#meta"


@dataclass(frozen=True)
class BatchPage:
    """One page of a batch's results, in request-id order (string order), and the batch's progress."""

    batch_id: str
    expected: int | None  # None: the batch was submitted straight to SQS, not through the API
    completed: int
    created_at: str | None
    results: list[dict[str, Any]]
    last_request_id: str | None  # set when more results follow this page

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
        client: AwsClient | None = None,
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

    def create_batch(self, batch_id: str, expected: int) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                "batch_id": {"S": batch_id},
                "request_id": {"S": META},
                "expected": {"N": str(expected)},
                "created_at": {"S": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
                "ttl": self._ttl(),
            },
        )

    def put_results(self, rows: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
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

    def get_page(self, batch_id: str, *, limit: int, after: str | None = None) -> BatchPage | None:
        """Up to ``limit`` results after request id ``after``; None when the batch has no item at all.

        Result rows sort after the ``#meta`` item (every request id character sorts after "#"), so the
        key condition ``request_id > after-or-#meta`` skips the meta item without a filter, and a page of
        ``limit`` results is exactly ``limit`` items read. ``completed`` is a COUNT query over the batch.
        """
        meta = self.client.get_item(
            TableName=self.table,
            Key={"batch_id": {"S": batch_id}, "request_id": {"S": META}},
            ConsistentRead=True,
        ).get("Item")
        key_condition = {
            "TableName": self.table,
            "KeyConditionExpression": "batch_id = :b AND request_id > :after",
            "ExpressionAttributeValues": {":b": {"S": batch_id}, ":after": {"S": after or META}},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        more = False
        kwargs: dict[str, Any] = {**key_condition, "Limit": limit}
        while len(items) < limit:
            page = self.client.query(**kwargs)
            items.extend(page.get("Items", []))
            more = "LastEvaluatedKey" in page
            if not more:
                break
            kwargs.update(ExclusiveStartKey=page["LastEvaluatedKey"], Limit=limit - len(items))
        completed = self._count(batch_id)
        if meta is None and completed == 0:
            return None
        return BatchPage(
            batch_id=batch_id,
            expected=int(meta["expected"]["N"]) if meta else None,
            completed=completed,
            created_at=meta["created_at"]["S"] if meta else None,
            results=[{"request_id": i["request_id"]["S"], **json.loads(i["result"]["S"])} for i in items],
            last_request_id=items[-1]["request_id"]["S"] if more and items else None,
        )

    def _count(self, batch_id: str) -> int:
        query = pages(
            self.client.query,
            TableName=self.table,
            KeyConditionExpression="batch_id = :b AND request_id > :meta",
            ExpressionAttributeValues={":b": {"S": batch_id}, ":meta": {"S": META}},
            Select="COUNT",
            ConsistentRead=True,
        )
        return sum(int(page.get("Count", 0)) for page in query)
