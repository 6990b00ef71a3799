"""Idempotent batch submissions: a retried ``POST /v1/batches`` never pays twice.

A caller that sends ``Idempotency-Key: <key>`` gets, for the same key and the same body within the window
(``IDEMPOTENCY_WINDOW_SECONDS``, an hour by default), the first 202 answer again, marked
``Idempotent-Replayed: true``: the same batch id, nothing created or enqueued again. The same key with
another body is refused (422); a retry that arrives while the first request is still being served gets a
409. Without the header nothing changes.

Built on Powertools' idempotency utility (``idempotent_function`` with a ``DynamoDBPersistenceLayer``), one
item per (caller, key) in the idempotency table:

* the record's id hashes the caller's API key id (``requestContext.identity.apiKeyId``) with the key, so
  two callers who pick the same key never see each other's batches;
* the body is compared by its SHA-256 (of the bytes sent, after API Gateway's base64), so "the same body"
  means the same bytes, as a retry sends them;
* only a 202 is recorded: a submission that fails (4xx, 503) deletes its in-progress record, so a
  corrected request with the same key is served afresh;
* an in-progress record expires with its invocation (Powertools reads the Lambda context's remaining
  time), so a request killed by a timeout does not lock its key for the whole window.

Powertools' idempotency package imports boto3 (~30 ms), so it is imported only where a table is set.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from topicserve.errors import (
    BackendUnavailableError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
    RequestInProgressError,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from topicserve.aws import DynamoDBClient

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 128
#: The records' ids are "<prefix>#<sha256 of [caller, key]>": stable whatever the function is named
KEY_PREFIX = "POST /v1/batches"

#: The submission itself: creates the batch, enqueues it, returns the 202 body
Work = Callable[[], dict[str, Any]]


def idempotency_key(event: Mapping[str, Any]) -> str | None:
    """The validated ``Idempotency-Key`` of an API Gateway proxy event (header names are case-insensitive);
    None without the header."""
    values = _header_values(event, HEADER)
    if not values:
        return None
    if len(set(values)) > 1:
        raise InvalidIdempotencyKeyError(f"send one {HEADER} header, not {len(set(values))} different ones")
    key = values[0]
    # printable ASCII, no space at either end (proxies may trim them, so such keys could not be told apart)
    if not (0 < len(key) <= MAX_KEY_CHARS and key.isascii() and key.isprintable() and key == key.strip()):
        raise InvalidIdempotencyKeyError(
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters, with no space at either "
            f"end (got {len(key)} characters)"
        )
    return key


def _header_values(event: Mapping[str, Any], name: str) -> list[str]:
    wanted = name.lower()
    values: list[str] = []
    for field in ("multiValueHeaders", "headers"):
        for header, value in (event.get(field) or {}).items():
            if isinstance(header, str) and header.lower() == wanted:
                listed = value if isinstance(value, list) else [value]
                values.extend(v for v in listed if isinstance(v, str))
    return values


def caller_of(event: Mapping[str, Any]) -> str:
    """The id of the API key API Gateway admitted the request with; "" where there is none (local tests)."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    api_key_id = identity.get("apiKeyId") if isinstance(identity, Mapping) else None
    return api_key_id if isinstance(api_key_id, str) else ""


def body_digest(body: str | bytes | None) -> str:
    raw = body if isinstance(body, bytes) else (body or "").encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Answer:
    """The 202 body of a submission, and whether it is the recorded answer of an earlier request."""

    body: dict[str, Any]
    replayed: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return {REPLAYED_HEADER: "true"} if self.replayed else {}


@dataclass(frozen=True)
class _Replay:
    """What Powertools returns for a completed record (its response hook), told apart from a fresh answer."""

    body: dict[str, Any]


def _replay(response: Any, idempotent_data: DataRecord) -> _Replay:
    return _Replay(response)


def _submit(*, request: dict[str, str], work: Work) -> dict[str, Any]:
    """What Powertools makes idempotent: ``request`` is what it keys and validates on, ``work`` runs once."""
    return work()


class BatchIdempotency:
    """``Idempotency-Key`` handling of ``POST /v1/batches``; with no table, the header is ignored."""

    def __init__(self, table: str, client: DynamoDBClient, *, window_seconds: int = 3600) -> None:
        if window_seconds < 1:
            raise ValueError(f"the idempotency window must be at least 1 s, got {window_seconds}")
        self.table = table
        self.window_seconds = window_seconds
        self._config: IdempotencyConfig | None = None
        self._submit: Callable[..., Any] | None = None
        if table:
            from aws_lambda_powertools.utilities.idempotency import (
                DynamoDBPersistenceLayer,
                IdempotencyConfig,
                idempotent_function,
            )

            # the layer's defaults are the template's table: partition key "id", TTL attribute "expiration"
            store = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
            self._config = IdempotencyConfig(
                event_key_jmespath="[caller, key]",
                payload_validation_jmespath="body",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=window_seconds,
                hash_function="sha256",
                response_hook=_replay,
            )
            self._submit = idempotent_function(
                _submit,
                data_keyword_argument="request",
                persistence_store=store,
                config=self._config,
                key_prefix=KEY_PREFIX,
            )

    def run(
        self, event: Mapping[str, Any], body: str | bytes | None, context: LambdaContext | None, work: Work
    ) -> Answer:
        """``work()``'s answer, or the recorded answer of the first request with this key and body.

        ``event``: the raw proxy event (headers, identity); ``body``: the raw body, as :func:`event_body`
        returns it; ``context``: the invocation's, whose remaining time bounds the in-progress record.
        """
        key = idempotency_key(event)
        if key is None:
            return Answer(work())
        if self._submit is None or self._config is None:
            logger.warning("Idempotency-Key ignored: no idempotency table is configured (IDEMPOTENCY_TABLE)")
            return Answer(work())
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyInconsistentStateError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        done: list[dict[str, Any]] = []

        def work_once() -> dict[str, Any]:
            done.append(work())
            return done[-1]

        self._config.lambda_context = context
        request = {"caller": caller_of(event), "key": key, "body": body_digest(body)}
        try:
            result = self._submit(request=request, work=work_once)
        except IdempotencyValidationError:
            raise IdempotencyKeyReusedError(
                f"this {HEADER} was used with another body in the last {self.window_seconds} s; a retry "
                f"must send the same body, and a new submission a new key"
            ) from None
        except (IdempotencyAlreadyInProgressError, IdempotencyInconsistentStateError):
            raise RequestInProgressError(
                f"a request with this {HEADER} is still being served; retry once it has answered"
            ) from None
        except IdempotencyPersistenceLayerError as exc:
            if done:  # the batch is queued, only its record failed: the caller must still learn its id
                batch = {"batch_id": done[0].get("batch_id")}
                logger.exception("Idempotency-Key: the answer could not be recorded", extra=batch)
                return Answer(done[0])
            raise BackendUnavailableError(
                f"the idempotency records are unavailable; retry with the same {HEADER}"
            ) from exc
        if isinstance(result, _Replay):
            batch = {"batch_id": result.body.get("batch_id")}
            logger.info("Idempotency-Key: the first answer replayed", extra=batch)
            return Answer(result.body, replayed=True)
        return Answer(result)
