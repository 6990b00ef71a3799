"""The warmer: on a schedule, keep WARM_CONCURRENCY environments of each predict function alive.

It invokes every target WARM_CONCURRENCY times at once with a warm event (see topicserve.warming); the
targets return right after init, so a warm-up costs one short invocation per environment and touches no
cache, result or traffic metric.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from topicserve.aws import aws_client
from topicserve.observability import make_logger
from topicserve.settings import Settings
from topicserve.warming import warm_event

logger = make_logger("warmer")
settings = Settings.from_env()  # WARM_TARGETS, WARM_CONCURRENCY
lambda_client = aws_client("lambda")


def _invoke(target: str, concurrency: int) -> dict[str, Any]:
    response = lambda_client.invoke(FunctionName=target, Payload=json.dumps(warm_event(concurrency)).encode())
    payload = json.loads(response["Payload"].read() or b"{}")
    return {"error": response.get("FunctionError"), **(payload if isinstance(payload, dict) else {})}


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    targets, concurrency = settings.warm_targets, max(1, settings.warm_concurrency)
    summary: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(32, concurrency * len(targets)))) as pool:
        futures = {(t, i): pool.submit(_invoke, t, concurrency) for t in targets for i in range(concurrency)}
        for (target, _), future in futures.items():
            entry = summary.setdefault(target, {"warmed": 0, "cold_starts": 0, "errors": 0})
            try:
                answer = future.result()
            except Exception as exc:  # one unreachable target must not stop the others being warmed
                entry["errors"] += 1
                logger.warning("warm-up failed", extra={"target": target, "error": repr(exc)})
                continue
            if answer.get("error"):
                entry["errors"] += 1
            else:
                entry["warmed"] += 1
                entry["cold_starts"] += bool(answer.get("cold_start"))
    logger.info("warm-up done", extra={"targets": summary, "concurrency": concurrency})
    return summary
