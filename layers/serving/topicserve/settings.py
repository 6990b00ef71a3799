"""Every setting, each declared once, and the one reader of the environment.

A setting is a field of a frozen settings dataclass made by :func:`setting`: the field gives its name and
type, the declaration its default, its environment variable and one line of why. :func:`load`
(``X.from_env()``) reads a settings class from the environment by those declarations alone, one rule per
type, so adding a setting is adding one field. :class:`Settings` is what every function's runtime is built
from (:mod:`topicserve.bootstrap`); the few concerns that one function kind alone reads declare theirs the
same way beside their code, so that no other function's cold start defines them: the gate's thresholds
(``topicserve.rollout.gates.Thresholds``), the drift monitor's (``topicserve.monitoring.monitor.
DriftThresholds``), the bulk worker's (``topicserve_worker.worker.WorkerSettings``). Nothing else in the
serving library, the handlers, the worker or the warmer reads the environment, and every variable
``template.yaml`` sets is declared (``tests/unit/test_settings.py`` checks both); ``docs/SETTINGS.md``
lists them all, rendered from the declarations (``python -m infra.settings_doc``).

How a value is read, whatever the setting: unset or blank is the default; an integer, number, boolean or
choice that does not parse is an error at init that names the variable, not a surprise at the first use;
text is stripped; a list is comma-separated (blank items dropped; none left: the default); an optional
integer reads 0 as "none". The chaos switches (``FAULT_*``) are read only where ``TEST_SWITCHES`` is true,
so setting them on a production function does nothing.

Stdlib only and cheap: the predict function imports and reads its settings in its cold start (one
dataclass: each further settings class would add its own definition to every cold start). No
``from __future__ import annotations`` here: the declared types stay objects, which :func:`load` reads.
"""

import functools
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, get_args, get_origin, get_type_hints

from topicserve.catalogue import MODEL_NAMES, SERVED_BATCH_SIZE
from topicserve.text import DEFAULT_MAX_CHARS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")


def setting(
    default: T,
    *,
    env: str,
    why: str,
    fallback: Callable[[], T] | None = None,
    shown: str = "",
    only_if: str = "",
) -> T:
    """One setting: a dataclass field with its default, the environment variable it is read from and one
    line of why (docs/SETTINGS.md shows them).

    ``fallback``: what :func:`load` uses instead of ``default`` when the variable is unset (a default that
    depends on where the code runs; ``shown`` describes it in the docs). ``only_if``: a boolean setting of
    the same class, declared before this one, without which the variable is not read at all.
    """
    metadata = {"env": env, "why": why, "fallback": fallback, "shown": shown, "only_if": only_if}
    return field(default=default, metadata=metadata)


def load(cls: type[D], env: Mapping[str, str] | None = None) -> D:
    """``cls`` with every declared setting read from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for attribute, name, parse, fallback, only_if in _plan(cls):
        if only_if and not values.get(only_if, _default(cls, only_if)):
            continue
        raw = env.get(name, "").strip()
        if raw:
            value = parse(name, raw)
            if value is not None:
                values[attribute] = value
        elif fallback is not None:
            values[attribute] = fallback()
    return cls(**values)


class FromEnv:
    """``X.from_env(env=None)`` of a settings class: :func:`load`."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        return load(cls, env)  # type: ignore[type-var]  # every subclass is a dataclass


#: (attribute, variable, reading rule, fallback, only_if) per setting
_Step = tuple[str, str, Callable[[str, str], Any], Callable[[], Any] | None, str]
_PLANS: dict[type[Any], tuple[_Step, ...]] = {}


def _plan(cls: type[Any]) -> tuple[_Step, ...]:
    """How :func:`load` reads ``cls``, worked out from its declarations once per class."""
    plan = _PLANS.get(cls)
    if plan is None:
        kinds = _types(cls)
        plan = _PLANS[cls] = tuple(
            (f.name, f.metadata["env"], _rule(kinds[f.name]), f.metadata["fallback"], f.metadata["only_if"])
            for f in fields(cls)
            if "env" in f.metadata
        )
    return plan


