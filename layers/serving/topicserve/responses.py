"""Shaping what callers get back, the one place for it: predictions as JSON (the synchronous answer and
the stored result of a queued request share :func:`prediction_dict`), and errors as HTTP status + a clear
message."""

from __future__ import annotations

from typing import Any

from topicserve.errors import (
    IdempotencyKeyReusedError,
    InvalidInputError,
    PayloadTooLargeError,
    RequestInProgressError,
    UnknownModelError,
    UnprocessableTextError,
)
from topicserve.service import BatchResult, Prediction

#: Error messages quote what the caller sent; bound them so an error result stays small.
MAX_ERROR_MESSAGE_CHARS = 1_000


def prediction_dict(p: Prediction) -> dict[str, Any]:
    """One answer, naming the head version and stage that produced it (a canary answers its share)."""
    return {
        "label": p.label,
        "label_id": p.label_id,
        "top": p.top,
        "model_version": p.version,
        "stage": p.stage,
        "cached": {"prediction": p.cached, "embedding": p.embedding_cached},
    }


def model_predictions(result: BatchResult, model: str) -> dict[str, Any]:
    """The synchronous answer: one model's predictions for the texts of a request. ``model_version`` is
    the production version; each prediction names the version that answered it."""
    preds = result.predictions[model]
    return {
        "model": model,
        "model_version": result.versions[model],
        "encoder_version": result.encoder_version[:16],
        "predictions": [
            {**prediction_dict(p), "truncated": truncated}
            for p, truncated in zip(preds, result.truncated, strict=True)
        ],
    }


def request_result(models: list[str], result: BatchResult, i: int) -> dict[str, Any]:
    """The stored result of one queued request (row ``i`` of ``result``), with every model it asked for."""
    return {
        "status": "ok",
        "models": {m: prediction_dict(result.predictions[m][i]) for m in models},
        "encoder_version": result.encoder_version[:16],
        "truncated": result.truncated[i],
    }


def error_result(exc: BaseException) -> dict[str, Any]:
    """The stored result of a request that cannot be served: its error instead of predictions."""
    return {"status": "error", **error_body(exc)}


def status_for(exc: InvalidInputError) -> int:
    if isinstance(exc, UnknownModelError):
        return 404
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, UnprocessableTextError | IdempotencyKeyReusedError):
        return 422
    if isinstance(exc, RequestInProgressError):
        return 409
    return 400


def error_body(exc: BaseException) -> dict[str, Any]:
    """``{"error": {"type", "message"}}``; the message is bounded and always encodable as UTF-8 (it may
    quote a caller's text, lone surrogates included)."""
    message = str(exc).encode("utf-8", "backslashreplace").decode("utf-8") or type(exc).__name__
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."
    return {"error": {"type": type(exc).__name__, "message": message}}
