"""The API's light routes: batches (enqueue to SQS, read results), the registry view, health.

No model is loaded here, so these routes cold-start in milliseconds. ``/v1/predict/{model}`` for a model
without its own function lands here too and gets a clear 404.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from topicserve.bootstrap import aws_client, make_registry
from topicserve.errors import RegistryError, UnknownModelError
from topicserve.observability import install_error_handlers, json_response, make_logger
from topicserve.queue import send_all
from topicserve.registry.manifest import encoder_model_name
from topicserve.requests import event_body, parse_batch_submission
from topicserve.results import ResultsStore
from topicserve.settings import Settings

logger = make_logger("api")
settings = Settings.from_env()
dynamodb = aws_client("dynamodb")
sqs = aws_client("sqs")
registry = make_registry(settings, dynamodb)
results = ResultsStore(settings.results_table, client=dynamodb, ttl_seconds=settings.results_ttl_seconds)
app = APIGatewayRestResolver()
install_error_handlers(app, logger)


@app.get("/v1/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "models": list(settings.models), "version": os.environ.get("APP_VERSION", "dev")}


@app.get("/v1/models")
def models() -> dict[str, Any]:
    view: dict[str, Any] = {}
    for name in [*settings.models, encoder_model_name("int8")]:
        versions = registry.list(name)
        try:
            production: Any = registry.resolve(name).to_dict()
        except RegistryError:
            production = None
        view[name] = {
            "production": production,
            "versions": [
                {"version": v.version, "stage": v.stage.value, "created_at": v.created_at} for v in versions
            ],
        }
    return {"models": view}


@app.post("/v1/predict/<model>")
def unknown_model(model: str) -> Response:
    raise UnknownModelError(f"unknown model {model!r}; served: {sorted(settings.models)}")


@app.post("/v1/batches")
def submit_batch() -> Response:
    requests = parse_batch_submission(event_body(app.current_event), settings, settings.models)
    batch_id = requests[0].batch_id
    results.create_batch(batch_id, len(requests))
    send_all(sqs, settings.requests_queue_url, [r.to_message() for r in requests])
    logger.info("batch accepted", extra={"batch_id": batch_id, "requests": len(requests)})
    return json_response(
        202, {"batch_id": batch_id, "count": len(requests), "status_url": f"/v1/batches/{batch_id}"}
    )


@app.get("/v1/batches/<batch_id>")
def get_batch(batch_id: str) -> Response:
    view = results.get_batch(batch_id)
    if view is None:
        return json_response(404, {"error": {"type": "NotFound", "message": f"no batch {batch_id!r}"}})
    return json_response(200, view.to_dict())


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
