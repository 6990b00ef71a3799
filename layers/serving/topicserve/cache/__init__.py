"""Embedding and prediction caches behind one small key/value interface.

``keys`` is pure, ``typed`` owns the value encoding; ``store`` holds the interface and the in-process LRU;
``dynamodb`` is the only module that talks to AWS.
"""

from topicserve.cache.keys import embedding_key, prediction_key
from topicserve.cache.store import CacheStore, CacheUnavailableError, LRUStore, TieredStore
from topicserve.cache.typed import EmbeddingCache, PredictionCache

__all__ = [
    "CacheStore",
    "CacheUnavailableError",
    "EmbeddingCache",
    "LRUStore",
    "PredictionCache",
    "TieredStore",
    "embedding_key",
    "prediction_key",
]
