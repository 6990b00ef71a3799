"""The workloads: unique 20 Newsgroups test texts, and a Zipf-repeated stream of them.

Texts are the bydate *test* split with headers, footers and quotes removed (as the models were trained),
non-empty, cut to the API's character limit. A *salt* makes a run's texts distinct from every earlier run's
(so the DynamoDB caches start cold for each measured point) without changing their length distribution.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from topicserve.text import DEFAULT_MAX_CHARS

SEED = 20240613


def test_texts(limit: int | None = None) -> list[str]:
    """Non-empty 20NG test texts in a seeded shuffled order (the first ``limit``)."""
    from training.data import load

    data_home = Path(os.environ.get("DATA_HOME", Path(__file__).resolve().parents[2] / "shared" / "data"))
    texts = [t.strip()[:DEFAULT_MAX_CHARS] for t in load(data_home, quick=False).test.texts]
    texts = [t for t in texts if len(t) >= 20]
    order = np.random.default_rng(SEED).permutation(len(texts))
    chosen = [texts[i] for i in order]
    return chosen[:limit] if limit else chosen


def zipf_stream(pool: list[str], n: int, s: float = 1.1, seed: int = SEED) -> list[str]:
    """``n`` draws from ``pool`` with Zipf(s) popularity by rank (a few texts very popular, a long tail)."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(pool) + 1, dtype=float)
    p = ranks**-s
    p /= p.sum()
    return [pool[i] for i in rng.choice(len(pool), size=n, p=p)]


def salted(texts: list[str], salt: str) -> list[str]:
    """Make texts distinct from other runs' with a short leading tag: cache keys hash the token ids the
    encoder reads, so a trailing tag past the last token read (a long text) would change nothing."""
    return [f"[{salt}] {t}" for t in texts]


def test_labelled(limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """The 20NG test texts as the model build evaluates them (all of them, empty ones included), with
    their labels: accuracies comparable to the manifest's."""
    from training.data import load

    data_home = Path(os.environ.get("DATA_HOME", Path(__file__).resolve().parents[2] / "shared" / "data"))
    test = load(data_home, quick=False).test
    n = limit or len(test.texts)
    return list(test.texts[:n]), np.asarray(test.y[:n])
