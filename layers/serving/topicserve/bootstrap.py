"""Wiring for a Lambda execution environment: settings -> encoder, heads, caches, service.

This is the one place that turns configuration into live objects, run once per cold start (module scope
of the handlers). The encoder comes from the encoder layer; each head from the registry version its
routing names (production, and a canary / shadow during a rollout), downloaded to /tmp and
sha256-verified, so serving never depends on what a deploy zipped, and follows the registry's stages
without a redeploy.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from topicserve.aws import AwsClient, LazyClient
from topicserve.cache.admission import Doorkeeper, ReadGate
from topicserve.cache.dynamodb import DynamoDBStore
from topicserve.cache.store import CacheStore, LRUStore, TieredStore
from topicserve.errors import ArtifactError
from topicserve.initsteps import InitSteps
from topicserve.rollout.seed import SeedHead, seed_heads
from topicserve.settings import Settings

if TYPE_CHECKING:  # imported lazily below: the API function loads no model, so it needs no numpy / onnx
    from topicserve.encoder import Encoder
    from topicserve.heads import Head
    from topicserve.monitoring.capture import Capture
    from topicserve.registry.store import Registry
    from topicserve.rollout.records import RolloutRecorder
    from topicserve.rollout.router import Router
    from topicserve.rollout.tally import Observation
    from topicserve.service import BatchResult, InferenceService

logger = logging.getLogger(__name__)

ENCODER_MODEL = "model.onnx"
ENCODER_TOKENIZER = "tokenizer.json"
ENCODER_INFO = "encoder.json"


def load_encoder(settings: Settings, steps: InitSteps | None = None) -> Encoder:
    from topicserve.encoder import Encoder

    folder = Path(settings.encoder_dir) if settings.encoder_dir else None
    if folder is None or not (folder / ENCODER_MODEL).is_file():
        raise ArtifactError(
            f"encoder files not found (ENCODER_DIR={settings.encoder_dir!r}); is the encoder layer attached?"
        )
    info_path = folder / ENCODER_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    encoder = Encoder(
        folder / ENCODER_MODEL,
        folder / ENCODER_TOKENIZER,
        max_length=settings.encoder_max_length,
        intra_op_threads=settings.encoder_threads,
        version=info.get("sha256"),  # recorded at build time: saves hashing 22 MB at every cold start
        pre_optimized=bool(info.get("graph_optimization")),  # optimised at build time: not again here
    )
    if steps is not None:
        steps.merge(encoder.load_ms)
    return encoder


def load_head(
    settings: Settings,
    registry: Registry,
    model: str,
    version: int,
    *,
    seeds: Mapping[str, SeedHead] | None = None,
    steps: InitSteps | None = None,
) -> Head:
    """One registered head version, sha256-verified: the deploy's seed file when the registry's record
    names the same bytes, else downloaded to /tmp by the registry."""
    steps = steps or InitSteps()
    with steps.step("head record read"):
        record = registry.show(model, version)
    seed = (seeds or {}).get(model)
    if seed is not None and seed.sha256 == record.sha256:
        path = seed.path
    else:
        with steps.step("head fetch + sha256"):
            path = registry.download(record, settings.model_cache_dir)
    return verified_head(path, model, record.version, record.labels, record.sha256, steps)


def load_seed_head(seed: SeedHead, steps: InitSteps | None = None) -> Head:
    """The deploy's production head from the encoder layer, refused unless its bytes hash to the sha256
    the registry recorded at deploy time."""
    return verified_head(seed.path, seed.model, seed.version, seed.labels, seed.sha256, steps or InitSteps())


def verified_head(
    path: Path, model: str, version: int, labels: Sequence[str], sha256: str, steps: InitSteps
) -> Head:
    """A head session from bytes that hash to ``sha256`` (checked on the bytes the session is built from),
    its read / sha256 / session times added to ``steps``."""
    from topicserve.heads import Head

    head = Head(path, name=model, version=str(version), labels=labels, expected_sha256=sha256)
    steps.merge(head.load_ms)
    return head


def cache_store(settings: Settings, dynamodb: AwsClient) -> CacheStore | None:
    """The record cache's store: the in-process LRU in front of the DynamoDB table (none when off)."""
    if not settings.cache_enabled("all"):
        return None
    shared = settings.cache_table and settings.cache_enabled("shared")
    back = (
        DynamoDBStore(settings.cache_table, client=dynamodb, ttl_seconds=settings.cache_ttl_seconds)
        if shared
        else None
    )
    return TieredStore(LRUStore(settings.lru_max_items), back)


def doorkeeper(settings: Settings) -> Doorkeeper | None:
    """Admission to the shared tier (None: every record is written, the cost benchmark's baseline)."""
    return Doorkeeper(settings.doorkeeper_capacity) if settings.cache_enabled("admission") else None


