"""The gate run: every shadow and canary of every model through the sequential tests, decisions applied
through the registry with their reasons and the deciding test's record (estimate, bounds, sample size).
The scheduled gate function and ``topicserve-registry gate`` both call :func:`run_gates`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from topicserve.errors import RegistryError
from topicserve.registry.model import Stage
from topicserve.registry.store import Registry
from topicserve.rollout.gates import PROMOTE, WAIT, Decision, Thresholds, evaluate
from topicserve.rollout.records import RolloutStore

logger = logging.getLogger(__name__)


def run_gates(
    registry: Registry,
    store: RolloutStore,
    thresholds: Thresholds,
    models: Sequence[str],
    *,
    apply: bool = True,
    actor: str = "gate",
) -> list[dict[str, Any]]:
    """One verdict per candidate. At most one step per model per run: the canary is judged first, and a
    shadow that passes while a canary is in flight waits for it (it would otherwise replace it)."""
    verdicts: list[dict[str, Any]] = []
    for model, routing in sorted(registry.routings(models).items()):
        acted = False
        for stage, version, epoch in routing.candidates():
            tally = store.get(model, stage.value, version, epoch)
            decision = evaluate(stage.value, tally, thresholds)
            if decision.action == PROMOTE and stage is Stage.SHADOW and routing.canary is not None:
                decision = Decision(
                    WAIT,
                    None,
                    f"passes ({decision.reason}), but canary v{routing.canary} is in flight",
                    decision.record,
                )
            verdict: dict[str, Any] = {
                "model": model,
                "stage": stage.value,
                "version": version,
                "action": decision.action,
                "to": decision.to_stage,
                "reason": decision.reason,
                "tally": tally.summary(),
                "test": decision.record,
                "applied": False,
            }
            if apply and not acted and decision.action != WAIT and decision.to_stage:
                reason = decision.history_reason()
                try:
                    registry.promote(
                        model,
                        version,
                        decision.to_stage,
                        weight=thresholds.canary_weight if decision.to_stage == Stage.CANARY else None,
                        reason=reason,
                        actor=actor,
                        expect_rev=routing.rev,
                    )
                except RegistryError as exc:  # someone changed the model meanwhile: decide next run
                    verdict["error"] = str(exc)
                else:
                    verdict["applied"] = acted = True
                    logger.info(
                        "gate decision applied",
                        extra={k: verdict[k] for k in ("model", "version", "action", "to", "reason")},
                    )
            verdicts.append(verdict)
    return verdicts


def rollout_status(
    registry: Registry,
    store: RolloutStore | None,
    thresholds: Thresholds,
    models: Sequence[str],
    *,
    history: int = 10,
) -> dict[str, Any]:
    """What ``GET /v1/models`` and ``topicserve-registry rollout-status`` show: per model its routing,
    the records of its current candidates, what the gate would decide now, and the last transitions."""
    routings = registry.routings(models)
    view: dict[str, Any] = {}
    for model in models:
        routing = routings.get(model)
        if routing is None:
            continue
        verdicts = []
        for stage, version, epoch in routing.candidates():
            tally = store.get(model, stage.value, version, epoch) if store else None
            decision = evaluate(stage.value, tally, thresholds) if tally is not None else None
            verdicts.append(
                {
                    "stage": stage.value,
                    "version": version,
                    "epoch": epoch,
                    "tally": tally.summary() if tally is not None else None,
                    "action": decision.action if decision else None,
                    "reason": decision.reason if decision else "no rollout table configured",
                    "test": decision.record if decision else None,
                }
            )
        view[model] = {
            "routing": routing.to_dict(),
            "gate": verdicts,
            "history": [
                {k: v for k, v in t.__dict__.items() if v is not None}
                for t in registry.transitions(model, history)
            ],
        }
    return view
