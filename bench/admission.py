"""The cache's unit counts on a long stream, through the real pipeline code, with no model and no cloud.

A short measured stream (hundreds of requests) says little about a cache's steady state: most texts are
still first sightings. This runs :class:`~topicserve.service.InferenceService` itself (routing, dedup, the
record cache, the doorkeeper, the LRU) over a long Zipf stream in SQS-sized batches, with a stand-in encoder
whose token ids are the text's hash (so texts share a record exactly when the real tokenizer would give
identical ids for identical texts) and a constant head, and counts what the bill is made of per request:
texts encoded, shared-tier reads and writes. ``bench/cost.py`` prices those counts with the per-text
billed milliseconds the cloud run measured. Also the admission comparison the cost issue asks for: the
hit rate and the writes with the doorkeeper (write on a second sighting) and without (write every record).

    python -m bench.admission            # 20,000 requests of Zipf(1.1) over the 20NG test texts
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from topicserve.cache import Doorkeeper, LRUStore, TieredStore
from topicserve.cache.admission import ReadGate
from topicserve.encoder import Tokens
from topicserve.service import InferenceService

STEADY_REQUESTS = 20_000


class HashEncoder:
    """Token ids from the text's hash; a fixed unit vector per text. Counts nothing itself: the service's
    stats say what was encoded."""

    def __init__(self) -> None:
        self.version = self.tokenizer_version = type(self).__name__  # a configuration of its own
        self.max_length, self.dim = 256, 384

    def tokenize(self, texts: Sequence[str]) -> list[Tokens]:
        return [Tokens([101, *hashlib.sha256(t.encode()).digest()[:8], 102], False) for t in texts]

    def encode_tokens(self, ids: Sequence[Sequence[int]], batch_size: int = 1) -> np.ndarray:
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        out[:, 0] = 1.0
        return out


class ConstantHead:
    def __init__(self, name: str) -> None:
        self.name, self.version = name, "1"
        self.labels = [f"c{i}" for i in range(20)]

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        return np.full((len(embeddings), 20), 0.05, dtype=np.float32)


@dataclass(frozen=True)
class Counts:
    """Per request: texts encoded, shared-tier reads and writes; and the hit rate of answers."""

    requests: int
    encoded_per_request: float
    reads_per_request: float
    writes_per_request: float
    answer_hit_rate: float

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def simulate(
    stream: Sequence[str],
    *,
    batch_size: int = 100,
    environments: int = 1,
    caches: bool = True,
    admission: bool = True,
    lru_items: int = 20_000,
    models: Sequence[str] = ("logreg",),
) -> Counts:
    """Serve ``stream`` in batches of ``batch_size``, round-robin over ``environments`` (each with its
    own LRU and doorkeeper, one shared tier), dedup on; count the work."""
    shared = LRUStore(10**9)
    services = [
        InferenceService(
            HashEncoder(),
            {m: ConstantHead(m) for m in models},
            cache_store=TieredStore(LRUStore(lru_items), shared) if caches else None,
            doorkeeper=Doorkeeper() if caches and admission else None,
            read_gate=ReadGate() if caches and admission else None,
        )
        for _ in range(environments)
    ]
    encoded = reads = writes = hits = answers = 0
    for n, start in enumerate(range(0, len(stream), batch_size)):
        result = services[n % environments].predict(list(stream[start : start + batch_size]), list(models))
        s = result.stats
        encoded, reads, writes = encoded + s.encoded, reads + s.cache_reads, writes + s.cache_writes
        hits += s.prediction_hits
        answers += s.prediction_hits + s.prediction_misses
    n = max(1, len(stream))
    return Counts(len(stream), encoded / n, reads / n, writes / n, hits / max(1, answers))


def steady_state(pool: Sequence[str], requests: int = STEADY_REQUESTS, **kw: Any) -> dict[str, Any]:
    """Caches off / on with admission / on writing every record, on the same Zipf(1.1) stream."""
    from bench.texts import zipf_stream

    stream = zipf_stream(list(pool), requests)
    return {
        "requests": requests,
        "distinct_texts": len(set(stream)),
        "pool": len(pool),
        "off": simulate(stream, caches=False, **kw).to_dict(),
        "on": simulate(stream, **kw).to_dict(),
        "on_admit_all": simulate(stream, admission=False, **kw).to_dict(),
        **{k: v for k, v in kw.items() if isinstance(v, int | float | str)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=STEADY_REQUESTS)
    parser.add_argument("--environments", type=int, default=1)
    args = parser.parse_args(argv)
    from bench.texts import test_texts

    texts = test_texts(4000)
    print(json.dumps(steady_state(texts[1000:3000], args.requests, environments=args.environments), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
