"""Every knob of the serving functions, read once from the environment.

The template sets these per function; tests and benchmarks override them. Limits are settings (not
constants) so an operator can tighten them without a code change.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from topicserve.catalogue import MODEL_NAMES, SERVED_BATCH_SIZE
from topicserve.text import DEFAULT_MAX_CHARS

T = TypeVar("T")


def number_setting(env: Mapping[str, str], name: str, default: T, cast: Callable[[str], T]) -> T:
    """A numeric setting; a malformed value is a clear error at init, not a surprise at the first use."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return cast(raw)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise ValueError(f"setting {name} must be {kind}, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return number_setting(env, name, default, int)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return number_setting(env, name, default, float)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"setting {name} must be a boolean (true/false), got {raw!r}")


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name, "")
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    return items or default


def _default_encoder_dir() -> str:
    """The encoder layer ships its files as the ``topicserve_encoder`` package, so the same lookup finds
    them under /opt/python on AWS and wherever the local executor unpacked the layer."""
    try:
        import topicserve_encoder  # type: ignore[import-not-found]
    except ImportError:
        return ""
    return str(Path(topicserve_encoder.__file__).parent)


def _default_model_cache_dir() -> str:
    """``$TMPDIR/models``: /tmp/models on Lambda, where /tmp is private to each execution environment.

    Not a literal /tmp: the local executor gives every environment its own TMPDIR, and a shared /tmp would
    let one environment reuse another's download, so a cold start would not prove what it fetched.
    """
    return str(Path(tempfile.gettempdir()) / "models")


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...] = MODEL_NAMES
    model_stage: str = "production"
    registry_bucket: str = ""
    registry_table: str = ""
    cache_table: str = ""  # one record per text: embedding + answers (topicserve.cache)
    results_table: str = ""
    requests_queue_url: str = ""
    bulk_queue_url: str = ""  # empty: no bulk queue, every submission goes to the requests queue
    bulk_threshold_texts: int = 500
    encoder_dir: str = ""
    encoder_max_length: int = 256
    encoder_threads: int | None = None
    # topicserve.catalogue.SERVED_BATCH_SIZE says why: with another value the HTTP, SQS and bulk paths could
    # label the same text differently, and the heads were trained on other embeddings
    encode_batch_size: int = SERVED_BATCH_SIZE
    model_cache_dir: str = "/tmp/models"
    cache_ttl_seconds: int = 7 * 24 * 3600
    results_ttl_seconds: int = 24 * 3600
    # a retried POST /v1/batches with its Idempotency-Key gets the first answer, not a second paid batch
    idempotency_table: str = ""
    idempotency_window_seconds: int = 3600
    lru_max_items: int = 20_000
    # keys an environment remembers for admission (a shared write on a key's second sighting): the
    # horizon within which a text must recur to earn its write (topicserve.cache.admission)
    doorkeeper_capacity: int = 100_000
    # cache parts switched off, for benchmarks: "all" (no cache), "shared" (no DynamoDB tier), "answers"
    # (records keep embeddings only: heads always run), "admission" (every record goes to DynamoDB, every
    # miss is read), "read_gate" (first sightings are always read, topicserve.cache.admission.ReadGate)
    disabled_caches: tuple[str, ...] = field(default_factory=tuple)
    max_text_chars: int = DEFAULT_MAX_CHARS
    max_texts_per_request: int = 64
    max_requests_per_batch: int = 1_000
    # requests per queued chunk of a batch submission: its results are one item (one-model results compress
    # to ~55 B each: 15 fit one write unit) and one SQS message; more per chunk means fewer writes and
    # messages but a longer retry unit
    chunk_texts: int = 15
    max_message_bytes: int = 256 * 1024
    max_body_bytes: int = 5 * 1024 * 1024  # under Lambda's 6 MB synchronous payload limit
    dedup: bool = True  # in-batch common-subexpression elimination; off only to measure what it saves
    adaptive_batching: bool = False  # the batcher tunes its own SQS mapping (topicserve.adaptive)
    latency_slo_ms: int = 5_000  # end-to-end SQS latency target of the adaptive batcher
    # rollout (topicserve.rollout): how often serving re-reads the registry's routing, the share of texts
    # a shadow scores, and where / how often the per-version rollout records are written
    routing_ttl_seconds: float = 30.0
    routing_load_wait_seconds: float = 1.0  # a request that finds a routing change waits this long for it
    # the deploy's production {model: [version, sha256]}, heads shipped in the encoder layer: a cold start
    # serves them without reading the registry first (topicserve.rollout.seed)
    routing_seed: str = ""
    shadow_sample: float = 1.0
    rollout_table: str = ""
    rollout_flush_seconds: float = 10.0
    # monitoring capture (topicserve.monitoring.capture): window length, share of distinct texts whose
    # embedding is sampled, at most that many per window per environment, how often sums are written
    monitor_table: str = ""
    monitor_window_seconds: int = 300
    monitor_embedding_sample: float = 0.05
    monitor_embedding_cap: int = 200
    monitor_flush_seconds: float = 10.0
    # share of distinct served texts whose answers are kept for label feedback by text (by text hash,
    # topicserve.feedback.ledger): one small write per sampled text and model; 0 turns it off
    feedback_ledger_sample: float = 0.1
    # chaos switches (topicserve.faults), for test stacks only: read only when the stack was deployed with
    # TestSwitches=true (TEST_SWITCHES), so setting FAULT_* on a production function does nothing
    test_switches: bool = False
    fault_rate: float = 0.0
    fault_kill_rate: float = 0.0
    fault_markers: str = ""  # per-text stage faults (topicserve.faults.StageFaults), test stacks only

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        threads = _int(env, "ENCODER_THREADS", 0)
        switches = _bool(env, "TEST_SWITCHES", False)
        chaos = env if switches else {}
        return cls(
            models=_list(env, "MODEL_NAMES", MODEL_NAMES),
            model_stage=env.get("MODEL_STAGE", "production"),
            registry_bucket=env.get("REGISTRY_BUCKET", ""),
            registry_table=env.get("REGISTRY_TABLE", ""),
            cache_table=env.get("CACHE_TABLE", ""),
            results_table=env.get("RESULTS_TABLE", ""),
            requests_queue_url=env.get("REQUESTS_QUEUE_URL", ""),
            bulk_queue_url=env.get("BULK_QUEUE_URL", ""),
            bulk_threshold_texts=_int(env, "BULK_THRESHOLD_TEXTS", 500),
            encoder_dir=env.get("ENCODER_DIR") or _default_encoder_dir(),
            encoder_max_length=_int(env, "ENCODER_MAX_LENGTH", 256),
            encoder_threads=threads or None,
            encode_batch_size=_int(env, "ENCODE_BATCH_SIZE", SERVED_BATCH_SIZE),
            model_cache_dir=env.get("MODEL_CACHE_DIR") or _default_model_cache_dir(),
            cache_ttl_seconds=_int(env, "CACHE_TTL_SECONDS", 7 * 24 * 3600),
            results_ttl_seconds=_int(env, "RESULTS_TTL_SECONDS", 24 * 3600),
            idempotency_table=env.get("IDEMPOTENCY_TABLE", ""),
            idempotency_window_seconds=_int(env, "IDEMPOTENCY_WINDOW_SECONDS", 3600),
            lru_max_items=_int(env, "LRU_MAX_ITEMS", 20_000),
            doorkeeper_capacity=_int(env, "DOORKEEPER_CAPACITY", 100_000),
            disabled_caches=_list(env, "DISABLE_CACHES", ()),
            max_text_chars=_int(env, "MAX_TEXT_CHARS", DEFAULT_MAX_CHARS),
            max_texts_per_request=_int(env, "MAX_TEXTS_PER_REQUEST", 64),
            max_requests_per_batch=_int(env, "MAX_REQUESTS_PER_BATCH", 1_000),
            chunk_texts=_int(env, "CHUNK_TEXTS", 15),
            max_message_bytes=_int(env, "MAX_MESSAGE_BYTES", 256 * 1024),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 5 * 1024 * 1024),
            dedup=_bool(env, "DEDUP", True),
            adaptive_batching=_bool(env, "ADAPTIVE_BATCHING", False),
            latency_slo_ms=_int(env, "LATENCY_SLO_MS", 5_000),
            routing_ttl_seconds=_float(env, "ROUTING_TTL_SECONDS", 30.0),
            routing_load_wait_seconds=_float(env, "ROUTING_LOAD_WAIT_SECONDS", 1.0),
            routing_seed=env.get("ROUTING_SEED", ""),
            shadow_sample=_float(env, "SHADOW_SAMPLE", 1.0),
            rollout_table=env.get("ROLLOUT_TABLE", ""),
            rollout_flush_seconds=_float(env, "ROLLOUT_FLUSH_SECONDS", 10.0),
            monitor_table=env.get("MONITOR_TABLE", ""),
            monitor_window_seconds=_int(env, "MONITOR_WINDOW_SECONDS", 300),
            monitor_embedding_sample=_float(env, "MONITOR_EMBEDDING_SAMPLE", 0.05),
            monitor_embedding_cap=_int(env, "MONITOR_EMBEDDING_CAP", 200),
            monitor_flush_seconds=_float(env, "MONITOR_FLUSH_SECONDS", 10.0),
            feedback_ledger_sample=_float(env, "FEEDBACK_LEDGER_SAMPLE", 0.1),
            test_switches=switches,
            fault_rate=_float(chaos, "FAULT_RATE", 0.0),
            fault_kill_rate=_float(chaos, "FAULT_KILL_RATE", 0.0),
            fault_markers=chaos.get("FAULT_MARKERS", ""),
        )

    def cache_enabled(self, part: str) -> bool:
        """Whether a cache part (all, shared, answers, admission) is on; "all" off turns every part off."""
        return part not in self.disabled_caches and "all" not in self.disabled_caches
