"""The record cache: one compact record per text (embedding + each head version's answer).

``keys`` (what a record depends on), ``record`` (its bytes) and ``admission`` (when it is worth a shared
write) are pure; ``store`` holds the key/value interface and the in-process LRU; ``typed`` puts them
together; ``dynamodb`` is the only module that talks to AWS.
"""

from topicserve.cache.admission import Doorkeeper
from topicserve.cache.keys import EncoderConfig, answer_id, record_key, tokens_hash
from topicserve.cache.record import Answer, TextRecord
from topicserve.cache.store import CacheStore, CacheUnavailableError, LRUStore, TieredStore
from topicserve.cache.typed import Lookup, RecordCache

__all__ = [
    "Answer",
    "CacheStore",
    "CacheUnavailableError",
    "Doorkeeper",
    "EncoderConfig",
    "LRUStore",
    "Lookup",
    "RecordCache",
    "TextRecord",
    "TieredStore",
    "answer_id",
    "record_key",
    "tokens_hash",
]
