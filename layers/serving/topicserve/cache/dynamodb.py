"""DynamoDB adapter of :class:`~topicserve.cache.store.CacheStore`.

Table shape: partition key ``k`` (S), binary value ``v`` (B), and ``ttl`` (N, epoch seconds) enabled as the
table's TTL attribute so stale entries expire without a sweeper. Chunking and retries of the batch calls
live in :mod:`topicserve.dynamo`; a backend that stays unavailable surfaces as
:class:`CacheUnavailableError` so callers degrade rather than fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from topicserve.aws import aws_client
from topicserve.cache.store import CacheUnavailableError
from topicserve.dynamo import RetryPolicy, batch_get, batch_put
from topicserve.errors import BackendUnavailableError

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from topicserve.aws import DynamoDBClient


class DynamoDBStore:
    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        ttl_seconds: int | None = 7 * 24 * 3600,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        consistent_read: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        client = client or aws_client("dynamodb", serving=False)
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.retry = RetryPolicy(max_attempts=max_attempts, base_delay=base_delay, sleep=sleep)
        self.consistent_read = consistent_read
        self._clock = clock

    @property
    def errors(self) -> int:
        return 0  # it raises CacheUnavailableError instead: a TieredStore absorbs and counts those

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        unique = list(dict.fromkeys(keys))
        try:
            items = batch_get(
                self.client,
                self.table_name,
                [{"k": {"S": k}} for k in unique],
                retry=self.retry,
                projection="k, v, #ttl",
                names={"#ttl": "ttl"},  # TTL is a reserved word
                consistent=self.consistent_read,
            )
        except BackendUnavailableError as exc:
            raise CacheUnavailableError(str(exc)) from exc
        now = self._clock()
        found: dict[str, bytes] = {}
        for item in items:
            expires = item.get("ttl")
            if expires is not None and float(expires["N"]) < now:
                continue  # DynamoDB deletes expired items lazily (up to days later): never serve them
            found[item["k"]["S"]] = bytes(item["v"]["B"])
        return found

    def put_many(self, items: Mapping[str, bytes]) -> None:
        extra: dict[str, Any] = {}
        if self.ttl_seconds is not None:
            extra["ttl"] = {"N": str(int(self._clock()) + self.ttl_seconds)}
        records = [{"k": {"S": k}, "v": {"B": v}, **extra} for k, v in items.items()]
        try:
            batch_put(self.client, self.table_name, records, retry=self.retry)
        except BackendUnavailableError as exc:
            raise CacheUnavailableError(str(exc)) from exc
