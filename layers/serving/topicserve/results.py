"""DynamoDB adapter for asynchronous batch results.

Table shape: partition key ``batch_id`` (S), sort key ``request_id`` (S), TTL attribute ``ttl``. The item
``request_id = "#meta"`` (``#`` is not allowed in request ids) records how many requests the batch holds,
so ``GET /v1/batches/{id}`` can tell pending from complete. One item per (batch, request): a duplicate
SQS delivery overwrites the same key with the same answer, so it can never produce a second result.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from topicserve.dynamo import RetryPolicy, batch_put

META = "#meta"


@dataclass(frozen=True)
class BatchView:
    batch_id: str
    expected: int | None  # None: the batch was submitted straight to SQS, not through the API
    created_at: str | None
    results: list[dict[str, Any]]

    @property
    def status(self) -> str:
        if self.expected is None:
            return "unknown_size"
        return "complete" if len(self.results) >= self.expected else "pending"

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "expected": self.expected,
            "completed": len(self.results),
            "created_at": self.created_at,
            "results": self.results,
        }


class ResultsStore:
    def __init__(
        self,
        table: str,
        *,
        client: Any = None,
        ttl_seconds: int = 24 * 3600,
        retry: RetryPolicy | None = None,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
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

    def get_batch(self, batch_id: str) -> BatchView | None:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "batch_id = :b",
            "ExpressionAttributeValues": {":b": {"S": batch_id}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if not items:
            return None
        meta = next((i for i in items if i["request_id"]["S"] == META), None)
        results = [
            {"request_id": i["request_id"]["S"], **json.loads(i["result"]["S"])}
            for i in items
            if i["request_id"]["S"] != META
        ]
        results.sort(key=lambda r: (len(r["request_id"]), r["request_id"]))  # "2" before "10"
        return BatchView(
            batch_id=batch_id,
            expected=int(meta["expected"]["N"]) if meta else None,
            created_at=meta["created_at"]["S"] if meta else None,
            results=results,
        )
