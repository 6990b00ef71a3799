"""POST /v1/predict/{model}: one head per function (MODEL_NAMES holds its one model).

Init (module scope, once per environment) loads the encoder from the encoder layer and the head's
production version from the registry; the handler only parses, predicts and shapes. The per-invocation
ritual (warm-ups, correlation id, metrics) is :func:`topicserve.observability.invocation`'s.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from topicserve.bootstrap import build_runtime
from topicserve.frontdoor import FrontDoorResolver
from topicserve.observability import (
    install_error_handlers,
    invocation,
    make_logger,
    make_metrics,
    record_served,
    stats_log,
)
from topicserve.requests import event_body, parse_predict
from topicserve.responses import model_predictions
from topicserve.service import predict_isolating

logger = make_logger("predict")
metrics = make_metrics("predict")
runtime = build_runtime()
MODEL = runtime.settings.models[0]
app = FrontDoorResolver()  # the REST API's events and function URLs' (topicserve.frontdoor)
install_error_handlers(app, logger)
logger.append_keys(model=MODEL)


@app.post("/v1/predict/<model>")
def predict(model: str) -> dict[str, Any]:
    started = time.perf_counter()
    texts = parse_predict(event_body(app.current_event), runtime.settings)
    result = predict_isolating(runtime.service, texts, [model])  # the service refuses other models
    latency_ms = (time.perf_counter() - started) * 1000
    record_served(metrics, runtime, [result], latency_ms=latency_ms)
    logger.info(
        "predicted",
        extra={
            **stats_log(result.stats),
            "latency_ms": round(latency_ms, 2),
            "model_version": result.versions[MODEL],
            "rollout": [(o.stage, o.version, o.tally.compared) for o in result.rollout],
        },
    )
    return model_predictions(result, MODEL)


@invocation(logger=logger, metrics=metrics, runtime=runtime, http=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
