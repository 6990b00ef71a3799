"""Admission to the shared cache tier: a DynamoDB write only for a text seen again.

A record write costs one write unit ($0.625 per million), about what encoding the text twice does, and a
shared hit saves one encode but pays a read ($0.0625 per million for an eventually consistent read of an
item under 4 KiB). So a record pays back only after about two to three hits (``bench/cost.py``
``break_even_hits`` computes it from the prices and the measured encode cost), and most texts of a real
stream are seen once. As TinyLFU's doorkeeper does (Einziger, Friedman and Manes, 2017), each execution
environment keeps a Bloom filter of the keys it has looked up; a record goes to the shared tier only on a
key's second sighting there. The in-process LRU takes every record regardless (it is free).

The filter is reset after ``capacity`` insertions (TinyLFU's aging): memory stays bounded (~120 KB at
100,000 keys and 1 % false positives) and a key must recur within that horizon to count as repeated.
A false positive admits a once-seen text early: a wasted write, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import math


class Doorkeeper:
    """A Bloom filter that answers "seen before?" and records the sighting in one call."""

    def __init__(self, capacity: int = 100_000, false_positive_rate: float = 0.01) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0 < false_positive_rate < 1:
            raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
        self.capacity = capacity
        self.bits = max(64, math.ceil(-capacity * math.log(false_positive_rate) / math.log(2) ** 2))
        self.hashes = max(1, round(self.bits / capacity * math.log(2)))
        self._filter = bytearray((self.bits + 7) // 8)
        self._inserted = 0
        self.resets = 0

    def _positions(self, key: str) -> list[int]:
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
        a, b = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1
        return [(a + i * b) % self.bits for i in range(self.hashes)]  # Kirsch-Mitzenmacher double hashing

    def __contains__(self, key: str) -> bool:
        return all(self._filter[p >> 3] & (1 << (p & 7)) for p in self._positions(key))

    def sighted(self, key: str) -> bool:
        """True when ``key`` was (probably) sighted since the last reset; records this sighting."""
        positions = self._positions(key)
        seen = all(self._filter[p >> 3] & (1 << (p & 7)) for p in positions)
        if not seen:
            if self._inserted >= self.capacity:
                self._filter = bytearray(len(self._filter))
                self._inserted = 0
                self.resets += 1
            for p in positions:
                self._filter[p >> 3] |= 1 << (p & 7)
            self._inserted += 1
        return seen


class ReadGate:
    """Whether to ask the shared tier for a text this environment sees for the first time.

    A read costs half a read unit ($0.0625 per million) and pays only when it hits (it saves an encode,
    ~$0.3 per million): below a hit rate of ``break_even`` it is money thrown away, which is what every read
    of a unique stream is. The gate keeps a decayed count of such reads and their hits (a prior of 20 reads
    at twice the break-even, so a fresh environment reads its first ~20 first sightings whatever they find)
    and, while the estimated hit rate stays under
    ``break_even``, reads only a ``sample`` of first sightings (chosen by the key's hash, so the estimate
    keeps being measured). A key sighted before in this environment is always read when the LRU lacks it.
    Writes follow the same evidence (``RecordCache.put_many``): while first sightings rarely find a record,
    the records this environment would share would rarely be read either, so only the sampled keys are
    written; the sample is the same set of keys in every environment, which keeps the estimate unbiased.
    """

    def __init__(self, break_even: float = 0.2, sample: float = 0.1, decay: float = 0.995) -> None:
        if not 0 < break_even < 1 or not 0 < sample <= 1 or not 0 < decay <= 1:
            raise ValueError("break_even in (0, 1), sample in (0, 1], decay in (0, 1] required")
        self.break_even, self.sample, self.decay = break_even, sample, decay
        self.reads = 20.0  # the prior
        self.hits = 2 * break_even * self.reads

    @property
    def hit_rate(self) -> float:
        return self.hits / self.reads

    @property
    def open(self) -> bool:
        return self.hit_rate >= self.break_even

    def admits(self, key: str) -> bool:
        if self.open:
            return True
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2.0**64 < self.sample

    def observe(self, reads: int, hits: int) -> None:
        """What the last lookup's first-sighting reads found."""
        for i in range(reads):
            self.hits = self.hits * self.decay + (1.0 if i < hits else 0.0)
            self.reads = self.reads * self.decay + 1.0
