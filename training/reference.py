"""The monitoring reference (``topicserve.monitoring.reference``), built by ``make models``.

Held-out validation texts only: their embeddings (what served inputs are compared with), and each head's
predictions on them from the fit-split refits the ensemble step already caches (the published heads were
refit on all of train, validation included, so their own validation predictions would be in-sample:
sharper and more confident than anything they will serve).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topicserve.monitoring.reference import from_probabilities
from training import ensemble
from training import heads as heads_mod
from training.common import MODELS, Embeddings, Json, Settings, log, rel, sha256_file

if TYPE_CHECKING:
    from training.data import Dataset

MAX_EMBEDDINGS = 2_000
VARIANT = "int8"


def build_reference(
    s: Settings, ds: Dataset, emb: Embeddings, heads: dict[str, Json]
) -> tuple[dict[str, Any], dict[Path, Path]]:
    """The manifest entry and {published path: built file}."""
    x, y = emb[(VARIANT, "train")], ds.train.y
    _, val_idx, _ = heads_mod.validation_split(y)
    emb_key = heads_mod.embeddings_key(emb)
    members = [n for n in ensemble.MEMBERS if n in heads]
    proba = {
        n: ensemble.validation_probabilities(s, n, heads[n]["hyperparameters"], ds, emb, emb_key)
        for n in members
    }
    if ensemble.NAME in heads:
        weights = heads[ensemble.NAME]["hyperparameters"]["weights"]
        proba[ensemble.NAME] = ensemble.weighted_sum({n: proba[n] for n in weights if n in proba}, weights)
    sample = val_idx[:MAX_EMBEDDINGS]
    reference = from_probabilities(x[sample], list(ds.labels), proba)
    out = Path(tempfile.mkdtemp(prefix="reference-")) / f"reference-{VARIANT}.npz"
    reference.save(out)
    dst = MODELS / "reference" / out.name
    log.info(
        "reference: %d held-out embeddings, class and confidence distributions of %s (%s)",
        len(sample),
        ", ".join(proba),
        rel(dst),
    )
    entry = {
        "path": rel(dst),
        "sha256": sha256_file(out),
        "size_bytes": out.stat().st_size,
        "format": "npz",
        "variant": VARIANT,
        "n_embeddings": len(sample),
        "heads": list(proba),
        "mean_confidence": {h: round(v, 4) for h, v in reference.mean_confidence.items()},
    }
    return entry, {dst: out}
