"""The training reference monitoring compares served traffic with, as ``make models`` registers it.

One ``.npz`` (registered as model ``reference-<encoder variant>``, lineage to that encoder): ``embeddings``
(a sample of held-out validation embeddings), ``labels``, and per head ``classes_<head>`` (its predicted
class proportions) and ``hist_<head>`` (its confidence histogram) on held-out validation predictions, so
the reference is what each head does on texts it has not seen, as served traffic is.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Reference:
    embeddings: np.ndarray
    labels: list[str]
    classes: dict[str, np.ndarray]  # head -> class proportions
    hist: dict[str, np.ndarray]  # head -> confidence histogram (proportions, 10 bins)
    mean_confidence: dict[str, float]
    n: int = 0  # validation texts the distributions were measured on (their sampling noise)

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "embeddings": self.embeddings.astype(np.float32),
            "labels": np.array(self.labels),
        }
        for head in self.classes:
            arrays[f"classes_{head}"] = self.classes[head]
            arrays[f"hist_{head}"] = self.hist[head]
            arrays[f"meanconf_{head}"] = np.array([self.mean_confidence[head]])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # not compressed: embeddings barely compress, and loading is faster
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Reference:
        with np.load(path, allow_pickle=False) as data:
            heads = [k.removeprefix("classes_") for k in data.files if k.startswith("classes_")]
            return cls(
                embeddings=data["embeddings"],
                labels=[str(x) for x in data["labels"]],
                classes={h: data[f"classes_{h}"] for h in heads},
                hist={h: data[f"hist_{h}"] for h in heads},
                mean_confidence={h: float(data[f"meanconf_{h}"][0]) for h in heads},
                n=int(data["n"][0]) if "n" in data.files else 0,
            )


def from_probabilities(
    embeddings: np.ndarray, labels: list[str], probabilities: dict[str, np.ndarray], bins: int = 10
) -> Reference:
    """The reference from held-out embeddings and each head's probabilities on them."""
    from topicserve.monitoring.drift import histogram

    classes, hist, mean = {}, {}, {}
    n = 0
    for head, proba in probabilities.items():
        n = len(proba)
        top = proba.max(axis=1)
        classes[head] = np.bincount(proba.argmax(axis=1), minlength=len(labels)) / len(proba)
        hist[head] = histogram(top, bins) / len(proba)
        mean[head] = float(top.mean())
    return Reference(embeddings.astype(np.float32), labels, classes, hist, mean, n)
