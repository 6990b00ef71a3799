"""Parsing and validation of what callers send: API bodies and SQS messages. Pure: no AWS, no models.

The documented shapes (also in the README and the OpenAPI description):

* ``POST /v1/predict/{model}``: ``{"text": "..."}`` or ``{"texts": ["...", ...]}``
* ``POST /v1/batches``: ``{"texts": [...], "models": [...]}`` or
  ``{"requests": [{"id": "...", "text": "...", "models": [...]}, ...]}`` (ids optional, unique)
* SQS message body: ``{"batch_id": "...", "request_id": "...", "text": "...", "models": [...]}``
  (``models`` optional: every model)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from topicserve.errors import (
    InvalidInputError,
    InvalidRequestError,
    MalformedMessageError,
    PayloadTooLargeError,
    TooManyTextsError,
    UnknownModelError,
)
from topicserve.settings import Settings
from topicserve.text import validate_text, validate_texts

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def event_body(event: Any) -> str | bytes | None:
    """The raw body of an API Gateway proxy event, as bytes when API Gateway base64-encoded it.

    API Gateway base64-encodes bodies it cannot pass as text (binary, invalid UTF-8). Powertools'
    ``decoded_body`` then decodes them as UTF-8 and raises ``UnicodeDecodeError`` before our validation
    runs, which the fuzz test found as a 502; bytes go through :func:`_load_json_object`, which refuses
    undecodable input with a 400 like any other invalid JSON. ``event``: Powertools' proxy event.
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
    size = len(body.encode("utf-8")) if isinstance(body, str) else len(body)
    if size > max_bytes:
        raise PayloadTooLargeError(f"the {what} has {size} bytes; the limit is {max_bytes}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the {what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"the {what} must be a JSON object, got {type(data).__name__}")
    return data


def _check_keys(data: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise InvalidRequestError(f"unexpected field(s) {extra} in {what}; allowed: {sorted(allowed)}")


def check_models(models: object, served: Sequence[str], *, where: str = "models") -> list[str]:
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise InvalidRequestError(f"{where} must be a list of model names")
    if not models:
        raise InvalidRequestError(f"{where} is an empty list; omit it to ask every model")
    unknown = [m for m in models if m not in served]
    if unknown:
        raise UnknownModelError(f"unknown model(s) {unknown}; served: {sorted(served)}")
    return list(dict.fromkeys(models))


def parse_predict(body: str | bytes | None, settings: Settings) -> list[str]:
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

    def to_message(self) -> str:
        return json.dumps(
            {
                "batch_id": self.batch_id,
                "request_id": self.request_id,
                "text": self.text,
                "models": self.models,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


def new_batch_id() -> str:
    return uuid.uuid4().hex


def parse_batch_submission(
    body: str | bytes | None, settings: Settings, served: Sequence[str]
) -> list[QueuedRequest]:
    """Validate a whole ``POST /v1/batches`` body up front: a batch is accepted entirely or refused."""
    data = _load_json_object(body, max_bytes=settings.max_body_bytes)
    _check_keys(data, {"texts", "requests", "models"}, "the body")
    if ("texts" in data) == ("requests" in data):
        raise InvalidRequestError('send exactly one of "texts" (a list of strings) or "requests" (a list)')
    default_models = check_models(data["models"], served) if "models" in data else list(served)
    batch_id = new_batch_id()
    if "texts" in data:
        texts = validate_texts(
            data["texts"], max_chars=settings.max_text_chars, max_texts=settings.max_requests_per_batch
        )
        return [QueuedRequest(batch_id, str(i), t, default_models) for i, t in enumerate(texts)]

    items = data["requests"]
    if not isinstance(items, list):
        raise InvalidRequestError('"requests" must be a list of objects')
    if not items:
        raise InvalidRequestError('"requests" is an empty list')
    if len(items) > settings.max_requests_per_batch:
        raise TooManyTextsError(
            f"{len(items)} requests in one batch; the limit is {settings.max_requests_per_batch}"
        )
    out: list[QueuedRequest] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"requests[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"{where} must be an object")
        _check_keys(item, {"id", "text", "models"}, where)
        request_id = item.get("id", str(i))
        if not isinstance(request_id, str) or not _ID.match(request_id):
            raise InvalidRequestError(f"{where}.id must match {_ID.pattern}")
        if request_id in seen:
            raise InvalidRequestError(f"{where}.id {request_id!r} is not unique in this batch")
        seen.add(request_id)
        models = (
            check_models(item["models"], served, where=f"{where}.models")
            if "models" in item
            else default_models
        )
        text = validate_text(item.get("text"), max_chars=settings.max_text_chars, index=i)
        out.append(QueuedRequest(batch_id, request_id, text, models))
    return out


@dataclass(frozen=True)
class MessageError:
    """A parseable message whose request is invalid: it gets an error *result*, not a retry."""

    batch_id: str
    request_id: str
    error: InvalidInputError


def parse_message(body: str, settings: Settings, served: Sequence[str]) -> QueuedRequest | MessageError:
    """Parse one SQS message body.

    Raises :class:`MalformedMessageError` when the message cannot be tied to a request (not JSON, no ids):
    those go back to the queue and on to the DLQ. A message with valid ids but an invalid request is
    answered with an error result instead, because retrying it can never succeed.
    """
    try:
        data = _load_json_object(body, max_bytes=settings.max_message_bytes, what="message")
    except InvalidInputError as exc:
        raise MalformedMessageError(str(exc)) from exc
    batch_id, request_id = data.get("batch_id"), data.get("request_id")
    for name, value in (("batch_id", batch_id), ("request_id", request_id)):
        if not isinstance(value, str) or not _ID.match(value):
            raise MalformedMessageError(f"message field {name} must match {_ID.pattern}, got {value!r}")
    assert isinstance(batch_id, str) and isinstance(request_id, str)
    try:
        _check_keys(data, {"batch_id", "request_id", "text", "models"}, "the message")
        models = check_models(data["models"], served) if "models" in data else list(served)
        text = validate_text(data.get("text"), max_chars=settings.max_text_chars)
    except InvalidInputError as exc:
        return MessageError(batch_id, request_id, exc)
    return QueuedRequest(batch_id, request_id, text, models)
