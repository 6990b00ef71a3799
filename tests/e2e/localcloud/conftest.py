"""The probe stack of tests/e2e/localcloud, deployed once per session with the SAM CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.lambda_report import Invocation  # the REPORT-line parser, shared with the benchmarks
from tests.e2e.conftest import LocalCloud, Stack

TEMPLATE = Path(__file__).parent / "template.yaml"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the schedule test first, right after the probe stack is deployed.

    It waits for EventBridge's first rate(1 minute) tick. Run last (to overlap that wait with other tests),
    it failed whenever the reliability suite ran before it: no rule fired at all in the 8 minutes after
    those tests had deployed, faulted and deleted their stacks (a LocalStack scheduler issue, not
    investigated yet: see the closing note). Waiting a minute up front keeps the check independent.
    """
    items.sort(key=lambda item: "test_schedule" not in item.nodeid)


@pytest.fixture(scope="session")
def probe_stack(sam_stack: Callable[[Path, str], Stack]) -> Stack:
    return sam_stack(TEMPLATE, "localcloud-e2e")


@pytest.fixture(scope="session")
def lambda_client(localcloud: LocalCloud) -> Any:
    return localcloud.client("lambda")


@pytest.fixture(scope="session")
def invoke(lambda_client: Any) -> Callable[..., Invocation]:
    def _invoke(function_name: str, payload: dict[str, Any] | None = None) -> Invocation:
        response = lambda_client.invoke(
            FunctionName=function_name, Payload=json.dumps(payload or {}).encode(), LogType="Tail"
        )
        return Invocation(response)

    return _invoke
