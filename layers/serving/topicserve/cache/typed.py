"""Typed caches: embeddings and predictions over any :class:`~topicserve.cache.store.CacheStore`.

Both values are stored as raw little-endian float32 bytes (384 x 4 = 1,536 bytes per embedding, 80 bytes per
20-class probability vector): compact, exact (a cached embedding gives bit-identical predictions to a
fresh one) and cheap to decode, unlike JSON lists of floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from topicserve.cache.keys import embedding_key, prediction_key
from topicserve.cache.store import CacheStore

_DTYPE = np.dtype("<f4")


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=_DTYPE).tobytes()


def decode_vector(blob: bytes, size: int | None = None) -> np.ndarray:
    vector = np.frombuffer(blob, dtype=_DTYPE)
    if size is not None and vector.shape[0] != size:
        raise ValueError(f"cached vector has {vector.shape[0]} values, expected {size}")
    return vector


class EmbeddingCache:
    """Embeddings by text hash for one encoder version (shared by every head and head version)."""

    def __init__(self, store: CacheStore, encoder_version: str, dim: int = 384) -> None:
        self.store = store
        self.encoder_version = encoder_version
        self.dim = dim

    def get_many(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        keys = {embedding_key(h, self.encoder_version): h for h in text_hashes}
        found = self.store.get_many(keys)
        return {keys[k]: decode_vector(v, self.dim) for k, v in found.items()}

    def put_many(self, embeddings: Mapping[str, np.ndarray]) -> None:
        self.store.put_many(
            {embedding_key(h, self.encoder_version): encode_vector(e) for h, e in embeddings.items()}
        )


class PredictionCache:
    """Class-probability vectors by (text hash, head, head version, encoder version).

    Lookups and writes take several heads at once so that asking all four models for a batch costs one
    store round, not four.
    """

    def __init__(self, store: CacheStore, encoder_version: str) -> None:
        self.store = store
        self.encoder_version = encoder_version

    def _key(self, text_hash: str, head: str, head_version: str) -> str:
        return prediction_key(
            text_hash, head=head, head_version=head_version, encoder_version=self.encoder_version
        )

    def get_many_multi(
        self, wanted: Mapping[tuple[str, str], Sequence[str]]
    ) -> dict[tuple[str, str], dict[str, np.ndarray]]:
        """``{(head, version): {text_hash: probabilities}}`` for the pairs found among ``wanted``
        (``{(head, version): text hashes}``: a canary or shadow version is asked only for its texts)."""
        keys = {
            self._key(h, head, ver): ((head, ver), h)
            for (head, ver), hashes in wanted.items()
            for h in hashes
        }
        found: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for key, blob in self.store.get_many(keys).items():
            head_id, text = keys[key]
            found.setdefault(head_id, {})[text] = decode_vector(blob)
        return found

    def put_many_multi(self, values: Mapping[tuple[str, str], Mapping[str, np.ndarray]]) -> None:
        self.store.put_many(
            {
                self._key(h, head, ver): encode_vector(p)
                for (head, ver), per_text in values.items()
                for h, p in per_text.items()
            }
        )
