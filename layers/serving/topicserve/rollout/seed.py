"""The routing a deploy saw, shipped with the function, so a cold start serves without the registry first.

A cold start used to read the routing from the registry, fetch each production head from S3 and hash it
before it could answer: round trips on the critical path of every burst that scales out. The deploy knows
all of that already, so it travels with the function instead:

* the encoder layer carries each head the deploy registered as ``seed/<sha256>.onnx`` with
  ``seed/<sha256>.json`` (model name and labels), written by ``infra/encoder_layer.py``;
* ``ROUTING_SEED`` (set by ``infra/deploy.py`` after registering) names each model's production
  ``[version, sha256]`` at deploy time.

The router loads a seed head at init and reads the registry in the background right after; the first
request waits (at most ``routing_load_wait_seconds``) for that read, so a rollout made since the deploy
still wins, and a registry that cannot be reached leaves the deploy's head serving. A seed is trusted only
if its bytes hash to the sha256 the registry recorded at deploy time: a tampered file is refused and the
head is fetched from the registry as before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SEED_DIR = "seed"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class SeedHead:
    """One production head as the deploy registered it, with its file in the encoder layer."""

    model: str
    version: int
    sha256: str
    path: Path
    labels: tuple[str, ...]


def parse_routing_seed(raw: str) -> dict[str, tuple[int, str]]:
    """``{"model": [version, sha256], ...}`` -> ``{model: (version, sha256)}``; raises ValueError with the
    reason (a malformed seed is a deploy bug worth a clear init error, not a silent slow start)."""
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"ROUTING_SEED is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("ROUTING_SEED must be a JSON object {model: [version, sha256]}")
    seed: dict[str, tuple[int, str]] = {}
    for model, entry in doc.items():
        ok = (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], int)
            and not isinstance(entry[0], bool)
            and entry[0] > 0
            and isinstance(entry[1], str)
            and len(entry[1]) == 64
            and set(entry[1]) <= _HEX
        )
        if not ok:
            raise ValueError(f"ROUTING_SEED[{model!r}] must be [version > 0, sha256 hex], got {entry!r}")
        seed[str(model)] = (entry[0], entry[1])
    return seed


def seed_heads(raw: str, encoder_dir: str, models: Sequence[str]) -> dict[str, SeedHead]:
    """The served models that have a seed in ``ROUTING_SEED`` and a file for it in the layer. A model
    without one is loaded from the registry at init, as before (logged: it costs round trips)."""
    routing = parse_routing_seed(raw)
    folder = Path(encoder_dir) / SEED_DIR if encoder_dir else None
    found: dict[str, SeedHead] = {}
    for model in models:
        if model not in routing:
            continue
        version, sha256 = routing[model]
        info = _read_info(folder / f"{sha256}.json") if folder else None
        path = folder / f"{sha256}.onnx" if folder else None
        if info is None or path is None or not path.is_file() or info.get("model") != model:
            logger.warning(
                "no seed file for the deploy's production head: loading it from the registry",
                extra={"model": model, "version": version, "sha256": sha256[:12]},
            )
            continue
        labels = info.get("labels")
        found[model] = SeedHead(
            model, version, sha256, path, tuple(str(x) for x in labels) if isinstance(labels, list) else ()
        )
    return found


def seed_routing_env(production: Mapping[str, tuple[int, str]]) -> str:
    """The ``ROUTING_SEED`` value for ``{model: (version, sha256)}`` (what ``infra/deploy.py`` writes)."""
    return json.dumps({m: [v, s] for m, (v, s) in sorted(production.items())}, separators=(",", ":"))


def _read_info(path: Path) -> dict[str, object] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None
