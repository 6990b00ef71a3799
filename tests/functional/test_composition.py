"""The composition root (topicserve.bootstrap) for the function kinds that load no model, in moto.

The gate's and the monitor's handler modules cold-start (their init is ``bootstrap.build_gate`` /
``build_monitor``) and the gate answers; the stores a kind shares between its parts are one object; a kind
started without a setting it cannot run without says which one at init, not at its first event. (The
predict function, the batcher and the API are composed the same way and exercised by test_handlers.py,
test_feedback.py and test_idempotency.py.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.conftest import MODELS, invoke, load_module, moto_stack
from tests.helpers import create_table
from topicserve import bootstrap
from topicserve.settings import Settings


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    with moto_stack() as stack:
        create_table(stack["ddb"], "monitor", [("pk", "S", "HASH"), ("sk", "S", "RANGE")])
        create_table(stack["ddb"], "rollout", [("model", "S", "HASH"), ("record", "S", "RANGE")])
        env = {
            "MODEL_NAMES": ",".join(MODELS),
            "MONITOR_TABLE": "monitor",
            "ROLLOUT_TABLE": "rollout",
            "GATE_ALPHA": "0.01",
            "DRIFT_AUC_THRESHOLD": "0.7",
        }
        os.environ.update(env)
        yield {**stack, "env": {**stack["env"], **env}}


def test_the_gate_cold_starts_from_its_settings_and_answers(stack: dict[str, Any]) -> None:
    gate = load_module("functions.gate.app")
    assert gate.thresholds.alpha == 0.01  # GATE_ALPHA
    assert gate.store.table == "rollout" and gate.registry.table == "registry"
    assert invoke(gate, {"apply": False}) == {"verdicts": []}  # nothing in rollout


def test_the_monitor_cold_starts_from_its_settings(stack: dict[str, Any]) -> None:
    monitor = load_module("functions.monitor.app")
    assert monitor.thresholds.auc == 0.7  # DRIFT_AUC_THRESHOLD
    assert monitor.store.table == "monitor" and monitor.feedback.table == "monitor"
    assert monitor.settings.models == tuple(MODELS)


def test_the_api_shares_one_rollout_store(stack: dict[str, Any]) -> None:
    """Label feedback adds to the same rollout records GET /v1/models reads."""
    api = bootstrap.build_api(Settings.from_env())
    assert api.feedback is not None and api.feedback.rollout is api.rollout is not None
    assert api.results.table == "results" and api.idempotency.table == "idempotency"
    assert api.thresholds.alpha == 0.01


@pytest.mark.parametrize(
    ("build", "variable"),
    [
        (bootstrap.build_gate, "ROLLOUT_TABLE"),
        (bootstrap.build_monitor, "MONITOR_TABLE"),
        (bootstrap.build_worker, "BULK_QUEUE_URL"),
    ],
)
def test_a_kind_without_a_setting_it_needs_fails_at_init_naming_it(
    stack: dict[str, Any], build: Any, variable: str
) -> None:
    settings = Settings.from_env({**stack["env"], "ROLLOUT_TABLE": "", "MONITOR_TABLE": ""})
    with pytest.raises(ValueError, match=f"setting {variable} is required by the"):
        build(settings)
