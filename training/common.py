"""Paths, settings, hashing, logging and the cached-step helper shared by the build modules.

Every expensive step writes its outputs into ``build/cache/steps/<step>/<key hash>/`` together with a
``result.json`` that records the sha256 of each output. A step is skipped when that record exists and every
output still hashes to the recorded value; the key names every input (upstream sha256s, hyperparameters,
quick/full), so a quick build can never be served as a full one and switching back and forth is instant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from topicserve.registry.store import sha256_file as sha256_file  # one hash: training, registry, serving

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
MODELS = BUILD / "models"
CACHE = BUILD / "cache"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
SEED = 20240613

log = logging.getLogger("training")

#: the embeddings of the data set's splits, by (encoder variant, split): ("int8", "train") -> float32 [N, 384]
Embeddings: TypeAlias = dict[tuple[str, str], np.ndarray]
#: a JSON object of the build: a manifest entry, a step's cached result, a head's hyperparameters
Json: TypeAlias = dict[str, Any]


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    log.setLevel(logging.INFO)  # our progress lines; onnxruntime.quantization logs every node at INFO


@dataclass(frozen=True)
class Settings:
    """Build settings, all from the environment so `make models` needs no arguments."""

    quick: bool
    data_home: Path
    max_length: int
    threads: int
    tune: bool = True  # TUNE=0: fit the recorded choice of the validation search on full train, no search

    @classmethod
    def from_env(cls) -> Settings:
        quick = _flag("QUICK", default=False)
        data_home = Path(os.environ.get("DATA_HOME") or (REPO.parent / "shared" / "data")).resolve()
        return cls(
            quick=quick,
            data_home=data_home,
            max_length=int(os.environ.get("MAX_LENGTH", "256")),
            threads=int(os.environ.get("BUILD_THREADS", str(os.cpu_count() or 2))),
            tune=_flag("TUNE", default=True),
        )


def _flag(name: str, *, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    return default if raw == "" else raw not in ("0", "false", "no")


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def rel(path: str | os.PathLike[str]) -> str:
    """Path relative to the repository root (the manifest must not depend on where the repo lives)."""
    return os.path.relpath(Path(path).resolve(), REPO)


def code_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_dirty() -> bool | None:
    """Whether the training/serving code differs from HEAD (lineage: the revision alone would lie)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "training", "layers/serving"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cached_step(
    name: str, key: dict[str, Any], fn: Callable[[Path], dict[str, Any]], outputs: list[str]
) -> tuple[Path, dict[str, Any]]:
    """Run ``fn(outdir)`` unless a valid result for exactly this ``key`` exists.

    ``fn`` writes the files named in ``outputs`` into ``outdir`` and returns a JSON-able result dict.
    Returns (outdir, result). Validity = result.json present, same key, every output's sha256 unchanged.
    """
    digest = sha256_json(key)[:16]
    outdir = CACHE / "steps" / name / digest
    record = outdir / "result.json"
    if record.exists():
        try:
            saved = json.loads(record.read_text())
            ok = saved.get("key") == json.loads(json.dumps(key, default=str)) and all(
                (outdir / o).exists() and sha256_file(outdir / o) == saved["outputs"].get(o) for o in outputs
            )
        except (ValueError, KeyError, OSError):
            ok = False
        if ok:
            log.info("[%s] cached (%s), skipping", name, rel(outdir))
            return outdir, saved["result"]
        log.info("[%s] cached result invalid, rebuilding", name)
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    t0 = time.perf_counter()
    log.info("[%s] running ...", name)
    result = fn(outdir)
    result.setdefault("seconds", round(time.perf_counter() - t0, 2))
    saved = {"key": key, "outputs": {o: sha256_file(outdir / o) for o in outputs}, "result": result}
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2, default=str))
    tmp.replace(record)  # the record appears only once every output is complete
    log.info("[%s] done in %.1f s", name, result["seconds"])
    return outdir, result


def install(src: Path, dst: Path) -> None:
    """Copy a cached artifact to its published place under build/models (skip when identical)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and dst.stat().st_size == src.stat().st_size and sha256_file(dst) == sha256_file(src):
        return
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
