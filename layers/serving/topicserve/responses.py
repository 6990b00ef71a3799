"""Shaping what callers get back: predictions as JSON, and errors as HTTP status + a clear message."""

from __future__ import annotations

from typing import Any

from topicserve.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    UnknownModelError,
)
from topicserve.service import BatchResult


def model_predictions(result: BatchResult, model: str, indices: list[int] | None = None) -> dict[str, Any]:
    """One model's answer for the texts of a request (all of them, or those at ``indices``)."""
    preds = result.predictions[model]
    chosen = preds if indices is None else [preds[i] for i in indices]
    return {
        "model": model,
        "model_version": result.versions[model],
        "encoder_version": result.encoder_version[:16],
        "predictions": [p.to_dict() for p in chosen],
    }


def status_for(exc: InvalidInputError) -> int:
    if isinstance(exc, UnknownModelError):
        return 404
    if isinstance(exc, PayloadTooLargeError):
        return 413
    return 400


def error_body(exc: BaseException) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": str(exc)}}
