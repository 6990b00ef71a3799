"""EventBridge rule rate(1 minute) (SAM `Schedule` event) invokes the function for real."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import LocalCloud, Stack

pytestmark = pytest.mark.e2e


def test_rate_rule_invokes_function(localcloud: LocalCloud, probe_stack: Stack) -> None:
    table = localcloud.resource("dynamodb").Table(probe_stack.outputs["ProbeTableName"])
    # the first tick comes within a minute of the rule's creation; slack for a loaded 2-core machine
    deadline = probe_stack.deployed_at + 180
    found: list[dict] = []
    while time.time() < deadline and not found:
        found = [i for i in table.scan()["Items"] if i["pk"].startswith("schedule#")]
        if not found:
            time.sleep(2)
    assert found, "no scheduled invocation within 180 s of deployment"
    assert found[0]["source"] == "aws.events"
    assert found[0]["detail_type"] == "Scheduled Event"
