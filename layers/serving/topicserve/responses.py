"""Shaping what callers get back: predictions as JSON, and errors as HTTP status + a clear message."""

from __future__ import annotations

from typing import Any

from topicserve.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    UnknownModelError,
    UnprocessableTextError,
)
from topicserve.service import BatchResult

#: Error messages quote what the caller sent; bound them so an error result stays small.
MAX_ERROR_MESSAGE_CHARS = 1_000


def model_predictions(result: BatchResult, model: str) -> dict[str, Any]:
    """One model's answer for the texts of a request."""
    preds = result.predictions[model]
    return {
        "model": model,
        "model_version": result.versions[model],
        "encoder_version": result.encoder_version[:16],
        "predictions": [
            {**p.to_dict(), "truncated": truncated}
            for p, truncated in zip(preds, result.truncated, strict=True)
        ],
    }


def status_for(exc: InvalidInputError) -> int:
    if isinstance(exc, UnknownModelError):
        return 404
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, UnprocessableTextError):
        return 422
    return 400


def error_body(exc: BaseException) -> dict[str, Any]:
    """``{"error": {"type", "message"}}``; the message is bounded and always encodable as UTF-8 (it may
    quote a caller's text, lone surrogates included)."""
    message = str(exc).encode("utf-8", "backslashreplace").decode("utf-8") or type(exc).__name__
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."
    return {"error": {"type": type(exc).__name__, "message": message}}
