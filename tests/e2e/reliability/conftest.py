"""The reliability stack: template.yaml deployed as its own stack with a short redelivery cycle.

Its own stack, not the app tests' one, because these tests break things on purpose (cache tables deleted,
S3 cut off, the chaos switch on) and need SQS to redeliver within seconds, not the production 12 minutes:
QueueVisibilityTimeout = BatcherTimeout = 30 s and MaxReceiveCount = 3, so a poison message reaches the
DLQ ~1-2 minutes after it is sent.

``RELIABILITY_STACK_JSON=build/stack-rel.json`` reuses a stack deployed by hand (infra/deploy.py
--stack-name topicserve-rel --output build/stack-rel.json with RELIABILITY_PARAMS) and leaves it in place:
that is how to iterate on one test without paying a deploy each time.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.localstack.executor.localcloud_executor.layout import BOOTSTRAP_SCRIPT, INIT_PROGRAM
from infra.localstack.executor.localcloud_executor.proctree import argv, descendants
from tests.e2e.app.conftest import deploy_app
from tests.e2e.conftest import LocalCloud
from topicserve_ops.client import Client
from topicserve_ops.lambda_config import GENERATION, environment, update_environment

STACK_NAME = "topicserve-rel"
RELIABILITY_PARAMS = {
    "WarmerEnabled": "false",
    "BatchSize": "50",
    "BatchingWindowSeconds": "1",
    "BatcherTimeout": "30",
    "QueueVisibilityTimeout": "30",
    "MaxReceiveCount": "3",
    "TestSwitches": "true",  # the chaos variables (FAULT_*) take effect on this stack only
}


@pytest.fixture(scope="session")
def rel_stack(localcloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reuse = os.environ.get("RELIABILITY_STACK_JSON")
    if reuse:
        yield json.loads(Path(reuse).read_text())
        return
    output = tmp_path_factory.mktemp("rel-stack") / "stack.json"
    yield from deploy_app(localcloud, STACK_NAME, RELIABILITY_PARAMS, output)


@pytest.fixture(scope="session")
def rel_client(rel_stack: dict[str, Any]) -> Client:
    return Client(rel_stack, timeout=120)


def set_variables(lam: Any, name: str, changes: dict[str, str | None]) -> None:
    """Set (or with None remove) environment variables of a function and wait for the update.

    The generation variable makes it a change even when the values are the same: any configuration change
    retires the function's execution environments, so the next invocation is a cold start under the new
    settings, which is what every fault scenario here wants.
    """
    update_environment(lam, name, {**changes, GENERATION: str(time.time_ns())})


@pytest.fixture
def function_env(lam: Any) -> Iterator[Callable[[str, dict[str, str | None]], None]]:
    """``function_env(name, {VAR: value})``: change a function's variables for one test, restored after it
    (even when the test fails), so a fault switch can never leak into the next test."""
    saved: dict[str, dict[str, str]] = {}

    def change(name: str, changes: dict[str, str | None]) -> None:
        saved.setdefault(name, environment(lam, name))
        set_variables(lam, name, changes)

    try:
        yield change
    finally:
        for name, variables in saved.items():
            current = environment(lam, name)
            set_variables(lam, name, {k: variables.get(k) for k in set(current) | set(variables)})


def log_events(localcloud: LocalCloud, function: str, since_ms: int) -> list[str]:
    """Every CloudWatch Logs line of a function since a time (LocalStack has no filter patterns)."""
    logs = localcloud.client("logs")
    lines: list[str] = []
    try:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=f"/aws/lambda/{function}", startTime=since_ms
        )
        for page in pages:
            lines.extend(event["message"] for event in page["events"])
    except logs.exceptions.ResourceNotFoundException:
        pass
    return lines


#: what a crashed or killed execution environment leaves in its function's log
CRASH = re.compile(r"Runtime\.ExitError|Sandbox\.Timedout|Task timed out|Status: (error|timeout)|^\[ERROR\]")


def crashes(localcloud: LocalCloud, functions: list[str], since_ms: int) -> list[str]:
    """Log lines of crashed environments (exit, timeout, unhandled exception) of these functions.

    Fails when a function's log holds no REPORT line since ``since_ms`` (its log group missing, or nothing
    ran): a scan that read nothing is no evidence that nothing crashed. Callers scan functions they made
    run in that window."""
    found: list[str] = []
    unread: list[str] = []
    for name in functions:
        lines = log_events(localcloud, name, since_ms)
        if not any("REPORT RequestId:" in line for line in lines):
            unread.append(name)
        found += [f"{name}: {line.strip()[:200]}" for line in lines if CRASH.search(line)]
    assert not unread, f"the crash scan found no REPORT line since {since_ms} (no log group?) of {unread}"
    return found


def json_logs(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


@dataclass(frozen=True)
class Environment:
    """One local execution environment of a function: its init process and the runtime below it."""

    init_pid: int
    runtime_pid: int | None

    def rss_mb(self) -> float | None:
        """Resident memory of the runtime (the function's own process), from /proc."""
        if self.runtime_pid is None:
            return None
        try:
            status = Path(f"/proc/{self.runtime_pid}/status").read_text()
        except OSError:
            return None
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kb / 1024


def environments(localcloud: LocalCloud, function_name: str) -> list[Environment]:
    """The live execution environments of a function, found below LocalStack through /proc.

    Each environment's init (the executor's init program) reads an ``init.json`` (its argument) whose
    variables name the function; the runtime is init's child running the executor's bootstrap.py.
    """
    if localcloud.pid is None:
        return []
    found = []
    for pid in descendants(localcloud.pid):
        args = argv(pid) or []
        if str(INIT_PROGRAM) not in args or not args[-1].endswith("init.json"):
            continue
        try:
            config = json.loads(Path(args[-1]).read_text())
        except (OSError, ValueError):
            continue
        if config.get("env", {}).get("AWS_LAMBDA_FUNCTION_NAME") != function_name:
            continue
        runtime = next((c for c in descendants(pid) if str(BOOTSTRAP_SCRIPT) in (argv(c) or [])), None)
        found.append(Environment(pid, runtime))
    return found
