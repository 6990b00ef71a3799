"""The composition root: settings -> the live objects of each function kind, run once per cold start.

One builder per kind, each called at the module scope of its handler (``x = bootstrap.build_...()``):
:func:`build_runtime` (predict: encoder, heads, caches, service), :func:`build_batcher` (that and the
results, label feedback, the adaptive tuner), :func:`build_api`, :func:`build_gate`, :func:`build_monitor`
and :func:`build_worker` (the bulk worker's serving parts; its encoder choice is its own). Each reads
:class:`~topicserve.settings.Settings` (and the thresholds of its own kind) from the environment unless
given them, and each store is made by one function here (:func:`results_store`, :func:`rollout_store`,
:func:`monitor_store`, :func:`feedback_store`, :func:`label_archive`, :func:`make_registry`), so every
kind that holds one holds the same. The imports a kind alone needs are made inside its builder: the
predict function's cold start imports nothing for the others, and the API's none of the model code
(onnxruntime).

The encoder comes from the encoder layer; each head from the registry version its routing names
(production, and a canary / shadow during a rollout), downloaded to /tmp and sha256-verified, so serving
never depends on what a deploy zipped, and follows the registry's stages without a redeploy.
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

from topicserve.aws import AwsClient, LazyClient, aws_client
from topicserve.cache.admission import Doorkeeper, ReadGate
from topicserve.cache.dynamodb import DynamoDBStore
from topicserve.cache.store import CacheStore, LRUStore, TieredStore
from topicserve.errors import ArtifactError
from topicserve.initsteps import InitSteps
from topicserve.rollout.seed import SeedHead, seed_heads
from topicserve.settings import Settings

if TYPE_CHECKING:  # imported lazily below: the API function loads no model, so it needs no numpy / onnx
    from topicserve.adaptive import MappingTuner
    from topicserve.encoder import Encoder
    from topicserve.feedback.store import FeedbackStore, LabelArchive
    from topicserve.heads import Head
    from topicserve.idempotency import BatchIdempotency
    from topicserve.monitoring.capture import Capture, MonitorStore
    from topicserve.monitoring.monitor import DriftThresholds
    from topicserve.registry.store import Registry
    from topicserve.results import ResultsStore
    from topicserve.rollout.gates import Thresholds
    from topicserve.rollout.records import RolloutRecorder, RolloutStore
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


def results_store(settings: Settings, dynamodb: AwsClient) -> ResultsStore:
    """The batch results: the API creates and reads batches, the batcher and the bulk worker answer them."""
    from topicserve.results import ResultsStore

    return ResultsStore(settings.results_table, client=dynamodb, ttl_seconds=settings.results_ttl_seconds)


def rollout_store(settings: Settings, dynamodb: AwsClient) -> RolloutStore | None:
    """The per-version rollout records (None without a rollout table): serving writes them, the gate
    decides on them, the API shows them and label feedback adds to them."""
    from topicserve.rollout.records import RolloutStore

    return RolloutStore(settings.rollout_table, dynamodb) if settings.rollout_table else None


def monitor_store(settings: Settings, dynamodb: AwsClient) -> MonitorStore | None:
    """The monitoring window sums (None without a monitor table): serving adds to them, the monitor
    judges them."""
    from topicserve.monitoring.capture import MonitorStore

    return MonitorStore(settings.monitor_table, dynamodb) if settings.monitor_table else None


def feedback_store(
    settings: Settings, dynamodb: AwsClient, rollout: RolloutStore | None = None
) -> FeedbackStore | None:
    """Label feedback's counts and ledger (None without a monitor table); with ``rollout``, labels of a
    candidate's answers also go to its rollout records."""
    from topicserve.feedback.store import FeedbackStore

    if not settings.monitor_table:
        return None
    return FeedbackStore(settings.monitor_table, settings.results_table, dynamodb, rollout=rollout)


def label_archive(settings: Settings) -> LabelArchive | None:
    """The labelled texts kept for retraining, in the artifacts bucket (None without one)."""
    from topicserve.feedback.store import LabelArchive

    return LabelArchive(settings.registry_bucket, LazyClient("s3")) if settings.registry_bucket else None


def build_runtime(settings: Settings | None = None) -> Runtime:
    """The encoder and the routed heads load concurrently: the encoder in one thread, production and
    canary heads in others (see :class:`~topicserve.rollout.router.Router`)."""
    from topicserve.batching import encode_rows
    from topicserve.faults import with_test_faults
    from topicserve.monitoring.capture import Capture
    from topicserve.rollout.records import RolloutRecorder
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
    recorder = RolloutRecorder(
        rollout_store(settings, dynamodb), flush_seconds=settings.rollout_flush_seconds
    )
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
        monitor_store(settings, dynamodb),
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


