"""Cache keys: each names everything its value depends on.

An embedding depends on the text and the encoder; a prediction additionally on the head and its version.
So a new head version reuses every cached embedding (its key has no head in it), while a new encoder
version invalidates both embeddings and predictions (its version is in both keys).
"""

from __future__ import annotations

_SEP = "#"


def _check(part: str, what: str) -> str:
    if not part or _SEP in part:
        raise ValueError(f"{what} must be a non-empty string without {_SEP!r}: {part!r}")
    return part


def embedding_key(text_hash: str, encoder_version: str) -> str:
    return _SEP.join(("emb", _check(encoder_version, "encoder_version"), _check(text_hash, "text_hash")))


def prediction_key(text_hash: str, *, head: str, head_version: str, encoder_version: str) -> str:
    return _SEP.join(
        (
            "pred",
            _check(head, "head"),
            _check(head_version, "head_version"),
            _check(encoder_version, "encoder_version"),
            _check(text_hash, "text_hash"),
        )
    )
