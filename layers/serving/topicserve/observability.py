"""Logging, metrics and HTTP error mapping shared by the handlers (Powertools for AWS Lambda).

Handlers stay thin by taking everything cross-cutting from here: a structured logger with the model,
version and cold_start keys, the per-invocation ritual as one decorator (:func:`invocation`: warm-ups,
correlation id, response metric, Powertools' cold-start metric and metrics flush), EMF metrics from the
service's counters (:func:`record_served`), and one mapping of typed input errors to 4xx responses so every
route answers bad input the same way.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.provider import cold_start as powertools_cold_start
from aws_lambda_powertools.middleware_factory import lambda_handler_decorator

from topicserve.errors import BackendUnavailableError, InvalidInputError
from topicserve.frontdoor import FrontDoorResolver, Response
from topicserve.responses import error_body, status_for
from topicserve.rollout.tally import Observation
from topicserve.service import BatchResult, Stats
from topicserve.settings import Settings
from topicserve.warming import handle_warm_event, is_warm_event

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from topicserve.initsteps import InitSteps

#: POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE (Powertools reads its other variables itself)
_SETTINGS = Settings.from_env()
NAMESPACE = _SETTINGS.metrics_namespace
#: What the routes answer with a status of their own: a JSON object body
JsonResponse: TypeAlias = Response[dict[str, Any]]
#: A Lambda handler: (event, context) -> its answer
Handler = TypeVar("Handler", bound=Callable[[Any, "LambdaContext"], Any])

# Every invocation flushes the function's metrics (invocation), warm-ups and the gate's runs with none added:
# nothing is printed then, and Powertools' warning that says so would be one log line per environment
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def make_logger(service: str) -> Logger:
    """The function's Powertools logger; the library's own loggers (``logging.getLogger(__name__)`` in
    every ``topicserve`` module, as a library should) get its handler and JSON format, so one function
    writes one kind of structured log line whichever module speaks."""
    logger = Logger(service=service_name(service))
    logging.getLogger("topicserve")  # register the package logger its modules propagate to
    copy_config_to_registered_loggers(source_logger=logger, include={"topicserve"})
    return logger


def make_metrics(service: str) -> Metrics:
    return Metrics(namespace=NAMESPACE, service=service_name(service))


def service_name(kind: str) -> str:
    """The service logs and metrics name: POWERTOOLS_SERVICE_NAME where the template sets it (predict-rf,
    gpu-worker, ...), else the function kind."""
    return _SETTINGS.service_name or kind


class Warmable(Protocol):
    """What a warm-up needs of an execution environment's runtime (:class:`topicserve.bootstrap.Runtime`)."""

    init_seconds: float
    init_steps: InitSteps

    def flush(self, *, force: bool = False) -> None: ...


class Recording(Protocol):
    """Where an environment sums what it served (:class:`topicserve.bootstrap.Runtime`)."""

    def record_rollout(self, observations: Sequence[Observation]) -> None: ...

    def record_served(self, results: Sequence[BatchResult]) -> None: ...


def is_cold_start() -> bool:
    """Whether this invocation is its environment's first: Powertools' own flag, the one its ``ColdStart``
    metric is emitted on (:func:`invocation`), so the logs, the warm-up answer and the metric agree. Set at
    import, cleared when the first invocation returns (one that raised leaves it to the next, as Powertools'
    metric does); false from the start under provisioned concurrency, whose init delayed no request."""
    return bool(powertools_cold_start.is_cold_start)


@lambda_handler_decorator
def _ritual(
    handler: Callable[[Any, LambdaContext], Any],
    event: Any,
    context: LambdaContext,
    *,
    logger: Logger,
    metrics: Metrics,
    runtime: Warmable | None,
    http: bool,
) -> Any:
    """The middleware :func:`invocation` wraps in Powertools' own two (see there)."""
    cold = is_cold_start()
    logger.append_keys(cold_start=cold)
    if runtime is not None and is_warm_event(event):
        runtime.flush(force=True)  # a warm-up is idle time: write what this environment still holds
        return handle_warm_event(
            event, cold_start=cold, init_seconds=runtime.init_seconds, init_steps=runtime.init_steps.to_dict()
        )
    logger.set_correlation_id(context.aws_request_id)
    response = handler(event, context)
    if http:
        record_response(metrics, response["statusCode"])
    return response


def invocation(
    *, logger: Logger, metrics: Metrics, runtime: Warmable | None = None, http: bool = False
) -> Callable[[Handler], Handler]:
    """Every function's per-invocation ritual, as one decorator of its handler (a Powertools middleware,
    ``middleware_factory.lambda_handler_decorator``, inside Powertools' own decorators):

    * Powertools' Lambda context keys in every log line (``Logger.inject_lambda_context``), and
      ``cold_start`` (:func:`is_cold_start`);
    * with ``runtime``: a warm-up event (:mod:`topicserve.warming`) is answered here, with ``cold_start``,
      ``init_seconds`` and ``init_steps``, after the environment's rollout and monitoring sums are flushed
      (a warm-up is idle time); the handler never sees one;
    * the request id as the correlation id;
    * with ``http``: the response counted by status class (:func:`record_response`);
    * Powertools' ``Metrics.log_metrics(capture_cold_start_metric=True)``: the metrics flushed when the
      handler returns or raises, and its ``ColdStart`` metric (dimensions ``function_name``, ``service``)
      once per environment.
    """

    def decorate(handler: Handler) -> Handler:
        ritual = _ritual(handler, logger=logger, metrics=metrics, runtime=runtime, http=http)
        with_context = logger.inject_lambda_context(ritual, log_event=False)
        return cast(Handler, metrics.log_metrics(with_context, capture_cold_start_metric=True))

    return decorate


