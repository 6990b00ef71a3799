"""Wiring for a Lambda execution environment: settings -> encoder, heads, caches, service.

This is the one place that turns configuration into live objects, run once per cold start (module scope
of the handlers). The encoder comes from the encoder layer; each head from the registry's production
version, downloaded to /tmp and sha256-verified, so serving never depends on what a deploy zipped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from topicserve.aws import AwsClient, aws_client
from topicserve.cache.dynamodb import DynamoDBStore
from topicserve.cache.store import CacheStore, LRUStore, TieredStore
from topicserve.errors import ArtifactError, ChecksumMismatchError
from topicserve.settings import Settings

if TYPE_CHECKING:  # imported lazily below: the API function loads no model, so it needs no numpy / onnx
    from topicserve.encoder import Encoder
    from topicserve.heads import Head
    from topicserve.registry.model import ModelVersion
    from topicserve.registry.store import Registry
    from topicserve.service import InferenceService

logger = logging.getLogger(__name__)

ENCODER_MODEL = "model.onnx"
ENCODER_TOKENIZER = "tokenizer.json"
ENCODER_INFO = "encoder.json"


def load_encoder(settings: Settings) -> Encoder:
    from topicserve.encoder import Encoder

    folder = Path(settings.encoder_dir) if settings.encoder_dir else None
    if folder is None or not (folder / ENCODER_MODEL).is_file():
        raise ArtifactError(
            f"encoder files not found (ENCODER_DIR={settings.encoder_dir!r}); is the encoder layer attached?"
        )
    info_path = folder / ENCODER_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return Encoder(
        folder / ENCODER_MODEL,
        folder / ENCODER_TOKENIZER,
        max_length=settings.encoder_max_length,
        intra_op_threads=settings.encoder_threads,
        version=info.get("sha256"),  # recorded at build time: saves hashing 22 MB at every cold start
    )


def load_heads(settings: Settings, registry: Registry) -> dict[str, Head]:
    from topicserve.heads import Head

    heads = {}
    for name in settings.models:
        record, path = fetch_head(settings, registry, name)
        heads[name] = Head(path, name=name, version=str(record.version), labels=record.labels)
    return heads


def fetch_head(settings: Settings, registry: Registry, name: str) -> tuple[ModelVersion, Path]:
    """Download the head to serve, refusing any artifact that fails its sha256 check.

    For the production stage, a refused artifact falls back to the versions that were in production
    before it, newest first: a corrupted or tampered upload must not take the model down, and must never
    be served. With no acceptable version left, the cold start fails with the checksum error.
    """
    record = registry.resolve(name, settings.model_stage)
    candidates = [record]
    if settings.model_stage == "production":
        candidates += [
            registry.show(name, v) for v in registry.production_history(name) if v != record.version
        ]
    refused: ArtifactError | None = None
    for candidate in candidates:
        try:
            return candidate, registry.download(candidate, settings.model_cache_dir)
        except ChecksumMismatchError as exc:
            logger.error(
                "refused a head artifact that fails its sha256 check",
                extra={"model": name, "version": candidate.version, "error": str(exc)},
            )
            refused = refused or exc
    assert refused is not None
    raise refused


def cache_store(settings: Settings, which: str, table: str, dynamodb: AwsClient) -> CacheStore | None:
    if not settings.cache_enabled(which):
        return None
    back = DynamoDBStore(table, client=dynamodb, ttl_seconds=settings.cache_ttl_seconds) if table else None
    return TieredStore(LRUStore(settings.lru_max_items), back)


@dataclass
class Runtime:
    """What one execution environment holds between invocations."""

    settings: Settings
    service: InferenceService
    init_seconds: float
    dynamodb: AwsClient


def make_registry(settings: Settings, dynamodb: AwsClient) -> Registry:
    from topicserve.registry.store import Registry

    return Registry(
        bucket=settings.registry_bucket,
        table=settings.registry_table,
        s3_client=aws_client("s3"),
        dynamodb_client=dynamodb,
    )


def build_runtime(settings: Settings | None = None) -> Runtime:
    from topicserve.faults import StageFaults
    from topicserve.service import InferenceService

    started = time.perf_counter()
    settings = settings or Settings.from_env()
    dynamodb = aws_client("dynamodb")
    registry = make_registry(settings, dynamodb)
    encoder = load_encoder(settings)
    heads = load_heads(settings, registry)
    service = InferenceService(
        encoder,
        heads,
        embedding_store=cache_store(settings, "embedding", settings.embedding_cache_table, dynamodb),
        prediction_store=cache_store(settings, "prediction", settings.prediction_cache_table, dynamodb),
        encode_batch_size=settings.encode_batch_size,
        dedup=settings.dedup,
        faults=StageFaults.parse(settings.fault_markers),
    )
    return Runtime(settings, service, time.perf_counter() - started, dynamodb)
