"""Parsing and validation of what callers send: API bodies and SQS messages. Pure: no AWS, no models.

The documented shapes (also in docs/API.md and the OpenAPI description):

* ``POST /v1/predict/{model}``: ``{"text": "..."}`` or ``{"texts": ["...", ...]}``
* ``POST /v1/batches``: ``{"texts": [...], "models": [...]}`` or
  ``{"requests": [{"id": "...", "text": "...", "models": [...]}, ...]}`` (ids optional, unique); items
  are judged one by one: valid ones are queued, invalid ones rejected (listed, and answered with an
  error result), and only a body with nothing valid is refused
* ``GET /v1/batches/{id}?limit=N&next=TOKEN``: one page of results
* SQS message body, one request: ``{"batch_id": "...", "request_id": "...", "text": "...", "models":
  [...], "truncated": true}`` (``models`` optional: every model; ``truncated`` optional: the submitter cut
  the text to fit the message); its result is stored alone
* SQS message body, a chunk (what ``POST /v1/batches`` sends): ``{"batch_id": "...", "chunk": N,
  "requests": [{"request_id": "...", "text": "...", "models": [...], "truncated": true}, ...]}``; its
  results are stored as one item (topicserve.results), so a chunk is answered, or retried, as a whole
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import reprlib
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from topicserve.catalogue import check_models
from topicserve.errors import (
    EmptyTextError,
    InvalidInputError,
    InvalidRequestError,
    MalformedMessageError,
    PayloadTooLargeError,
    TooManyTextsError,
)
from topicserve.responses import error_body
from topicserve.settings import Settings
from topicserve.text import CheckedText, validate_text, validate_texts

# fullmatch only: "$" would also match before a trailing newline ("ok\n" is not an id)
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: Result ids of rejected items that had no usable id of their own ("~" never occurs in a request id)
_REJECTED_ID = re.compile(r"~[0-9]{1,9}")
_CHUNK_POSITION = re.compile(r"c#[0-9]{6,9}(\|[0-9]{1,4})?")  # a page ending inside a chunk (results.py)
MAX_CHUNK_NUMBER = 999_999
DEFAULT_PAGE_LIMIT = 100  # results of ~1-2 KB each: a page stays far below Lambda's 6 MB response limit
MAX_PAGE_LIMIT = 1_000


class ProxyEvent(Protocol):
    """What :func:`event_body` reads of a proxy event (:class:`topicserve.frontdoor.ProxyEvent`)."""

    @property
    def body(self) -> str | None: ...

    @property
    def is_base64_encoded(self) -> bool | None: ...


def event_body(event: ProxyEvent) -> str | bytes | None:
    """The raw body of an API Gateway proxy event, as bytes when API Gateway base64-encoded it.

    API Gateway base64-encodes bodies it cannot pass as text (binary, invalid UTF-8). Decoding them as
    UTF-8 up front (as Powertools' ``decoded_body`` did) raises ``UnicodeDecodeError`` before our validation
    runs, which the fuzz test found as a 502; bytes go through :func:`_load_json_object`, which refuses
    undecodable input with a 400 like any other invalid JSON.
    """
    body, is_base64_encoded = event.body, event.is_base64_encoded
    if body is None or not is_base64_encoded:
        return body
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("the body is marked base64 but is not valid base64") from None


def _load_json_object(body: str | bytes | None, *, max_bytes: int, what: str = "body") -> dict[str, Any]:
    if body is None or body == "" or body == b"":
        raise InvalidRequestError(f"the {what} is empty; send a JSON object")
    # surrogatepass: a str body can carry lone surrogates (the event's JSON had \ud800 escapes)
    size = len(body.encode("utf-8", "surrogatepass")) if isinstance(body, str) else len(body)
    if size > max_bytes:
        raise PayloadTooLargeError(f"the {what} has {size} bytes; the limit is {max_bytes}")
    try:
        data = json.loads(body, parse_int=_parse_int)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the {what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError(f"the {what} is nested too deeply to be a valid request") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"the {what} must be a JSON object, got {type(data).__name__}")
    return data


def load_json_object(body: str | bytes | None, *, max_bytes: int, what: str = "body") -> dict[str, Any]:
    """A request body as a JSON object, or a 4xx error saying what is wrong with it (other routes' bodies)."""
    return _load_json_object(body, max_bytes=max_bytes, what=what)


def _parse_int(digits: str) -> int | float:
    """JSON integers past Python's int conversion limit (``sys.get_int_max_str_digits``, 4,300 by default)
    parse as a float (inf) instead of failing the whole document: a message with such a number elsewhere
    can still be tied to its request. The sign counts as a digit here, which only errs on the safe side."""
    limit = sys.get_int_max_str_digits()
    return int(digits) if not limit or len(digits) <= limit else float(digits)


def _check_keys(data: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise InvalidRequestError(f"unexpected field(s) {extra} in {what}; allowed: {sorted(allowed)}")


def parse_predict(body: str | bytes | None, settings: Settings) -> list[CheckedText]:
    """The validated, normalised texts of a predict body (one text is a list of one)."""
    data = _load_json_object(body, max_bytes=settings.max_body_bytes)
    _check_keys(data, {"text", "texts"}, "the body")
    if ("text" in data) == ("texts" in data):
        raise InvalidRequestError('send exactly one of "text" (a string) or "texts" (a list of strings)')
    if "text" in data:
        return [validate_text(data["text"], max_chars=settings.max_text_chars)]
    return validate_texts(
        data["texts"], max_chars=settings.max_text_chars, max_texts=settings.max_texts_per_request
    )


@dataclass(frozen=True)
class QueuedRequest:
    """One unit of asynchronous work: one text for some models, answered under (batch_id, request_id)."""

    batch_id: str
    request_id: str
    text: str
    models: list[str]
    truncated: bool = False  # the text was cut to the character limit before it was queued

    def to_message(self) -> str:
        message: dict[str, Any] = {
            "batch_id": self.batch_id,
            "request_id": self.request_id,
            "text": self.text,
            "models": self.models,
        }
        if self.truncated:
            message["truncated"] = True
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class QueuedChunk:
    """Several requests of one batch in one SQS message: answered, and stored, as one unit."""

    batch_id: str
    chunk: int
    requests: list[QueuedRequest]

    def to_message(self) -> str:
        items = []
        for q in self.requests:
            item: dict[str, Any] = {"request_id": q.request_id, "text": q.text, "models": q.models}
            if q.truncated:
                item["truncated"] = True
            items.append(item)
        message = {"batch_id": self.batch_id, "chunk": self.chunk, "requests": items}
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def pack_chunks(requests: Sequence[QueuedRequest], *, max_texts: int, max_bytes: int) -> list[QueuedChunk]:
    """Consecutive requests in chunks of at most ``max_texts`` requests and ``max_bytes`` of message, in
    order, numbered from 0. Every request fits a message alone (the submission checked that), so every
    chunk holds at least one."""
    if max_texts < 1:
        raise ValueError(f"max_texts must be >= 1, got {max_texts}")
    chunks: list[QueuedChunk] = []
    current: list[QueuedRequest] = []
    for q in requests:
        trial = [*current, q]
        batch = q.batch_id
        if current and (
            len(trial) > max_texts or len(QueuedChunk(batch, 0, trial).to_message().encode()) > max_bytes
        ):
            chunks.append(QueuedChunk(batch, len(chunks), current))
            current = [q]
        else:
            current = trial
    if current:
        chunks.append(QueuedChunk(current[0].batch_id, len(chunks), current))
    if len(chunks) > MAX_CHUNK_NUMBER:
        raise TooManyTextsError(f"{len(chunks)} chunks in one batch; the limit is {MAX_CHUNK_NUMBER}")
    return chunks


def new_batch_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Rejected:
    """An item of a bulk submission that cannot be queued: answered at once with an error result."""

    index: int
    request_id: str  # its own id, or "~<index>" when it had no usable one
    error: InvalidInputError

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.request_id, **error_body(self.error)}


@dataclass(frozen=True)
class Submission:
    batch_id: str
    accepted: list[QueuedRequest]
    rejected: list[Rejected]
    bulk: bool | None = None  # what the body asked for ("bulk": true/false); None: the size decides

    @property
    def count(self) -> int:
        """Results the batch will hold: one per item, accepted or rejected."""
        return len(self.accepted) + len(self.rejected)


def parse_batch_submission(body: str | bytes | None, settings: Settings, served: Sequence[str]) -> Submission:
    """Validate a ``POST /v1/batches`` body item by item.

    Body-level faults (not JSON, wrong shape, too many items, invalid default ``models``) refuse the whole
    body; an invalid item is rejected alone. A body with no valid item at all is refused too, with every
    rejection listed (:class:`NothingValidError`).
    """
    data = _load_json_object(body, max_bytes=settings.max_body_bytes)
    _check_keys(data, {"texts", "requests", "models", "bulk"}, "the body")
    bulk = data.get("bulk")
    if bulk is not None and not isinstance(bulk, bool):
        raise InvalidRequestError('"bulk" must be true or false')
    if ("texts" in data) == ("requests" in data):
        raise InvalidRequestError('send exactly one of "texts" (a list of strings) or "requests" (a list)')
    default_models = check_models(data["models"], served) if "models" in data else list(served)
    key = "texts" if "texts" in data else "requests"
    items = data[key]
    if not isinstance(items, list):
        raise InvalidRequestError(f'"{key}" must be a list')
    if not items:
        raise EmptyTextError(f'"{key}" is an empty list')
    if len(items) > settings.max_requests_per_batch:
        raise TooManyTextsError(
            f"{len(items)} items in one batch; the limit is {settings.max_requests_per_batch}"
        )
    submission = Submission(new_batch_id(), [], [], bulk)
    seen: set[str] = set()
    for i, item in enumerate(items):
        try:
            request_id = str(i) if key == "texts" else _claim_id(item, i, seen)
        except InvalidInputError as exc:
            submission.rejected.append(Rejected(i, f"~{i}", exc))
            continue
        try:
            text, models = (item, default_models) if key == "texts" else _item_fields(item, i, served)
            where = f"texts[{i}]" if key == "texts" else f"requests[{i}].text"
            checked = validate_text(text, max_chars=settings.max_text_chars, where=where)
            queued = QueuedRequest(
                submission.batch_id, request_id, checked.text, models or default_models, checked.cut
            )
            size = len(queued.to_message().encode("utf-8"))
            if size > settings.max_message_bytes:
                raise PayloadTooLargeError(
                    f"item {i} makes a {size}-byte message; the queue takes {settings.max_message_bytes}"
                )
        except InvalidInputError as exc:
            submission.rejected.append(Rejected(i, request_id, exc))
        else:
            submission.accepted.append(queued)
    if not submission.accepted:
        raise NothingValidError(submission.rejected)
    return submission


def _claim_id(item: object, i: int, seen: set[str]) -> str:
    """The id of ``requests[i]`` (default: its index), valid and not taken by an earlier item."""
    request_id = item.get("id", str(i)) if isinstance(item, dict) else str(i)
    if not isinstance(request_id, str) or not _ID.fullmatch(request_id):
        raise InvalidRequestError(f"requests[{i}].id must match {_ID.pattern}")
    if request_id in seen:
        raise InvalidRequestError(f"requests[{i}].id {request_id!r} is not unique in this batch")
    seen.add(request_id)
    return request_id


def _item_fields(item: object, i: int, served: Sequence[str]) -> tuple[object, list[str] | None]:
    """The raw text and the models (None: the batch's default) of ``requests[i]``."""
    where = f"requests[{i}]"
    if not isinstance(item, dict):
        raise InvalidRequestError(f"{where} must be an object")
    _check_keys(item, {"id", "text", "models"}, where)
    models = check_models(item["models"], served, where=f"{where}.models") if "models" in item else None
    return item.get("text"), models


class NothingValidError(InvalidRequestError):
    """A bulk submission none of whose items can be queued (HTTP 400, every rejection listed)."""

    def __init__(self, rejected: list[Rejected]) -> None:
        first = rejected[0].error if rejected else None
        super().__init__(f"no valid item in the batch ({len(rejected)} rejected); the first: {first}")
        self.rejected = rejected


@dataclass(frozen=True)
class MessageError:
    """A parseable message whose request is invalid: it gets an error *result*, not a retry."""

    batch_id: str
    request_id: str
    error: InvalidInputError


@dataclass(frozen=True)
class ParsedChunk:
    """A chunk message: its requests in order, each valid or an error result of its own."""

    batch_id: str
    chunk: int
    items: list[QueuedRequest | MessageError]


def parse_message(
    body: str, settings: Settings, served: Sequence[str]
) -> QueuedRequest | MessageError | ParsedChunk:
    """Parse one SQS message body: one request, or a chunk of them.

    Raises :class:`MalformedMessageError` when the message cannot be tied to its requests (not JSON, no
    ids, a chunk without a number or a list of uniquely identified requests): those go back to the queue
    and on to the DLQ. A request with valid ids but an invalid text or model is answered with an error
    result instead, because retrying it can never succeed.
    """
    try:
        data = _load_json_object(body, max_bytes=settings.max_message_bytes, what="message")
    except InvalidInputError as exc:
        raise MalformedMessageError(str(exc)) from exc
    if "chunk" in data and "request_id" not in data:  # with a request id it is one request (extra keys)
        return _parse_chunk(data, settings, served)
    batch_id, request_id = _ids(data, ("batch_id", "request_id"))
    return _parse_request(data, batch_id, request_id, settings, served, {"batch_id", "request_id"})


def _ids(data: dict[str, Any], names: Sequence[str]) -> list[str]:
    found = []
    for name in names:
        value = data.get(name)
        if not isinstance(value, str) or not _ID.fullmatch(value):
            got = reprlib.repr(value)  # bounded: the value may be huge or nested hundreds deep
            raise MalformedMessageError(f"message field {name} must match {_ID.pattern}, got {got}")
        found.append(value)
    return found


def _parse_request(
    data: dict[str, Any],
    batch_id: str,
    request_id: str,
    settings: Settings,
    served: Sequence[str],
    id_keys: set[str],
) -> QueuedRequest | MessageError:
    try:
        _check_keys(data, {*id_keys, "text", "models", "truncated"}, "the message")
        models = check_models(data["models"], served) if "models" in data else list(served)
        truncated = data.get("truncated", False)
        if not isinstance(truncated, bool):
            raise InvalidRequestError("message field truncated must be true or false")
        checked = validate_text(data.get("text"), max_chars=settings.max_text_chars)
    except InvalidInputError as exc:
        return MessageError(batch_id, request_id, exc)
    return QueuedRequest(batch_id, request_id, checked.text, models, truncated or checked.cut)


def _parse_chunk(data: dict[str, Any], settings: Settings, served: Sequence[str]) -> ParsedChunk:
    (batch_id,) = _ids(data, ("batch_id",))
    chunk, requests = data.get("chunk"), data.get("requests")
    if set(data) != {"batch_id", "chunk", "requests"}:
        raise MalformedMessageError('a chunk message has exactly "batch_id", "chunk" and "requests"')
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 <= chunk <= MAX_CHUNK_NUMBER:
        raise MalformedMessageError(f"message field chunk must be an integer 0..{MAX_CHUNK_NUMBER}")
    if not isinstance(requests, list) or not requests:
        raise MalformedMessageError("message field requests must be a non-empty list")
    items: list[QueuedRequest | MessageError] = []
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict):
            raise MalformedMessageError("every item of requests must be an object")
        (request_id,) = _ids(item, ("request_id",))
        if request_id in seen:
            raise MalformedMessageError(f"request_id {request_id!r} twice in one chunk")
        seen.add(request_id)
        items.append(_parse_request(item, batch_id, request_id, settings, served, {"request_id"}))
    return ParsedChunk(batch_id, chunk, items)


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_PAGE_LIMIT
    after: str | None = None  # the last request id of the previous page


def parse_page_request(query: Mapping[str, str] | None) -> PageRequest:
    """``limit`` (1..1000, default 100) and ``next`` (the opaque token of the previous page)."""
    query = query or {}
    _check_keys(dict(query), {"limit", "next"}, "the query string")
    limit = DEFAULT_PAGE_LIMIT
    if "limit" in query:
        raw = query["limit"]
        if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 4):
            raise InvalidRequestError(f"limit must be an integer from 1 to {MAX_PAGE_LIMIT}")
        limit = int(raw)
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise InvalidRequestError(f"limit must be an integer from 1 to {MAX_PAGE_LIMIT}, got {limit}")
    after = decode_page_token(query["next"]) if "next" in query else None
    return PageRequest(limit, after)


def encode_page_token(request_id: str) -> str:
    return base64.urlsafe_b64encode(request_id.encode("utf-8")).decode("ascii").rstrip("=")


def decode_page_token(token: object) -> str:
    bad = InvalidRequestError("next is not a token this API returned; pass the previous page's next")
    if not isinstance(token, str) or not token.isascii() or len(token) > 200:
        raise bad
    try:
        request_id = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise bad from None
    if not (
        _ID.fullmatch(request_id)
        or _REJECTED_ID.fullmatch(request_id)
        or _CHUNK_POSITION.fullmatch(request_id)
    ):
        raise bad
    return request_id


def check_batch_id(batch_id: object) -> str:
    if not isinstance(batch_id, str) or not _ID.fullmatch(batch_id):
        raise InvalidRequestError(f"batch ids match {_ID.pattern}")
    return batch_id
