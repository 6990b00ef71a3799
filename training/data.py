"""20 Newsgroups loading (offline, scikit-learn's own cache format) and the quick subset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import fetch_20newsgroups
from sklearn.model_selection import train_test_split

from topicserve.registry.store import sha256_file
from training.common import SEED

PKZ = "20news-bydate_py3.pkz"
REMOVE = ("headers", "footers", "quotes")
QUICK_TRAIN, QUICK_TEST = 1500, 500


@dataclass
class Split:
    texts: list[str]
    y: np.ndarray
    index: np.ndarray  # positions in the full sklearn split (identifies a subset in cache keys)


@dataclass
class Dataset:
    train: Split
    test: Split
    labels: list[str]
    pkz_sha256: str
    file: str
    subset: str  # "full" or "quick-<n_train>-<n_test>"


def _subsample(texts: list[str], y: np.ndarray, n: int) -> Split:
    idx = np.arange(len(texts))
    if n >= len(texts):
        return Split(texts, y, idx)
    keep, _ = train_test_split(idx, train_size=n, stratify=y, random_state=SEED)
    keep = np.sort(keep)
    return Split([texts[i] for i in keep], y[keep], keep)


def load(data_home: Path, quick: bool) -> Dataset:
    """Load bydate train/test with headers/footers/quotes removed; ``quick`` = stratified subset."""
    pkz = data_home / PKZ
    if not pkz.exists():
        raise FileNotFoundError(f"{pkz} not found: set DATA_HOME to the folder holding {PKZ}")
    parts = {}
    for subset in ("train", "test"):
        b = fetch_20newsgroups(
            data_home=str(data_home), subset=subset, remove=REMOVE, download_if_missing=False
        )
        parts[subset] = (list(b.data), np.asarray(b.target, dtype=np.int64), list(b.target_names))
    labels = parts["train"][2]
    if quick:
        train = _subsample(parts["train"][0], parts["train"][1], QUICK_TRAIN)
        test = _subsample(parts["test"][0], parts["test"][1], QUICK_TEST)
        subset = f"quick-{QUICK_TRAIN}-{QUICK_TEST}"
    else:
        train = Split(parts["train"][0], parts["train"][1], np.arange(len(parts["train"][0])))
        test = Split(parts["test"][0], parts["test"][1], np.arange(len(parts["test"][0])))
        subset = "full"
    return Dataset(train, test, labels, sha256_file(pkz), str(pkz), subset)
