"""The API's light routes: batches (enqueue to SQS, read results), label feedback, the registry view,
health.

No model is loaded here, so these routes cold-start in milliseconds. ``/v1/predict/{model}`` for a model
without its own function lands here too and gets a clear 404.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from topicserve.bootstrap import build_api
from topicserve.catalogue import HEADS, SERVED_ENCODER
from topicserve.errors import BackendUnavailableError, RegistryError, UnknownModelError
from topicserve.feedback.model import parse_feedback
from topicserve.feedback.store import submit_feedback
from topicserve.frontdoor import FrontDoorResolver
from topicserve.observability import (
    JsonResponse,
    install_error_handlers,
    invocation,
    json_response,
    make_logger,
    make_metrics,
)
from topicserve.queue import choose_queue, send_all
from topicserve.registry.manifest import encoder_model_name
from topicserve.requests import (
    NothingValidError,
    check_batch_id,
    encode_page_token,
    event_body,
    pack_chunks,
    parse_batch_submission,
    parse_page_request,
)
from topicserve.responses import error_body, error_result
from topicserve.results import ResultChunk
from topicserve.rollout.runner import rollout_status

logger = make_logger("api")
metrics = make_metrics("api")
TITLES = {h.name: h.title for h in HEADS}
api = build_api()
settings, sqs, registry, thresholds = api.settings, api.sqs, api.registry, api.thresholds
results, idempotency, rollout_store = api.results, api.idempotency, api.rollout
feedback, label_archive = api.feedback, api.label_archive
app = FrontDoorResolver()  # the REST API's events and function URLs' (topicserve.frontdoor)
install_error_handlers(app, logger)


@app.get("/v1/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "models": list(settings.models), "version": settings.app_version}


@app.get("/v1/models")
def models() -> dict[str, Any]:
    """Every model's versions and stages, and for the heads their rollout: routing (production, canary and
    weight, shadow), the candidates' records with what the gate would decide now, the last transitions;
    and, where labels came back, each version's live accuracy (with its interval), calibration error and
    offline reference."""
    rollout = rollout_status(registry, rollout_store, thresholds, list(settings.models))
    quality = feedback.report(registry, list(settings.models)) if feedback else {}
    view: dict[str, Any] = {}
    for name in [*settings.models, encoder_model_name(SERVED_ENCODER)]:
        versions = registry.list(name)
        try:
            production: Any = registry.resolve(name).to_dict()
        except RegistryError:
            production = None
        view[name] = {
            "title": TITLES.get(name, "sentence encoder"),
            "production": production,
            "versions": [
                {"version": v.version, "stage": v.stage.value, "created_at": v.created_at} for v in versions
            ],
        }
        if name in rollout:
            view[name]["rollout"] = rollout[name]
        if name in quality:  # live accuracy per version from label feedback, all windows together
            view[name]["quality"] = quality[name]
    return {"models": view}


@app.post("/v1/predict/<model>")
def unknown_model(model: str) -> JsonResponse:
    raise UnknownModelError(f"unknown model {model!r}; served: {sorted(settings.models)}")


@app.exception_handler(NothingValidError)
def nothing_valid(exc: NothingValidError) -> JsonResponse:
    return json_response(400, {**error_body(exc), "rejected": [r.to_dict() for r in exc.rejected]})


@app.post("/v1/batches")
def submit_batch() -> JsonResponse:
    """With an ``Idempotency-Key``, a retry gets the first answer again (topicserve.idempotency)."""
    body = event_body(app.current_event)
    event = app.current_event.raw_event
    answer = idempotency.run(event, body, app.lambda_context, lambda: accept_batch(body))
    return json_response(202, answer.body, answer.headers)


def accept_batch(body: str | bytes | None) -> dict[str, Any]:
    """Queue the valid items; answer the rejected ones at once with error results, so the batch
    completes with one result per item either way. The 202 body."""
    submission = parse_batch_submission(body, settings, settings.models)
    batch_id = submission.batch_id
    chunks = pack_chunks(
        submission.accepted, max_texts=settings.chunk_texts, max_bytes=settings.max_message_bytes
    )
    rejected = ResultChunk(
        batch_id, len(chunks), tuple((r.request_id, error_result(r.error)) for r in submission.rejected)
    )
    results.create_batch(batch_id, submission.count, rejected)
    queue, queue_url = choose_queue(len(submission.accepted), submission.bulk, settings)
    send_all(sqs, queue_url, [c.to_message() for c in chunks])
    logger.info(
        "batch accepted",
        extra={
            "batch_id": batch_id,
            "queued": len(submission.accepted),
            "chunks": len(chunks),
            "rejected": len(submission.rejected),
            "queue": queue,
        },
    )
    return {
        "batch_id": batch_id,
        "count": submission.count,
        "queued": len(submission.accepted),
        "queue": queue,
        "rejected": [r.to_dict() for r in submission.rejected],
        "status_url": f"/v1/batches/{batch_id}",
    }


@app.post("/v1/feedback")
def post_feedback() -> JsonResponse:
    """True labels of served answers (topicserve.feedback): up to 1,000 items ``{text, label}`` or
    ``{batch_id, request_id, label}``; each joined to what every model served and counted once."""
    if feedback is None:
        raise BackendUnavailableError("label feedback needs the monitor table (MONITOR_TABLE)")
    parsed = parse_feedback(
        event_body(app.current_event), max_bytes=settings.max_body_bytes, max_chars=settings.max_text_chars
    )
    outcome = submit_feedback(
        parsed, feedback, settings.models, window_seconds=settings.monitor_window_seconds
    )
    if label_archive is not None:  # the labelled texts, for retraining (training.candidate --with-feedback)
        try:
            label_archive.put(list({j.item.index: j.item for j in outcome.joined}.values()))
        except Exception as exc:  # counted already: a lost archive costs retraining data, not the answer
            logger.warning("feedback archive write failed", extra={"error": repr(exc)})
    answer = outcome.to_dict()
    logger.info(
        "feedback",
        extra={
            k: answer[k] if k != "rejected" else len(answer[k])
            for k in ("accepted", "duplicates", "rejected")
        }
        | {"writes": outcome.writes},
    )
    return json_response(200, answer)


@app.get("/v1/batches/<batch_id>")
def get_batch(batch_id: str) -> JsonResponse:
    """One page of results: ``?limit=N`` (default 100, at most 1,000), then ``?next=<token>``."""
    page_request = parse_page_request(app.current_event.query_string_parameters)
    page = results.get_page(check_batch_id(batch_id), limit=page_request.limit, after=page_request.after)
    if page is None:
        return json_response(404, {"error": {"type": "NotFound", "message": f"no batch {batch_id!r}"}})
    token = encode_page_token(page.last_request_id) if page.last_request_id else None
    return json_response(200, page.to_dict(next_token=token))


@invocation(logger=logger, metrics=metrics, http=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
