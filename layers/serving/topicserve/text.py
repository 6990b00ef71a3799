"""Text validation, normalisation and hashing: the identity of a text for caching and deduplication.

Two requests whose texts differ only in Unicode composition or whitespace produce the same tokens, so they
must share one cache entry and one encoder pass. The hash is the key every cache is built on; it is a pure
function of the normalised text and therefore stable across processes, machines and Python versions.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from topicserve.errors import EmptyTextError, TextTooLongError, TextTypeError, TooManyTextsError

#: Default characters accepted per text. The encoder truncates to max_length tokens anyway; this bound only
#: stops a caller from making us hash, tokenise and ship megabytes for nothing.
DEFAULT_MAX_CHARS = 20_000

_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFC-compose and collapse whitespace runs to one space, trimming the ends.

    The WordPiece tokenizer splits on whitespace and composes characters itself, so this changes no token:
    it only lets equivalent texts meet in the caches.
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def text_hash(normalised_text: str) -> str:
    """sha256 hex of the UTF-8 bytes of an already normalised text."""
    return hashlib.sha256(normalised_text.encode("utf-8")).hexdigest()


def validate_text(text: object, *, max_chars: int = DEFAULT_MAX_CHARS, index: int | None = None) -> str:
    """Return the normalised text or raise a typed :class:`~topicserve.errors.InvalidInputError`.

    Documented behaviour for empty and whitespace-only texts: they are refused with :class:`EmptyTextError`
    (a 4xx for the caller) rather than classified, because any label we gave them would be noise.
    """
    where = f"texts[{index}]" if index is not None else "text"
    if not isinstance(text, str):
        raise TextTypeError(f"{where} must be a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise TextTooLongError(f"{where} has {len(text)} characters; the limit is {max_chars}")
    normalised = normalise(text)
    if not normalised:
        raise EmptyTextError(f"{where} is empty or whitespace only")
    return normalised


def validate_texts(
    texts: object, *, max_chars: int = DEFAULT_MAX_CHARS, max_texts: int | None = None
) -> list[str]:
    """Validate a list of texts as a whole: a non-empty list within the count limit, every item valid."""
    if not isinstance(texts, list | tuple):
        raise TextTypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise EmptyTextError("texts is an empty list")
    if max_texts is not None and len(texts) > max_texts:
        raise TooManyTextsError(f"{len(texts)} texts in one request; the limit is {max_texts}")
    return [validate_text(t, max_chars=max_chars, index=i) for i, t in enumerate(texts)]


def hash_all(normalised_texts: Iterable[str]) -> list[str]:
    return [text_hash(t) for t in normalised_texts]
