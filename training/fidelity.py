"""Fidelity of an exported encoder against the sentence-transformers reference on real 20NG texts.

The reference is SentenceTransformer loaded from the package's local model dir with the same
max_seq_length, i.e. exactly what a PyTorch service would compute. Cosine similarity per text; mean and
min are recorded in the manifest (the min catches rare texts that quantisation damages).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from training.common import SEED, log

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pick_texts(texts: list[str], n: int) -> list[str]:
    """A seeded sample of ``n`` non-empty texts (empty posts embed to the same vector and test nothing)."""
    rng = np.random.default_rng(SEED)
    candidates = [t for t in texts if t.strip()]
    idx = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
    return [candidates[i] for i in sorted(idx)]


def reference_embeddings(texts: list[str], max_length: int) -> np.ndarray:
    import torch
    from sentence_transformers import SentenceTransformer

    from training.export_encoder import model_dir

    torch.manual_seed(0)
    st = SentenceTransformer(str(model_dir()), device="cpu")
    st.max_seq_length = max_length
    log.info("sentence-transformers reference on %d texts (max_seq_length %d)", len(texts), max_length)
    return st.encode(
        texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=True
    ).astype(np.float32)


def cosine_stats(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    got = got / np.linalg.norm(got, axis=1, keepdims=True)
    cos = (ref * got).sum(axis=1)
    return {
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "cos_p01": float(np.quantile(cos, 0.01)),
        "n": len(cos),
    }
