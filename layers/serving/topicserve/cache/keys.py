"""Cache keys: each names everything its value depends on, so two configurations never share a key.

A text's cache record holds its embedding and the answers of the head versions that scored it. The
embedding depends on exactly what the encoder reads (the token ids, after the tokenizer's own
normalisation, lowercasing and truncation) and on how it was made and stored (:class:`EncoderConfig`);
an answer additionally on its head and head version, which name it *inside* the record. So:

* texts that differ only in what the tokenizer folds away (case: the encoder is uncased; accents;
  invisible characters; anything past the ``max_length``-th token) share one record, because their ids are
  identical;
* a new head version finds the record and reuses its embedding (it adds its answer);
* a new encoder, tokenizer, maximum length, normaliser, served batch size (INT8 activations are quantised
  per batch, so an embedding depends on its batch mates) or stored precision is another fingerprint, hence
  other keys: it can neither read nor overwrite another configuration's records.

Pure: no AWS, no numpy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

#: bumped when the record's key layout changes
KEY_SCHEMA = "r1"
_SEP = "#"


@dataclass(frozen=True)
class EncoderConfig:
    """Everything an embedding depends on besides the token ids. Every field is part of the fingerprint
    (``tests/unit/test_cache_keys.py`` changes each one and checks that the key changes)."""

    encoder: str  # sha256 of the encoder graph (its version)
    tokenizer: str  # sha256 of tokenizer.json
    max_length: int  # tokens the encoder reads
    batch_size: int  # texts per encoder call (catalogue.SERVED_BATCH_SIZE when serving)
    normaliser: int  # topicserve.text.NORMALISER_VERSION
    embedding_format: str  # how the record stores the embedding (topicserve.cache.record.EMBEDDING_FORMAT)

    def __post_init__(self) -> None:
        for name in ("encoder", "tokenizer", "embedding_format"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"EncoderConfig.{name} must be a non-empty string, got {value!r}")
        for name in ("max_length", "batch_size", "normaliser"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"EncoderConfig.{name} must be an int >= 0, got {value!r}")

    def fingerprint(self) -> str:
        """16 hex digits of the sha256 of every field, by name (64 bits: configurations number in the
        tens, so a collision is as good as impossible, and the key stays short: item size is money)."""
        canonical = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def tokens_hash(ids: Sequence[int]) -> str:
    """128 bits of the sha256 of the token ids (little-endian uint32): the text as the encoder sees it."""
    return hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest()[:32]


def record_key(token_hash: str, config: EncoderConfig) -> str:
    if not token_hash or _SEP in token_hash:
        raise ValueError(f"token_hash must be a non-empty string without {_SEP!r}: {token_hash!r}")
    return _SEP.join((KEY_SCHEMA, config.fingerprint(), token_hash))


def answer_id(head: str, version: str) -> str:
    """The name of a head version's answer inside a record."""
    for part, what in ((head, "head"), (version, "head version")):
        if not part or "@" in part:
            raise ValueError(f"{what} must be a non-empty string without '@': {part!r}")
    return f"{head}@{version}"
