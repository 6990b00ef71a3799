"""The record cache: one :class:`~topicserve.cache.record.TextRecord` per text over any cache store.

Reads try the in-process LRU first and ask the shared tier (DynamoDB) only for what it lacks, in one
round. Writes fill the LRU with every record and the shared tier only with the records that
:class:`~topicserve.cache.admission.Doorkeeper` admits (a key's second sighting in this environment).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from topicserve.cache.admission import Doorkeeper, ReadGate
from topicserve.cache.keys import EncoderConfig, record_key
from topicserve.cache.record import TextRecord
from topicserve.cache.store import CacheStore, TieredStore

logger = logging.getLogger(__name__)


@dataclass
class Lookup:
    """What one lookup found, by token hash, and which keys this environment had sighted before."""

    records: dict[str, TextRecord] = field(default_factory=dict)
    repeated: set[str] = field(default_factory=set)  # token hashes sighted here before this lookup
    # repeated token hashes whose record this environment has but (probably) the shared tier has not:
    # their second sighting is what admits them, even when nothing new was computed for them
    unshared: set[str] = field(default_factory=set)
    shared_reads: int = 0  # keys asked of the shared tier


class RecordCache:
    def __init__(
        self,
        store: CacheStore,
        config: EncoderConfig,
        *,
        dim: int = 384,
        doorkeeper: Doorkeeper | None = None,
        read_gate: ReadGate | None = None,
        use_answers: bool = True,
    ) -> None:
        self.store = store
        self.config = config
        self.dim = dim
        # None: every record is shared (no admission), as a store without a shared tier needs none
        self.doorkeeper = doorkeeper
        # keys (probably) in the shared tier: read from it or written to it by this environment
        self.shared = Doorkeeper(doorkeeper.capacity) if doorkeeper is not None else None
        self.use_answers = use_answers  # False: answers are not read from records (heads always run)
        self.read_gate = read_gate  # None: every key the LRU lacks is read from the shared tier

    def key(self, token_hash: str) -> str:
        return record_key(token_hash, self.config)

    def get_many(self, token_hashes: Sequence[str]) -> Lookup:
        keys = {self.key(t): t for t in dict.fromkeys(token_hashes)}
        lookup = Lookup()
        if self.doorkeeper is not None:
            lookup.repeated = {t for k, t in keys.items() if self.doorkeeper.sighted(k)}
        from_back: set[str] = set()
        first = {k for k, t in keys.items() if t not in lookup.repeated}
        gate = self.read_gate
        if isinstance(self.store, TieredStore):
            asked: set[str] = set()

            def ask(key: str) -> bool:  # a key seen before here is always read; a first sighting if it pays
                if key not in first or gate is None or gate.admits(key):
                    asked.add(key)
                    return True
                return False

            found, lookup.shared_reads, from_back = self.store.get_many_counted(keys, ask)
            if gate is not None:
                gate.observe(len(asked & first), len(from_back & first))
        else:
            found = self.store.get_many(keys)
        if self.shared is not None:
            for k in from_back:
                self.shared.sighted(k)
        for k, blob in found.items():
            try:
                record = TextRecord.decode(blob, self.dim)
            except (ValueError, IndexError) as exc:  # another format or a damaged item: a miss
                logger.warning("unreadable cache record %s ignored: %s", k, exc)
                continue
            if not self.use_answers:
                record.answers.clear()
            lookup.records[keys[k]] = record
        if self.shared is not None:
            lookup.unshared = {
                t for t in lookup.repeated if t in lookup.records and self.key(t) not in self.shared
            }
        return lookup

    def put_many(self, records: Mapping[str, TextRecord], *, admitted: Collection[str] | None = None) -> int:
        """Store ``records`` (by token hash); with a doorkeeper the shared tier takes only the ``admitted``
        ones (a lookup's ``repeated``), without one all. Returns how many went to the shared tier."""
        if not records:
            return 0
        items = {self.key(t): r.encode() for t, r in records.items()}
        if self.doorkeeper is None:
            shared = set(items)
        else:
            shared = {self.key(t) for t in (admitted or ()) if t in records}
            if self.read_gate is not None and not self.read_gate.open:
                # the shared tier is not being read: write only the sample of keys the gate still reads
                # (the same keys in every environment, so their reads keep measuring what sharing pays)
                shared = {k for k in shared if self.read_gate.admits(k)}
        if self.shared is not None:
            for k in shared:
                self.shared.sighted(k)
        if isinstance(self.store, TieredStore):
            return self.store.put_admitted(items, shared)
        self.store.put_many(items)
        return len(items)