@dataclass
class BatcherRuntime:
    """The batcher's: the serving runtime, where results go, and label feedback through the queue."""

    runtime: Runtime
    results: ResultsStore
    feedback: FeedbackStore | None
    label_archive: LabelArchive | None
    tuner: MappingTuner | None  # ADAPTIVE_BATCHING: the batcher tunes its own SQS mapping


def build_batcher(settings: Settings | None = None) -> BatcherRuntime:
    from topicserve.adaptive import tuner_from_settings

    runtime = build_runtime(settings)
    settings, dynamodb = runtime.settings, runtime.dynamodb
    return BatcherRuntime(
        runtime,
        results_store(settings, dynamodb),
        feedback_store(settings, dynamodb, rollout_store(settings, dynamodb)),
        label_archive(settings),
        tuner_from_settings(settings, aws_client, settings.function_name),
    )


@dataclass
class ApiRuntime:
    """The API's (no model): batches in and out, label feedback, the registry and rollout view."""

    settings: Settings
    sqs: AwsClient
    registry: Registry
    rollout: RolloutStore | None
    thresholds: Thresholds  # GET /v1/models previews the gate's decisions
    results: ResultsStore
    idempotency: BatchIdempotency
    feedback: FeedbackStore | None
    label_archive: LabelArchive | None


def build_api(settings: Settings | None = None, thresholds: Thresholds | None = None) -> ApiRuntime:
    from topicserve.idempotency import BatchIdempotency
    from topicserve.rollout.gates import Thresholds

    settings = settings or Settings.from_env()
    dynamodb = aws_client("dynamodb")
    rollout = rollout_store(settings, dynamodb)
    return ApiRuntime(
        settings,
        aws_client("sqs"),
        make_registry(settings, dynamodb),
        rollout,
        thresholds or Thresholds.from_env(),
        results_store(settings, dynamodb),
        BatchIdempotency(
            settings.idempotency_table, dynamodb, window_seconds=settings.idempotency_window_seconds
        ),
        feedback_store(settings, dynamodb, rollout),
        label_archive(settings),
    )


@dataclass
class GateRuntime:
    """The rollout gate's (no model): the registry's stages and the candidates' rollout records."""

    settings: Settings
    registry: Registry
    store: RolloutStore
    thresholds: Thresholds


def build_gate(settings: Settings | None = None, thresholds: Thresholds | None = None) -> GateRuntime:
    from topicserve.rollout.gates import Thresholds

    settings = settings or Settings.from_env()
    dynamodb = aws_client("dynamodb")
    store = rollout_store(settings, dynamodb)
    if store is None:
        raise ValueError("setting ROLLOUT_TABLE is required by the gate")
    return GateRuntime(
        settings, make_registry(settings, dynamodb), store, thresholds or Thresholds.from_env()
    )


@dataclass
class MonitorRuntime:
    """The drift monitor's (no model): the window sums, label feedback's quality, the reports bucket."""

    settings: Settings
    s3: AwsClient
    store: MonitorStore
    feedback: FeedbackStore
    registry: Registry
    thresholds: DriftThresholds


def build_monitor(
    settings: Settings | None = None, thresholds: DriftThresholds | None = None
) -> MonitorRuntime:
    from topicserve.monitoring.monitor import DriftThresholds

    settings = settings or Settings.from_env()
    dynamodb = aws_client("dynamodb")
    store, feedback = monitor_store(settings, dynamodb), feedback_store(settings, dynamodb)
    if store is None or feedback is None:
        raise ValueError("setting MONITOR_TABLE is required by the monitor")
    return MonitorRuntime(
        settings,
        aws_client("s3"),
        store,
        feedback,
        make_registry(settings, dynamodb),
        thresholds or DriftThresholds.from_env(),
    )


@dataclass
class WorkerRuntime:
    """The bulk worker's serving parts (topicserve_worker.worker adds its encoder choice and its loop)."""

    runtime: Runtime  # the batcher's runtime, with the encoder layer's encoder on the CPU
    results: ResultsStore
    sqs: AwsClient  # it drains the bulk queue (BULK_QUEUE_URL)


def build_worker(settings: Settings | None = None) -> WorkerRuntime:
    settings = settings or Settings.from_env()
    if not settings.bulk_queue_url:  # said before anything loads
        raise ValueError("setting BULK_QUEUE_URL is required by the bulk worker")
    runtime = build_runtime(settings)
    return WorkerRuntime(runtime, results_store(settings, runtime.dynamodb), aws_client("sqs"))


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