def _types(cls: type[Any]) -> dict[str, Any]:
    """Each field's declared type; evaluated where the class's module postpones annotations (strings)."""
    kinds = {f.name: f.type for f in fields(cls)}
    if any(isinstance(kind, str) for kind in kinds.values()):
        kinds = get_type_hints(cls)
    return kinds


def _default(cls: type[Any], name: str) -> Any:
    f = cls.__dataclass_fields__[name]
    return f.default if f.default is not MISSING else f.default_factory()


# -- one reading rule per declared type: (variable, non-blank value) -> value, None for the default -------

_OPTIONAL_INT = int | None
_LIST = tuple[str, ...]
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _rule(kind: Any) -> Callable[[str, str], Any]:
    rule = _RULES.get(kind)
    if rule is not None:
        return rule
    if get_origin(kind) is Literal:
        return functools.partial(_choice, get_args(kind))
    raise TypeError(f"no reading rule for the type {kind!r}")


def _text(name: str, raw: str) -> str:
    return raw


def _bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"setting {name} must be a boolean (true/false), got {raw!r}")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from None


def _optional_int(name: str, raw: str) -> int | None:
    return _int(name, raw) or None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"setting {name} must be a number, got {raw!r}") from None


def _list(name: str, raw: str) -> tuple[str, ...] | None:
    return tuple(part.strip() for part in raw.split(",") if part.strip()) or None


