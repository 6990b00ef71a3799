"""Text validation, normalisation and hashing: the identity of a text for caching and deduplication.

Two requests whose texts differ only in Unicode composition, whitespace or characters the tokenizer
ignores produce the same tokens, so they must share one cache entry and one encoder pass. The hash is the
key every cache is built on; it is a pure function of the normalised text and therefore stable across
processes, machines and Python versions.

The rules every path follows (docs/API.md "Input rules, the same on both paths", docs/RELIABILITY.md):

* whitespace runs become one space, the ends are trimmed, the text is NFC-composed;
* characters the encoder's tokenizer drops anyway are removed: control and format characters, private-use
  code points, lone UTF-16 surrogates (JSON can carry them as ``\\ud800`` escapes, UTF-8 cannot encode
  them) and U+FFFD, plus the noncharacters U+FFFE/U+FFFF (SQS refuses them); removing them here is what
  keeps hashing, queueing and storing such a text from failing;
* a text with nothing left is empty: refused (HTTP 400, or an error result in a bulk submission);
* a text is never refused for its length: only its first ``max_chars`` characters are kept (a cost guard
  sized so that one text always fits one SQS message) and the answer says ``truncated: true``; the
  encoder itself reads the first ``ENCODER_MAX_LENGTH`` tokens, as sentence-transformers does.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from topicserve.errors import EmptyTextError, TextTypeError, TooManyTextsError

#: Characters kept per text. 4 UTF-8 bytes per character at most (whitespace runs are already collapsed,
#: control characters removed), so 50,000 characters plus the message envelope fit one 256 KiB SQS message.
DEFAULT_MAX_CHARS = 50_000
#: Bumped whenever :func:`normalise` changes what it keeps: part of every cache key, because the record of a
#: text is found by the tokens of its normalised form.
NORMALISER_VERSION = 1

_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r" {2,}")
# Cc (whitespace is already a space by then), Cf (as of Unicode 15.1), Cs, Co and U+FFFD: what the
# tokenizer's BertNormalizer(clean_text=True) removes. Unassigned code points (Cn) stay, as it keeps them,
# except the noncharacters U+FFFE and U+FFFF: never text, and SQS refuses messages that carry them.
_IGNORED = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ufffd-\uffff\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
    "\ud800-\udfff\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd]"
)


@dataclass(frozen=True)
class CheckedText:
    """A validated text: normalised, at most ``max_chars`` long, and whether the caller's text was cut."""

    text: str
    cut: bool = False


def normalise(text: str) -> str:
    """Collapse whitespace, drop what the tokenizer ignores, NFC-compose, trim.

    The WordPiece tokenizer splits on whitespace, composes characters and drops the ignored ones itself,
    so this changes no token: it only lets equivalent texts meet in the caches, and makes every text
    encodable as UTF-8.
    """
    text = _IGNORED.sub("", _WHITESPACE.sub(" ", text))
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def text_hash(normalised_text: str) -> str:
    """sha256 hex of the UTF-8 bytes of an already normalised text."""
    return hashlib.sha256(normalised_text.encode("utf-8")).hexdigest()


def validate_text(
    text: object, *, max_chars: int = DEFAULT_MAX_CHARS, index: int | None = None, where: str | None = None
) -> CheckedText:
    """The normalised text, cut to ``max_chars``, or a typed :class:`~topicserve.errors.InvalidInputError`.

    Documented behaviour for empty and whitespace-only texts: they are refused with :class:`EmptyTextError`
    (a 4xx for the caller) rather than classified, because any label we gave them would be noise.
    """
    where = where or (f"texts[{index}]" if index is not None else "text")
    if not isinstance(text, str):
        raise TextTypeError(f"{where} must be a string, got {type(text).__name__}")
    normalised = normalise(text)
    if not normalised:
        raise EmptyTextError(f"{where} is empty or whitespace only (after removing invisible characters)")
    if len(normalised) <= max_chars:
        return CheckedText(normalised)
    return CheckedText(normalised[:max_chars].rstrip(), cut=True)


def validate_texts(
    texts: object, *, max_chars: int = DEFAULT_MAX_CHARS, max_texts: int | None = None
) -> list[CheckedText]:
    """Validate a list of texts as a whole: a non-empty list within the count limit, every item valid."""
    if not isinstance(texts, list | tuple):
        raise TextTypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise EmptyTextError("texts is an empty list")
    if max_texts is not None and len(texts) > max_texts:
        raise TooManyTextsError(f"{len(texts)} texts in one request; the limit is {max_texts}")
    return [validate_text(t, max_chars=max_chars, index=i) for i, t in enumerate(texts)]