def record_served(
    metrics: Metrics, runtime: Recording, served: Sequence[BatchResult], *, latency_ms: float | None = None
) -> None:
    """After a request or a batch was served (never a warm-up), in one call: the service's counters summed
    over its passes as EMF metrics (with the latency where there is one), each candidate's metrics, and the
    runtime's rollout and monitoring sums."""
    rollout = [o for result in served for o in result.rollout]
    if served:
        record_stats(metrics, Stats.total(r.stats for r in served), latency_ms=latency_ms)
    record_rollout(rollout, str(metrics.service))
    runtime.record_rollout(rollout)
    runtime.record_served(served)


def record_stats(metrics: Metrics, stats: Stats, *, latency_ms: float | None = None) -> None:
    """EMF metrics of one served request or SQS batch (never of a warm-up)."""
    if latency_ms is not None:
        metrics.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=latency_ms)
    metrics.add_metric(name="Texts", unit=MetricUnit.Count, value=stats.texts)
    metrics.add_metric(name="UniqueTexts", unit=MetricUnit.Count, value=stats.unique_texts)
    metrics.add_metric(name="DuplicateTexts", unit=MetricUnit.Count, value=stats.duplicates)
    metrics.add_metric(name="PredictionCacheHits", unit=MetricUnit.Count, value=stats.prediction_hits)
    metrics.add_metric(name="PredictionCacheMisses", unit=MetricUnit.Count, value=stats.prediction_misses)
    metrics.add_metric(name="EmbeddingCacheHits", unit=MetricUnit.Count, value=stats.embedding_hits)
    metrics.add_metric(name="TextsEncoded", unit=MetricUnit.Count, value=stats.encoded)
    metrics.add_metric(name="EncoderMs", unit=MetricUnit.Milliseconds, value=stats.encode_seconds * 1000)
    metrics.add_metric(name="CacheErrors", unit=MetricUnit.Count, value=stats.cache_errors)
    metrics.add_metric(name="SharedCacheReads", unit=MetricUnit.Count, value=stats.cache_reads)
    metrics.add_metric(name="SharedCacheWrites", unit=MetricUnit.Count, value=stats.cache_writes)


def record_rollout(observations: list[Observation], service: str) -> None:
    """EMF metrics of every candidate on one request, one blob per (model, stage, version): the
    dimensions differ from the function's own metrics, so they are not mixed into its blob."""
    for o in observations:
        blob = EphemeralMetrics(namespace=NAMESPACE, service=service_name(service))
        blob.add_dimension(name="model", value=o.model)
        blob.add_dimension(name="stage", value=o.stage)
        blob.add_metadata(key="version", value=o.version)
        t = o.tally
        blob.add_metric(name="CandidateCompared", unit=MetricUnit.Count, value=t.compared)
        blob.add_metric(name="CandidateAgreed", unit=MetricUnit.Count, value=t.agreed)
        blob.add_metric(name="CandidateErrors", unit=MetricUnit.Count, value=t.errors)
        blob.add_metric(name="CanaryAnswers", unit=MetricUnit.Count, value=t.answered)
        blob.add_metric(name="CandidateHeadMs", unit=MetricUnit.Milliseconds, value=t.candidate_head_ms)
        if t.compared:
            blob.add_metric(
                name="CandidateAgreement", unit=MetricUnit.Percent, value=100 * t.agreed / t.compared
            )
            blob.add_metric(
                name="CandidateConfidence", unit=MetricUnit.NoUnit, value=t.candidate_confidence / t.compared
            )
        blob.flush_metrics()


def record_response(metrics: Metrics, status: int) -> None:
    """Count every answered request by status class, so 4xx from bad input and 5xx are both visible."""
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Status{status // 100}xx", unit=MetricUnit.Count, value=1)


def stats_log(stats: Stats) -> dict[str, Any]:
    return {
        "texts": stats.texts,
        "unique_texts": stats.unique_texts,
        "duplicates": stats.duplicates,
        "prediction_hits": stats.prediction_hits,
        "embedding_hits": stats.embedding_hits,
        "encoded": stats.encoded,
        "encode_ms": round(stats.encode_seconds * 1000, 2),
        "heads_ms": round(stats.heads_seconds * 1000, 2),
        "cache_ms": round(stats.cache_seconds * 1000, 2),
        "cache_errors": stats.cache_errors,
        "cache_reads": stats.cache_reads,
        "cache_writes": stats.cache_writes,
    }


def json_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JsonResponse:
    return Response(status_code=status, body=body, headers=headers)


def install_error_handlers(app: FrontDoorResolver, logger: Logger) -> None:
    """Typed input errors -> 4xx with the message; unknown routes -> 404; backend outages -> 503; anything
    else -> a logged 500 with a JSON body, never an exception escaping the handler (API Gateway would turn
    that into a bare 502, and the environment's state would be in doubt)."""

    @app.exception_handler(InvalidInputError)
    def _invalid(exc: InvalidInputError) -> JsonResponse:
        return json_response(status_for(exc), error_body(exc))

    @app.exception_handler(BackendUnavailableError)
    def _unavailable(exc: BackendUnavailableError) -> JsonResponse:
        logger.warning("backend unavailable", extra={"error": str(exc)})
        return json_response(503, error_body(exc))

    @app.exception_handler(Exception)
    def _server_fault(exc: Exception) -> JsonResponse:
        logger.exception("unhandled error")
        return json_response(500, {"error": {"type": "InternalError", "message": "internal error; logged"}})

    @app.not_found
    def _not_found(exc: Exception) -> JsonResponse:
        event = app.current_event
        return json_response(
            404,
            {"error": {"type": "NotFound", "message": f"no route {event.http_method} {event.path}"}},
        )