def read_gate(settings: Settings) -> ReadGate | None:
    """Shared-tier reads of first sightings only while they pay (None: always read)."""
    return ReadGate() if settings.cache_enabled("admission") and settings.cache_enabled("read_gate") else None


@dataclass
class Runtime:
    """What one execution environment holds between invocations."""

    settings: Settings
    service: InferenceService
    init_seconds: float
    dynamodb: AwsClient
    router: Router
    recorder: RolloutRecorder
    capture: Capture
    init_steps: InitSteps

    def record_rollout(self, observations: Sequence[Observation]) -> None:
        """After each invocation: add what the candidates did, write the sums when due."""
        self.recorder.observe(observations)
        self.recorder.maybe_flush()

    def record_served(self, results: Sequence[BatchResult]) -> None:
        """After each invocation: what was served, for monitoring (summed, written when due)."""
        for result in results:
            self.capture.observe(result)
        self.capture.maybe_flush()

    def flush(self, *, force: bool = False) -> None:
        """Write the rollout and monitoring sums (when due, or now). The sums of an environment that goes
        idle stay in memory until its next invocation: the warmer's periodic warm-ups flush them."""
        self.recorder.maybe_flush(force=force)
        self.capture.maybe_flush(force=force)


def make_registry(settings: Settings, dynamodb: AwsClient) -> Registry:
    from topicserve.registry.store import Registry

    return Registry(
        bucket=settings.registry_bucket,
        table=settings.registry_table,
        s3_client=LazyClient("s3"),
        dynamodb_client=dynamodb,
    )


def build_runtime(settings: Settings | None = None) -> Runtime:
    """The encoder and the routed heads load concurrently: the encoder in one thread, production and
    canary heads in others (see :class:`~topicserve.rollout.router.Router`)."""
    from topicserve.batching import encode_rows
    from topicserve.faults import with_test_faults
    from topicserve.monitoring.capture import Capture, MonitorStore
    from topicserve.rollout.records import RolloutRecorder, RolloutStore
    from topicserve.rollout.router import Router
    from topicserve.service import InferenceService

    started = time.perf_counter()
    steps = InitSteps()
    with steps.step("settings"):
        settings = settings or Settings.from_env()
        seeds = seed_heads(settings.routing_seed, settings.encoder_dir, settings.models)
    with steps.step("clients"):
        # made at first use: a seeded start's first use is the routing read that follows init
        dynamodb = LazyClient("dynamodb")
        registry = make_registry(settings, dynamodb)
    store = RolloutStore(settings.rollout_table, dynamodb) if settings.rollout_table else None
    recorder = RolloutRecorder(store, flush_seconds=settings.rollout_flush_seconds)
    router = Router(
        settings.models,
        registry,
        functools.partial(load_head, settings, registry, seeds=seeds, steps=steps),
        ttl_seconds=settings.routing_ttl_seconds,
        load_wait_seconds=settings.routing_load_wait_seconds,
        shadow_sample=settings.shadow_sample,
        on_load_error=recorder.load_error,
        load_seed=functools.partial(load_seed_head, steps=steps),
    )
    encoder_loading = router.executor.submit(load_encoder, settings, steps)
    with steps.step("routing + heads (main thread waits)"):
        router.start(seeds)
    with steps.step("encoder (main thread waits)"):
        encoder = encoder_loading.result()
    service = InferenceService(
        with_test_faults(settings, encoder, router) if settings.test_switches else encoder,
        router,
        cache_store=cache_store(settings, dynamodb),
        doorkeeper=doorkeeper(settings),
        read_gate=read_gate(settings),
        use_answers=settings.cache_enabled("answers"),
        encode_batch_size=settings.encode_batch_size,
        encode_rows=encode_rows(settings.dedup),
    )
    capture = Capture(
        MonitorStore(settings.monitor_table, dynamodb) if settings.monitor_table else None,
        window_seconds=settings.monitor_window_seconds,
        sample=settings.monitor_embedding_sample,
        cap=settings.monitor_embedding_cap,
        flush_seconds=settings.monitor_flush_seconds,
        ledger_sample=settings.feedback_ledger_sample,
    )
    runtime = Runtime(
        settings, service, time.perf_counter() - started, dynamodb, router, recorder, capture, steps
    )
    after_snapstart_restore(router.expire)
    router.read_in_background()  # the last step: init is done, the registry read is not part of it
    return runtime


def after_snapstart_restore(hook: Callable[[], None]) -> bool:
    """Run ``hook`` when Lambda restores this environment from a SnapStart snapshot (template parameter
    ``SnapStart``): the routing read at snapshot time may be stale by then. The runtime hooks module exists
    only in Lambda's managed Python runtimes; elsewhere (tests, the local cloud, images) nothing to do."""
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:
        return False
    register_after_restore(hook)
    return True
