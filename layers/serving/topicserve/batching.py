"""Pure batching logic: deduplication (common-subexpression elimination) and length bucketing.

Kept apart from the model code (as MLServer keeps its batching module) so the policies can be unit-tested
without a model and reused by the synchronous predict path and the SQS batcher alike.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Dedup(Generic[K]):
    """The distinct keys of a sequence, in first-seen order, and where each original item maps to.

    ``unique[inverse[i]] == items[i]``: compute once per unique key, then fan results out with ``inverse``.
    """

    unique: list[K]
    inverse: list[int]

    @property
    def duplicates(self) -> int:
        return len(self.inverse) - len(self.unique)


def dedupe(items: Sequence[K]) -> Dedup[K]:
    position: dict[K, int] = {}
    inverse = [position.setdefault(item, len(position)) for item in items]
    return Dedup(unique=list(position), inverse=inverse)


#: Which encoder rows a pass computes: given the key (token sequence) of every occurrence that needs an
#: embedding, in input order, the keys to encode, one row each.
EncodeRows = Callable[[Sequence[str]], list[str]]


def distinct_rows(keys: Sequence[str]) -> list[str]:
    """One row per distinct key, first-seen order: the encoder pass's common-subexpression elimination."""
    return list(dict.fromkeys(keys))


def every_row(keys: Sequence[str]) -> list[str]:
    """One row per occurrence, as a service without deduplication would: the benchmarks' baseline only."""
    return list(keys)


def encode_rows(dedup: bool) -> EncodeRows:
    """The strategy ``Settings.dedup`` names."""
    return distinct_rows if dedup else every_row


def length_buckets(
    lengths: Sequence[int], *, max_batch: int = 32, max_tokens: int | None = None
) -> list[list[int]]:
    """Group item indices into sub-batches of similar length.

    A transformer pads every row of a batch to its longest row, so mixing a 10-token text with a 256-token
    one wastes ~25x the work on the short one. Sorting by length and cutting into runs bounds that waste;
    ``max_tokens`` (padded rows x longest length) additionally caps the memory of one forward pass.
    """
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[i], 1)  # sorted ascending: the newcomer is the longest so far
        too_many = len(current) >= max_batch
        too_big = max_tokens is not None and current and (len(current) + 1) * longest > max_tokens
        if too_many or too_big:
            buckets.append(current)
            current = []
        current.append(i)
    if current:
        buckets.append(current)
    return buckets
