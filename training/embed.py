"""Embed the 20NG splits with a given ONNX encoder through the serving class, cached on disk.

Cache layout: ``build/cache/embeddings/<encoder sha256[:16]>/<split>.<subset>.npy`` plus a ``.json`` that
records the npy's sha256, the dataset sha256, the subset indices' hash and max_length. A new encoder has a
new sha and therefore a new folder; a rerun with the same encoder reads the file instead of recomputing.
Going through ``topicserve.encoder.Encoder`` (not a training-only copy) at the served batch size
(``SERVED_BATCH_SIZE``: dynamic INT8 makes an embedding depend on its batch mates) means the heads are
trained on exactly the embeddings serving will produce.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from topicserve.catalogue import SERVED_BATCH_SIZE
from topicserve.encoder import Encoder
from training.common import CACHE, log, rel, sha256_file, sha256_json

CHUNK = 256


def encode_with_progress(
    encoder: Encoder, texts: list[str], desc: str, batch_size: int = SERVED_BATCH_SIZE
) -> np.ndarray:
    """Encode globally length-sorted chunks so the progress bar moves and sub-batches stay homogeneous."""
    lengths = np.asarray(encoder.token_lengths(texts))
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    t0 = time.perf_counter()
    with tqdm(total=len(texts), desc=desc, unit="text", mininterval=5.0) as bar:
        for start in range(0, len(order), CHUNK):
            idx = order[start : start + CHUNK]
            out[idx] = encoder.encode([texts[i] for i in idx], batch_size=batch_size)
            bar.update(len(idx))
    dt = time.perf_counter() - t0
    log.info(
        "%s: %d texts in %.1f s (%.1f texts/s, mean %.0f tokens)",
        desc,
        len(texts),
        dt,
        len(texts) / max(dt, 1e-9),
        lengths.mean() if len(lengths) else 0,
    )
    return out


def embeddings(
    encoder: Encoder,
    encoder_sha: str,
    split_name: str,
    texts: list[str],
    index: np.ndarray,
    subset: str,
    dataset_sha: str,
) -> tuple[np.ndarray, Path]:
    folder = CACHE / "embeddings" / encoder_sha[:16]
    folder.mkdir(parents=True, exist_ok=True)
    npy = folder / f"{split_name}.{subset}.npy"
    meta_path = npy.with_suffix(".json")
    key = {
        "encoder_sha256": encoder_sha,
        "dataset_sha256": dataset_sha,
        "split": split_name,
        "index_sha256": sha256_json(index.tolist()),
        "max_length": encoder.max_length,
        "n": len(texts),
        "batch_size": SERVED_BATCH_SIZE,  # INT8 embeddings depend on batch mates: what serving does
    }
    if npy.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta["key"] == key and meta["sha256"] == sha256_file(npy):
                log.info("embeddings %s cached (%s)", split_name, rel(npy))
                cached: np.ndarray = np.load(npy)
                return cached, npy
        except (ValueError, KeyError, OSError):
            pass
    emb = encode_with_progress(encoder, texts, f"embed {split_name} [{encoder_sha[:8]}]")
    tmp = npy.with_name(npy.name + ".tmp.npy")
    np.save(tmp, emb)
    tmp.replace(npy)
    meta_path.write_text(json.dumps({"key": key, "sha256": sha256_file(npy)}, indent=2))
    return emb, npy
