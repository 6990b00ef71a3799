"""DynamoDB batch calls done right, shared by the caches and the results store.

BatchGetItem takes at most 100 keys and BatchWriteItem 25 items, and under throttling both hand part of
the work back as ``UnprocessedKeys`` / ``UnprocessedItems``. These helpers chunk, retry what comes back
with exponential backoff and full jitter, retry throttling and connection errors, and raise
:class:`BackendUnavailableError` when work is still left after the last attempt, so nothing is lost silently.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from topicserve.errors import TRANSIENT_CODES, BackendUnavailableError

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from topicserve.aws import DynamoDBClient

GET_CHUNK = 100
WRITE_CHUNK = 25
#: BatchWriteItem calls in flight per environment (one process-wide pool, made at first use)
WRITE_CONCURRENCY = 4
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
T = TypeVar("T")


def pages(call: Callable[..., Mapping[str, Any]], **kwargs: Any) -> Iterator[Mapping[str, Any]]:
    """Every page of a paginated Query or Scan (``call`` is the client's ``query`` or ``scan``)."""
    while True:
        page = call(**kwargs)
        yield page
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.05
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def backoff(self, attempt: int) -> None:
        # "Full jitter" (AWS Architecture Blog): spreads retries of concurrent environments apart.
        self.sleep(random.uniform(0, self.base_delay * (2**attempt)))


def _retryable(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES
    return True  # connection errors, timeouts: worth another try


def _call_until_done(
    call: Callable[[dict[str, Any]], Mapping[str, Any]],
    request: dict[str, Any],
    *,
    table: str,
    unprocessed_field: str,
    retry: RetryPolicy,
    on_response: Callable[[Mapping[str, Any]], None] | None = None,
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    pending = request
    for attempt in range(retry.max_attempts):
        try:
            response = call(pending)
        except (ClientError, BotoCoreError) as exc:
            if attempt + 1 >= retry.max_attempts or not _retryable(exc):
                raise BackendUnavailableError(f"DynamoDB {table}: {exc}") from exc
            retry.backoff(attempt)
            continue
        if on_response is not None:
            on_response(response)
        pending = response.get(unprocessed_field) or {}
        if not pending:
            return
        if attempt + 1 < retry.max_attempts:
            retry.backoff(attempt)
    left = sum(len(v["Keys"]) if isinstance(v, dict) else len(v) for v in pending.values())
    raise BackendUnavailableError(
        f"DynamoDB {table}: {left} {unprocessed_field} left after {retry.max_attempts} attempts"
    )


def batch_get(
    client: DynamoDBClient,
    table: str,
    keys: Sequence[dict[str, Any]],
    *,
    retry: RetryPolicy,
    projection: str | None = None,
    names: dict[str, str] | None = None,
    consistent: bool = False,
) -> list[dict[str, Any]]:
    """Every item found for ``keys`` (which must be distinct: DynamoDB rejects duplicates)."""
    items: list[dict[str, Any]] = []
    for chunk in chunks(keys, GET_CHUNK):
        spec: dict[str, Any] = {"Keys": list(chunk), "ConsistentRead": consistent}
        if projection:
            spec["ProjectionExpression"] = projection
        if names:
            spec["ExpressionAttributeNames"] = names
        _call_until_done(
            lambda req: client.batch_get_item(RequestItems=req),
            {table: spec},
            table=table,
            unprocessed_field="UnprocessedKeys",
            retry=retry,
            on_response=lambda resp: items.extend(resp.get("Responses", {}).get(table, [])),
        )
    return items


def _writers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(WRITE_CONCURRENCY, thread_name_prefix="dynamodb-write")
        return _pool


def batch_put(
    client: DynamoDBClient,
    table: str,
    items: Sequence[dict[str, Any]],
    *,
    retry: RetryPolicy,
) -> None:
    """Write ``items`` in chunks of 25, up to ``WRITE_CONCURRENCY`` chunks in flight.

    Why concurrently: a batch of 100 texts writes 4 chunks per table, and one after the other their round
    trips are billed Lambda time spent waiting (botocore clients are thread-safe). Every chunk is
    attempted even when one fails; the first failure is raised after all have finished.
    """

    def put(chunk: Sequence[dict[str, Any]]) -> None:
        _call_until_done(
            lambda req: client.batch_write_item(RequestItems=req),
            {table: [{"PutRequest": {"Item": item}} for item in chunk]},
            table=table,
            unprocessed_field="UnprocessedItems",
            retry=retry,
        )

    parts = list(chunks(items, WRITE_CHUNK))
    if len(parts) <= 1:
        for part in parts:
            put(part)
        return
    futures = [_writers().submit(put, part) for part in parts]
    errors = [exc for f in futures if (exc := f.exception()) is not None]
    if errors:
        raise errors[0]
