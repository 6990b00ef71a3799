"""DynamoDB batch calls done right, shared by the caches and the results store; and the two calls every
store of sums makes (monitoring, label feedback, rollout records): read a partition, add to an item.

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
#: UpdateItem calls in flight per environment (:func:`update_each`; a pool of its own, made at first use)
UPDATE_CONCURRENCY = 8
_pools: dict[str, ThreadPoolExecutor] = {}
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


def partition(client: DynamoDBClient, table: str, key: str, value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every item whose partition key ``key`` is ``value`` (typed: ``{"S": ...}``), all pages of the Query."""
    query = pages(
        client.query,
        TableName=table,
        KeyConditionExpression=f"{key} = :key",
        ExpressionAttributeValues={":key": value},
    )
    return [item for page in query for item in page.get("Items", [])]


def add_numbers(
    client: DynamoDBClient,
    table: str,
    key: Mapping[str, Any],
    numbers: Mapping[str, Any],
    sets: Mapping[str, Mapping[str, Any]],
    *,
    number: Callable[[Any], str] = str,
    if_absent: Mapping[str, Mapping[str, Any]] | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """One UpdateItem of the item at ``key``: ``ADD`` each of ``numbers`` (attribute -> a number, which
    ``number`` writes as DynamoDB's string), atomic, so any number of environments add to the same item
    without reading it; ``SET`` each of ``sets`` (attribute -> a typed value), and each of ``if_absent``
    where the item has none yet. Every attribute goes by a placeholder, so reserved words need no care.
    With ``retry``, retried as the batch calls are (what fails after it: :class:`BackendUnavailableError`)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}

    def slot(attribute: str, value: Mapping[str, Any]) -> tuple[str, str]:
        name, placeholder = f"#a{len(names)}", f":a{len(names)}"
        names[name], values[placeholder] = attribute, value
        return name, placeholder

    added = [" ".join(slot(a, {"N": number(v)})) for a, v in numbers.items()]
    assigned = ["{} = {}".format(*slot(a, v)) for a, v in sets.items()]
    assigned += ["{0} = if_not_exists({0}, {1})".format(*slot(a, v)) for a, v in (if_absent or {}).items()]
    clauses = [f"ADD {', '.join(added)}" if added else "", f"SET {', '.join(assigned)}" if assigned else ""]
    request: dict[str, Any] = {
        "TableName": table,
        "Key": dict(key),
        "UpdateExpression": " ".join(c for c in clauses if c),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    if retry is None:
        client.update_item(**request)
        return
    _call_until_done(
        lambda req: client.update_item(**req),
        request,
        table=table,
        unprocessed_field="UnprocessedItems",  # an UpdateItem answer has none: done when it answers
        retry=retry,
    )


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


def _each(pool: str, size: int, work: Callable[[T], None], items: Sequence[T]) -> list[BaseException | None]:
    """``work`` on every one of ``items``, up to ``size`` at once in the process-wide pool ``pool`` (inline
    for a single item), every one attempted whatever the others do: each one's failure, None where it
    succeeded."""
    if len(items) <= 1:
        failures: list[BaseException | None] = []
        for item in items:
            try:
                work(item)
            except Exception as exc:
                failures.append(exc)
            else:
                failures.append(None)
        return failures
    with _pool_lock:
        if pool not in _pools:
            _pools[pool] = ThreadPoolExecutor(size, thread_name_prefix=f"dynamodb-{pool}")
        executor = _pools[pool]
    futures = [executor.submit(work, item) for item in items]
    return [f.exception() for f in futures]


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

    raise_first(_each("write", WRITE_CONCURRENCY, put, list(chunks(items, WRITE_CHUNK))))


def raise_first(failures: Sequence[BaseException | None]) -> None:
    """Raise the first failure of work that was all attempted (None: that part succeeded)."""
    for failure in failures:
        if failure is not None:
            raise failure


#: one UpdateItem: the item's key, the numbers to ``ADD``, the typed attributes to ``SET``
Update = tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Mapping[str, Any]]]


def update_each(
    client: DynamoDBClient, table: str, updates: Sequence[Update], *, retry: RetryPolicy | None
) -> list[BaseException | None]:
    """One UpdateItem per :data:`Update` (:func:`add_numbers`), up to ``UPDATE_CONCURRENCY`` in flight:
    UpdateItem cannot be batched, and one after the other the round trips are billed Lambda time (a
    five-model batch flushes five window sums). With ``retry``, each is retried as the batch calls are;
    without, it is tried once (for writes that wait for the next flush anyway: retries against a backend
    that is down would hold the request). Every update is attempted: each one's failure comes back in
    order, None where it was written."""

    def update(one: Update) -> None:
        add_numbers(client, table, one[0], one[1], one[2], retry=retry)

    return _each("update", UPDATE_CONCURRENCY, update, updates)


def set_attributes(
    client: DynamoDBClient,
    table: str,
    updates: Sequence[tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]]],
    *,
    retry: RetryPolicy,
) -> list[BaseException | None]:
    """:func:`update_each` that only ``SET``s: those attributes and no others, so what other writers set on
    the same item stays."""
    return update_each(client, table, [(key, {}, attributes) for key, attributes in updates], retry=retry)
