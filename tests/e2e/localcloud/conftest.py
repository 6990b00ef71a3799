"""The probe stack of tests/e2e/localcloud, deployed once per session with the SAM CLI."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


class Invocation:
    """A synchronous invoke's outcome, with the REPORT line of its tail log parsed."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.status = response["StatusCode"]
        self.function_error = response.get("FunctionError")
        self.payload = json.loads(response["Payload"].read() or b"null")
        self.log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
        match = re.search(r"^REPORT RequestId: .*$", self.log, re.MULTILINE)
        self.report = match.group(0) if match else ""

    @property
    def init_duration_ms(self) -> float | None:
        match = re.search(r"Init Duration: ([\d.]+) ms", self.report)
        return float(match.group(1)) if match else None

    @property
    def duration_ms(self) -> float:
        match = re.search(r"\tDuration: ([\d.]+) ms", self.report)
        assert match, self.log
        return float(match.group(1))


@pytest.fixture(scope="session")
def invoke(lambda_client: Any) -> Callable[..., Invocation]:
    def _invoke(function_name: str, payload: dict[str, Any] | None = None) -> Invocation:
        response = lambda_client.invoke(
            FunctionName=function_name, Payload=json.dumps(payload or {}).encode(), LogType="Tail"
        )
        return Invocation(response)

    return _invoke
