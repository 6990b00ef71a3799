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
    """The schedule test waits for EventBridge's first rate(1 minute) tick: run it last, so that it overlaps
    with the time the other tests take instead of adding to it."""
    items.sort(key=lambda item: "schedule" in item.nodeid)


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
