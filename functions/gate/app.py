"""The rollout gate, on a schedule (and invoked on demand): every shadow and canary against the
thresholds (GATE_* settings), decisions written into the registry history with their reasons.

It loads no model: the gate reads the registry's routing and the rollout records, and changes stages.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from topicserve.aws import aws_client
from topicserve.bootstrap import make_registry
from topicserve.observability import invocation, make_logger, make_metrics
from topicserve.rollout.gates import Thresholds
from topicserve.rollout.records import RolloutStore
from topicserve.rollout.runner import run_gates
from topicserve.settings import Settings

logger = make_logger("gate")
metrics = make_metrics("gate")
settings = Settings.from_env()
dynamodb = aws_client("dynamodb")
registry = make_registry(settings, dynamodb)
store = RolloutStore(settings.rollout_table, dynamodb)
thresholds = Thresholds.from_env()


@invocation(logger=logger, metrics=metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``{"apply": false}`` in the event previews the decisions without acting on them."""
    apply = not (isinstance(event, dict) and event.get("apply") is False)
    verdicts = run_gates(registry, store, thresholds, settings.models, apply=apply)
    for verdict in verdicts:
        logger.info("gate verdict", extra=verdict)
    return {"verdicts": verdicts}
