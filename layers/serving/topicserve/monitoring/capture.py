"""What serving records for monitoring, per time window, at almost no cost per request.

For every answer: one count for its (model, version, predicted class) and its confidence (the top
probability) into a 10-bin histogram and a sum. For every distinct text whose embedding the request
already has in hand (computed, or read from the embedding cache): the embedding, if the text is among the
``ceil(sample x n)`` of the window's ``n`` such texts with the smallest hash share
(:class:`EmbeddingReservoir`: deterministic, so a text repeated across requests and environments is one
sample, not many, and a window of 1,000 texts at 5 % holds 50, not a binomial ~42-58), up to ``cap`` per
window per environment. Nothing is computed for monitoring alone.

All of it is summed in memory and written at most every ``flush_seconds``: the counts with atomic ADDs
(any number of environments add to the same window), the sampled embeddings as one small item each.

Table layout (``MonitorTable``: partition key ``pk`` S, sort key ``sk`` S, TTL ``ttl``):
* ``pk = sums#<window>``, ``sk = <model>#<version>``: ``n``, ``conf_sum``, ``c0``..``c19`` (class counts),
  ``h0``..``h9`` (confidence histogram);
* ``pk = emb#<window>``, ``sk = <text hash>``: ``e`` (384 half-precision floats, little-endian bytes; ``f`` =
  ``f2``, absent on float32 items written before);
* ``pk = served#<text hash>``, ``sk = answers``: ``m_<model>`` per model that answered the text (its serving
  window and answers) and ``ttl``: the served-answers ledger label feedback joins to, one item per text
  for the ``ledger_sample`` share of distinct texts (:mod:`topicserve.feedback.ledger`);
* ``pk = quality#<window>`` / ``quality#all``, ``sk = <model>#<version>``: label feedback's sums, and
  ``pk = fb#<feedback key>``: its idempotency markers (:mod:`topicserve.feedback.store`).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from topicserve.aws import AwsClient
from topicserve.dynamo import RetryPolicy, batch_put, partition, raise_first, update_each
from topicserve.feedback.ledger import ServedLedger, ServedLike
from topicserve.monitoring.drift import histogram
from topicserve.rollout.routing import share
from topicserve.windows import FlushTimer
from topicserve.windows import window_start as window_start  # re-exported: its callers import it from here

logger = logging.getLogger(__name__)

BINS = 10
MAX_SEEN = 50_000  # text hashes remembered per window and model version, for the distinct count
SumsKey = tuple[str, str, str]  # window, model, version

#: a sampled embedding is stored in half precision: 768 bytes for 384 dimensions, so the item with its key
#: stays under 1 KiB (one write unit; float32's 1,536 bytes took two, the larger part of what monitoring
#: cost a text). The drift statistics (mean shift, the domain classifier) need ~3 digits, not float32's 7:
#: half precision moves a unit vector's components by ~1e-5. Items written before carry no ``f`` and are
#: float32.
_VECTOR, _FORMAT = np.dtype("<f2"), "f2"
_FLOAT32 = np.dtype("<f4")


def encode_vector(vector: np.ndarray) -> bytes:
    """Raw little-endian half-precision floats."""
    return np.ascontiguousarray(vector, dtype=_VECTOR).tobytes()


def decode_vector(blob: bytes, stored: str | None = _FORMAT) -> np.ndarray:
    """A stored embedding as float32 (``stored``: the item's ``f``; None for float32 items written before)."""
    return np.frombuffer(blob, dtype=_VECTOR if stored == _FORMAT else _FLOAT32).astype(np.float32)


@dataclass
class WindowSums:
    n: int = 0
    distinct: int = 0  # distinct texts among the n answers (per environment: repeats across them count)
    conf_sum: float = 0.0
    classes: np.ndarray = field(default_factory=lambda: np.zeros(20, dtype=np.int64))
    hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    def add(self, class_ids: np.ndarray, confidences: np.ndarray) -> None:
        if len(self.classes) <= int(class_ids.max(initial=0)):
            self.classes = np.pad(self.classes, (0, int(class_ids.max()) + 1 - len(self.classes)))
        self.classes += np.bincount(class_ids, minlength=len(self.classes))
        self.hist += histogram(confidences, BINS)
        self.n += len(class_ids)
        self.conf_sum += float(confidences.sum())

    def add_sums(self, other: WindowSums) -> None:
        if len(other.classes) > len(self.classes):
            self.classes = np.pad(self.classes, (0, len(other.classes) - len(self.classes)))
        self.classes[: len(other.classes)] += other.classes
        self.hist += other.hist
        self.n += other.n
        self.distinct += other.distinct
        self.conf_sum += other.conf_sum

    def to_values(self) -> dict[str, float]:
        values: dict[str, float] = {
            "n": self.n,
            "distinct": self.distinct,
            "conf_sum": round(self.conf_sum, 6),
        }
        values |= {f"c{i}": int(v) for i, v in enumerate(self.classes)}
        values |= {f"h{i}": int(v) for i, v in enumerate(self.hist)}
        return values

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> WindowSums:
        def num(name: str) -> float:
            return float(item.get(name, {}).get("N", "0"))

        n_classes = 1 + max((int(k[1:]) for k in item if k[0] == "c" and k[1:].isdigit()), default=19)
        return cls(
            n=int(num("n")),
            distinct=int(num("distinct")),
            conf_sum=num("conf_sum"),
            classes=np.array([int(num(f"c{i}")) for i in range(n_classes)], dtype=np.int64),
            hist=np.array([int(num(f"h{i}")) for i in range(BINS)], dtype=np.int64),
        )


class PredictionsLike(ServedLike, Protocol):
    """The part of :class:`~topicserve.service.BatchResult` monitoring reads: the ledger's, and the
    embeddings."""

    @property
    def embeddings(self) -> Mapping[str, np.ndarray]: ...


class Capture:
    def __init__(
        self,
        store: MonitorStore | None,
        *,
        window_seconds: int = 300,
        sample: float = 0.05,
        cap: int = 200,
        flush_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        ledger_sample: float = 0.0,
    ) -> None:
        self.store = store
        # the served-answers ledger that label feedback joins to (topicserve.feedback.ledger)
        self.ledger = (
            ServedLedger(store.table, store.ddb, sample=ledger_sample, ttl_seconds=store.ttl_seconds)
            if store is not None and ledger_sample > 0
            else None
        )
        self.window_seconds = window_seconds
        self.sample = sample
        self.cap = cap
        self.clock = clock
        self.sums: dict[SumsKey, WindowSums] = {}
        self.samples: dict[str, dict[str, np.ndarray]] = {}  # chosen, to be written at the next flush
        self.reservoir = EmbeddingReservoir(sample, cap)
        self.seen: dict[tuple[str, str, str], set[str]] = {}  # texts answered per key, this window only
        self.timer = FlushTimer(flush_seconds, clock)

    def observe(self, result: PredictionsLike) -> None:
        if self.store is None:
            return
        window = window_start(self.clock(), self.window_seconds)
        if self.ledger is not None:
            self.ledger.observe(result, window)
        for model, predictions in result.predictions.items():
            by_version: dict[str, list[tuple[Any, str]]] = {}
            for p, h in zip(predictions, result.hashes, strict=True):
                by_version.setdefault(p.version, []).append((p, h))
            for version, pairs in by_version.items():
                ids = np.fromiter((p.label_id for p, _ in pairs), dtype=np.int64, count=len(pairs))
                conf = np.fromiter(
                    (p.top[0]["probability"] for p, _ in pairs), dtype=np.float64, count=len(pairs)
                )
                key = (window, model, version)
                sums = self.sums.setdefault(key, WindowSums())
                sums.add(ids, conf)
                seen = self.seen.setdefault(key, set())
                fresh = {h for _, h in pairs} - seen
                sums.distinct += len(fresh)
                if len(seen) < MAX_SEEN:
                    seen.update(fresh)
        self.seen = {k: v for k, v in self.seen.items() if k[0] == window}
        if self.reservoir.window not in (None, window):  # a new window: choose the last one's sample now
            self._take_sample(final=True)
        for h, vector in result.embeddings.items():
            self.reservoir.offer(window, h, vector)

    def _take_sample(self, *, final: bool) -> None:
        window = self.reservoir.window
        chosen = self.reservoir.due(final=final)
        if window is not None and chosen:
            self.samples.setdefault(window, {}).update(chosen)

    def maybe_flush(self, *, force: bool = False) -> int:
        """Write what was summed when due; a failed write keeps it for the next flush (and is logged)."""
        pending_ledger = self.ledger is not None and bool(self.ledger.pending)
        if self.store is None or not (self.sums or self.samples or self.reservoir.offered or pending_ledger):
            return 0
        if not self.timer.due(force=force):
            return 0
        self._take_sample(final=window_start(self.clock(), self.window_seconds) != self.reservoir.window)
        written = 0
        try:
            keys = list(self.sums)
            failures = self.store.add_sums({key: self.sums[key] for key in keys})
            for key, failure in zip(keys, failures, strict=True):
                if failure is None:  # a failed one stays summed for the next flush
                    del self.sums[key]
                    written += 1
            raise_first(failures)
            for window in list(self.samples):
                self.store.put_embeddings(window, self.samples.pop(window))
                written += 1
        except Exception as exc:
            logger.warning("monitoring write failed; kept for the next flush", extra={"error": repr(exc)})
        if self.ledger is not None:  # apart: label feedback should not wait for a failed sums write
            try:
                written += self.ledger.flush()
            except Exception as exc:
                logger.warning("ledger write failed; kept for the next flush", extra={"error": repr(exc)})
        return written


class EmbeddingReservoir:
    """Which served embeddings one environment keeps for a window: the ``ceil(sample x n)`` texts with the
    smallest hash share among the ``n`` distinct texts it had an embedding for (a bottom-k sketch), at most
    ``cap``.

    Why not ``share < sample`` alone: that keeps a binomial number, ~42 of 1,000 at 5 % in a measured window,
    under the 50 the embedding test needs, so a covariate shift that leaves the predicted classes alone went
    unjudged. The bottom-k keeps exactly ``ceil(sample x n)`` (50 of 1,000), the same budget on average with
    no shortfall, and stays deterministic by hash (every environment prefers the same texts, a repeated text
    is one sample). Flushes during the window write the chosen texts under the plain rate (what the old rule
    wrote); the first flush after the window ends tops up to ``ceil(sample x n)``. So a window costs
    ``max(texts under the rate, ceil(sample x n))`` writes: the old budget, plus its shortfall.
    """

    def __init__(self, sample: float, cap: int) -> None:
        self.sample = sample
        self.cap = cap
        self.window: str | None = None
        self._reset(None)

    def _reset(self, window: str | None) -> None:
        self.window = window
        self.seen: set[str] = set()
        self.heap: list[tuple[float, str]] = []  # (-share, hash): the cap smallest shares, largest on top
        self.vectors: dict[str, np.ndarray] = {}
        self.written: set[str] = set()
        self.offered = False  # something arrived since the last due()

    def offer(self, window: str, h: str, vector: np.ndarray) -> None:
        if window != self.window:
            self._reset(window)
        if h in self.seen or self.sample <= 0 or self.cap <= 0:
            return
        if len(self.seen) < MAX_SEEN:
            self.seen.add(h)
        self.offered = True
        value = share("monitor", "", h)
        if len(self.heap) < self.cap:
            heapq.heappush(self.heap, (-value, h))
            self.vectors[h] = vector
        elif value < -self.heap[0][0]:
            _, dropped = heapq.heapreplace(self.heap, (-value, h))
            self.vectors.pop(dropped, None)
            self.vectors[h] = vector

    def target(self) -> int:
        return min(self.cap, math.ceil(self.sample * len(self.seen)))

    def due(self, *, final: bool) -> dict[str, np.ndarray]:
        """The chosen texts not written yet (the caller writes them), never more than ``cap`` in all. Until
        the window is over (``final``) only those under the plain rate: the top-up to ``ceil(sample x n)``
        waits for the window's last count, so no text is written that a later one would displace."""
        self.offered = False
        smallest = sorted((-negative, h) for negative, h in self.heap)[: self.target()]
        room = max(0, self.cap - len(self.written))
        chosen = {
            h: self.vectors[h]
            for value, h in smallest
            if (final or value < self.sample) and h not in self.written and h in self.vectors
        }
        chosen = dict(list(chosen.items())[:room])
        self.written.update(chosen)
        return chosen


class MonitorStore:
    def __init__(self, table: str, client: AwsClient, *, ttl_seconds: int = 14 * 24 * 3600) -> None:
        self.table = table
        self.ddb = client
        self.ttl_seconds = ttl_seconds

    def add_sums(self, sums: Mapping[SumsKey, WindowSums]) -> list[BaseException | None]:
        """Each (window, model, version)'s sums added to its item, all at once (one UpdateItem each, in
        flight together), each tried once: a failed one stays summed for the next flush, and retries
        against a DynamoDB that is down would hold the request that flushes. Each one's failure in order,
        None where it was added."""
        ttl = {"N": str(self._ttl())}
        return update_each(
            self.ddb,
            self.table,
            [
                (
                    {"pk": {"S": f"sums#{window}"}, "sk": {"S": f"{model}#{version}"}},
                    s.to_values(),
                    {"model": {"S": model}, "version": {"S": version}, "ttl": ttl},
                )
                for (window, model, version), s in sums.items()
            ],
            retry=None,
        )

    def put_embeddings(self, window: str, vectors: Mapping[str, np.ndarray]) -> None:
        ttl = str(self._ttl())
        batch_put(
            self.ddb,
            self.table,
            [
                {
                    "pk": {"S": f"emb#{window}"},
                    "sk": {"S": h},
                    "e": {"B": encode_vector(v)},
                    "f": {"S": _FORMAT},
                    "ttl": {"N": ttl},
                }
                for h, v in vectors.items()
            ],
            retry=RetryPolicy(),
        )

    def window_sums(self, window: str) -> dict[tuple[str, str], WindowSums]:
        return {
            (i["model"]["S"], i["version"]["S"]): WindowSums.from_item(i)
            for i in self._query(f"sums#{window}")
        }

    def window_embeddings(self, window: str) -> np.ndarray:
        rows = [decode_vector(i["e"]["B"], i.get("f", {}).get("S")) for i in self._query(f"emb#{window}")]
        return np.vstack(rows) if rows else np.zeros((0, 384), dtype=np.float32)

    def _query(self, pk: str) -> list[dict[str, Any]]:
        return partition(self.ddb, self.table, "pk", {"S": pk})

    def _ttl(self) -> int:
        return int(time.time()) + self.ttl_seconds