def _choice(choices: tuple[str, ...], name: str, raw: str) -> str:
    if raw.lower() not in choices:
        raise ValueError(f"setting {name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw.lower()


_RULES: dict[Any, Callable[[str, str], Any]] = {
    str: _text,
    bool: _bool,
    int: _int,
    _OPTIONAL_INT: _optional_int,
    float: _float,
    _LIST: _list,
}


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
class Settings(FromEnv):
    """What every function's runtime is built from: template.yaml sets these per function (Globals and each
    function's Environment); tests and benchmarks override them. Limits are settings, not constants, so an
    operator can tighten them without a code change."""

    models: tuple[str, ...] = setting(
        MODEL_NAMES,
        env="MODEL_NAMES",
        why="the heads served: one per predict function, every one for the batcher, API, gate and monitor",
    )
    registry_bucket: str = setting(
        "", env="REGISTRY_BUCKET", why="the artifacts bucket: model files, drift reports, archived labels"
    )
    registry_table: str = setting(
        "", env="REGISTRY_TABLE", why="the model registry: versions, stages, routing, history"
    )
    cache_table: str = setting(
        "",
        env="CACHE_TABLE",
        why="one record per text: embedding + answers (topicserve.cache); blank: LRU only",
    )
    results_table: str = setting("", env="RESULTS_TABLE", why="batch results, one item per chunk")
    requests_queue_url: str = setting(
        "", env="REQUESTS_QUEUE_URL", why="where the API queues batch chunks for the batcher"
    )
    bulk_queue_url: str = setting(
        "",
        env="BULK_QUEUE_URL",
        why="the GPU worker's queue; blank: no bulk queue, all to the requests queue",
    )
    bulk_threshold_texts: int = setting(
        500, env="BULK_THRESHOLD_TEXTS", why="a submission of this many texts or more goes to the bulk queue"
    )
    encoder_dir: str = setting(
        "",
        env="ENCODER_DIR",
        why="the encoder's files (model.onnx, tokenizer.json, encoder.json)",
        fallback=_default_encoder_dir,
        shown="the encoder layer's folder",
    )
    encoder_max_length: int = setting(
        256, env="ENCODER_MAX_LENGTH", why="tokens of a text the encoder reads, as sentence-transformers"
    )
    encoder_threads: int | None = setting(
        None, env="ENCODER_THREADS", why="onnxruntime intra-op threads; 0 or blank: onnxruntime's choice"
    )
    encode_batch_size: int = setting(
        SERVED_BATCH_SIZE,
        env="ENCODE_BATCH_SIZE",
        why="texts per encoder call; another value labels texts differently (catalogue.SERVED_BATCH_SIZE)",
    )
    model_cache_dir: str = setting(
        "/tmp/models",
        env="MODEL_CACHE_DIR",
        why="where downloaded heads are kept, private to each execution environment",
        fallback=_default_model_cache_dir,
        shown="$TMPDIR/models",
    )
    cache_ttl_seconds: int = setting(
        7 * 24 * 3600, env="CACHE_TTL_SECONDS", why="lifetime of a cache record (7 days)"
    )
    results_ttl_seconds: int = setting(
        24 * 3600, env="RESULTS_TTL_SECONDS", why="how long a batch's results stay readable (a day)"
    )
    idempotency_table: str = setting(
        "",
        env="IDEMPOTENCY_TABLE",
        why="a retried POST /v1/batches with its Idempotency-Key gets the first answer, not a second batch",
    )
    idempotency_window_seconds: int = setting(
        3600, env="IDEMPOTENCY_WINDOW_SECONDS", why="how long an Idempotency-Key is remembered"
    )
    lru_max_items: int = setting(
        20_000, env="LRU_MAX_ITEMS", why="records the in-process cache in front of the shared table holds"
    )
    doorkeeper_capacity: int = setting(
        100_000,
        env="DOORKEEPER_CAPACITY",
        why="keys remembered for admission: a text must recur within them to earn its shared write",
    )
    disabled_caches: tuple[str, ...] = setting(
        (),
        env="DISABLE_CACHES",
        why="cache parts off, for benchmarks: all, shared, answers, admission, read_gate (topicserve.cache)",
    )
    max_text_chars: int = setting(
        DEFAULT_MAX_CHARS,
        env="MAX_TEXT_CHARS",
        why="characters kept per text (a cost guard; one SQS message)",
    )
    max_texts_per_request: int = setting(64, env="MAX_TEXTS_PER_REQUEST", why="texts in one predict request")
    max_requests_per_batch: int = setting(
        1_000, env="MAX_REQUESTS_PER_BATCH", why="requests in one batch submission"
    )
    chunk_texts: int = setting(
        15,
        env="CHUNK_TEXTS",
        why="requests per queued chunk: one results item (15 fit a write unit) and one SQS message",
    )
    max_message_bytes: int = setting(256 * 1024, env="MAX_MESSAGE_BYTES", why="the SQS message size limit")
    max_body_bytes: int = setting(
        5 * 1024 * 1024, env="MAX_BODY_BYTES", why="request body limit, under Lambda's 6 MB payload limit"
    )
    dedup: bool = setting(
        True, env="DEDUP", why="in-batch dedup of repeated texts; off only to measure what it saves"
    )
    adaptive_batching: bool = setting(
        False, env="ADAPTIVE_BATCHING", why="the batcher tunes its own SQS mapping (topicserve.adaptive)"
    )
    latency_slo_ms: int = setting(
        5_000, env="LATENCY_SLO_MS", why="end-to-end SQS latency target of the adaptive batcher"
    )
    routing_ttl_seconds: float = setting(
        30.0, env="ROUTING_TTL_SECONDS", why="how often serving re-reads the registry's routing"
    )
    routing_load_wait_seconds: float = setting(
        1.0,
        env="ROUTING_LOAD_WAIT_SECONDS",
        why="how long a request that finds a routing change waits for it",
    )
    routing_seed: str = setting(
        "",
        env="ROUTING_SEED",
        why="the deploy's production heads: a cold start serves them before reading the registry",
    )
    shadow_sample: float = setting(1.0, env="SHADOW_SAMPLE", why="the share of texts a shadow scores")
    rollout_table: str = setting(
        "", env="ROLLOUT_TABLE", why="per-version rollout records: what the gate decides on"
    )
    rollout_flush_seconds: float = setting(
        10.0, env="ROLLOUT_FLUSH_SECONDS", why="how often an environment writes its rollout sums"
    )
    monitor_table: str = setting(
        "", env="MONITOR_TABLE", why="monitoring window sums and label feedback (blank: neither)"
    )
    monitor_window_seconds: int = setting(300, env="MONITOR_WINDOW_SECONDS", why="a monitoring window")
    monitor_embedding_sample: float = setting(
        0.05, env="MONITOR_EMBEDDING_SAMPLE", why="share of distinct texts whose embedding is sampled"
    )
    monitor_embedding_cap: int = setting(
        200,
        env="MONITOR_EMBEDDING_CAP",
        why="at most this many sampled embeddings per window and environment",
    )
    monitor_flush_seconds: float = setting(
        10.0, env="MONITOR_FLUSH_SECONDS", why="how often an environment writes its monitoring sums"
    )
    feedback_ledger_sample: float = setting(
        0.1,
        env="FEEDBACK_LEDGER_SAMPLE",
        why="share of distinct texts whose answers are kept for label feedback by text; 0: off",
    )
    test_switches: bool = setting(
        False, env="TEST_SWITCHES", why="the chaos switches below are read (test stacks only)"
    )
    fault_rate: float = setting(
        0.0,
        env="FAULT_RATE",
        why="chance per batch that the batcher fails mid-write, topicserve.faults",
        only_if="test_switches",
    )
    fault_kill_rate: float = setting(
        0.0,
        env="FAULT_KILL_RATE",
        why="chance per batch that the batcher's environment dies mid-write",
        only_if="test_switches",
    )
    fault_markers: str = setting(
        "",
        env="FAULT_MARKERS",
        why="per-text stage faults, topicserve.faults.StageFaults",
        only_if="test_switches",
    )
    app_version: str = setting("dev", env="APP_VERSION", why="the release GET /v1/health reports")
    function_name: str = setting(
        "",
        env="AWS_LAMBDA_FUNCTION_NAME",
        why="set by Lambda: the adaptive batcher finds its own SQS mapping by it",
    )
    service_name: str = setting(
        "", env="POWERTOOLS_SERVICE_NAME", why="the service logs and metrics name; blank: the function kind"
    )
    metrics_namespace: str = setting(
        "TopicServe", env="POWERTOOLS_METRICS_NAMESPACE", why="the CloudWatch namespace of every metric"
    )
    warm_targets: tuple[str, ...] = setting(
        (), env="WARM_TARGETS", why="the functions the warmer keeps warm (warmers/app.py)"
    )
    warm_concurrency: int = setting(1, env="WARM_CONCURRENCY", why="environments the warmer keeps per target")

    def cache_enabled(self, part: str) -> bool:
        """Whether a cache part (all, shared, answers, admission) is on; "all" off turns every part off."""
        return part not in self.disabled_caches and "all" not in self.disabled_caches


# -- the declarations, listed: docs/SETTINGS.md (infra.settings_doc), tests/unit/test_settings.py ------


def declared(cls: type[Any]) -> Iterator[tuple[str, str, str, str, bool, str]]:
    """(attribute, variable, type, default, described, why) of every setting of ``cls``, in declaration
    order; ``described``: the default is a description (a ``fallback``'s ``shown``), not a value."""
    kinds = _types(cls)
    for f in fields(cls):
        if "env" not in f.metadata:
            continue
        m = f.metadata
        why = m["why"]
        if m["only_if"]:
            why += f"; read only where {cls.__dataclass_fields__[m['only_if']].metadata['env']} is true"
        default = m["shown"] or _shown(_default(cls, f.name))
        yield f.name, m["env"], _type_name(kinds[f.name]), default, bool(m["shown"]), why


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _type_name(kind: Any) -> str:
    names = {str: "text", int: "integer", float: "number", bool: "boolean"}
    if kind in names:
        return names[kind]
    if kind == _OPTIONAL_INT:
        return "integer, 0: none"
    if kind == _LIST:
        return "list"
    if get_origin(kind) is Literal:
        return " / ".join(get_args(kind))
    raise TypeError(f"no reading rule for the type {kind!r}")
