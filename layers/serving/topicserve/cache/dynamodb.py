"""DynamoDB adapter of :class:`~topicserve.cache.store.CacheStore`.

Table shape: partition key ``k`` (S), binary value ``v`` (B), and ``ttl`` (N, epoch seconds) enabled as the
table's TTL attribute so stale entries expire without a sweeper.

DynamoDB's batch calls take at most 100 keys (BatchGetItem) or 25 items (BatchWriteItem) and may hand back
part of the work as ``UnprocessedKeys`` / ``UnprocessedItems`` under throttling; both are retried with
exponential backoff and jitter, and anything still unprocessed after the last attempt is reported as
:class:`CacheUnavailableError` so callers degrade rather than silently lose a write.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from topicserve.cache.store import CacheUnavailableError

GET_CHUNK = 100
WRITE_CHUNK = 25
T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DynamoDBStore:
    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        ttl_seconds: int | None = 7 * 24 * 3600,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        consistent_read: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client is None:
            import boto3  # imported lazily: the pure parts of the library must not need boto3

            client = boto3.client("dynamodb")
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.consistent_read = consistent_read
        self._sleep = sleep
        self._clock = clock

    # -- reads ---------------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        unique = list(dict.fromkeys(keys))  # BatchGetItem rejects duplicate keys in one request
        found: dict[str, bytes] = {}
        for chunk in chunks(unique, GET_CHUNK):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{"k": {"S": k}} for k in chunk],
                    "ProjectionExpression": "k, v, #ttl",
                    "ExpressionAttributeNames": {"#ttl": "ttl"},  # TTL is a reserved word
                    "ConsistentRead": self.consistent_read,
                }
            }
            self._retrying(
                lambda req: self.client.batch_get_item(RequestItems=req),
                request,
                on_response=lambda resp: self._collect(resp, found),
                unprocessed_field="UnprocessedKeys",
            )
        return found

    def _collect(self, response: Mapping[str, Any], found: dict[str, bytes]) -> None:
        now = self._clock()
        for item in response.get("Responses", {}).get(self.table_name, []):
            expires = item.get("ttl")
            if expires is not None and float(expires["N"]) < now:
                continue  # DynamoDB deletes expired items lazily (up to days later): never serve them
            found[item["k"]["S"]] = bytes(item["v"]["B"])

    # -- writes --------------------------------------------------------------------------------------
    def put_many(self, items: Mapping[str, bytes]) -> None:
        expires = None if self.ttl_seconds is None else str(int(self._clock()) + self.ttl_seconds)
        records = list(items.items())
        for chunk in chunks(records, WRITE_CHUNK):
            requests = []
            for key, value in chunk:
                item: dict[str, Any] = {"k": {"S": key}, "v": {"B": value}}
                if expires is not None:
                    item["ttl"] = {"N": expires}
                requests.append({"PutRequest": {"Item": item}})
            self._retrying(
                lambda req: self.client.batch_write_item(RequestItems=req),
                {self.table_name: requests},
                on_response=None,
                unprocessed_field="UnprocessedItems",
            )

    # -- shared retry loop ---------------------------------------------------------------------------
    def _retrying(
        self,
        call: Callable[[dict[str, Any]], Mapping[str, Any]],
        request: dict[str, Any],
        *,
        on_response: Callable[[Mapping[str, Any]], None] | None,
        unprocessed_field: str,
    ) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        pending = request
        for attempt in range(self.max_attempts):
            try:
                response = call(pending)
            except (ClientError, BotoCoreError) as exc:
                if attempt + 1 >= self.max_attempts or not _retryable(exc):
                    raise CacheUnavailableError(f"DynamoDB {self.table_name}: {exc}") from exc
                self._backoff(attempt)
                continue
            if on_response is not None:
                on_response(response)
            pending = response.get(unprocessed_field) or {}
            if not pending:
                return
            if attempt + 1 < self.max_attempts:
                self._backoff(attempt)
        left = sum(len(v.get("Keys", v) if isinstance(v, dict) else v) for v in pending.values())
        raise CacheUnavailableError(
            f"DynamoDB {self.table_name}: {left} {unprocessed_field} left after {self.max_attempts} attempts"
        )

    def _backoff(self, attempt: int) -> None:
        # "Full jitter" (AWS Architecture Blog): spreads retries of concurrent environments apart.
        self._sleep(random.uniform(0, self.base_delay * (2**attempt)))


_RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


def _retryable(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in _RETRYABLE_CODES
    return True  # connection errors, timeouts: worth another try
