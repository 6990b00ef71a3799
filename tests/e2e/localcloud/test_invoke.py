"""Synchronous invocations through the local-process executor: results, errors, layers, isolation,
runtimes, warm reuse, concurrency, timeouts and logs."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import LocalCloud, Stack

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sync_invoke_returns_result(probe_stack: Stack, invoke: Any) -> None:
    name = probe_stack.outputs["EchoFunctionName"]
    result = invoke(name, {"action": "env"})
    assert result.status == 200 and result.function_error is None, result.log
    assert result.payload["function_name"] == name
    assert 0 < result.payload["remaining_ms"] <= 10_000
    env = result.payload["env"]
    assert env["PROBE_GREETING"] == "hello-from-template"  # the function's own variables
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
    assert env["_HANDLER"] == "app.handler"
    assert result.payload["cwd"] == env["LAMBDA_TASK_ROOT"] == result.payload["sys_path"][0]
    assert result.payload["python"] == "3.13"


def test_exception_comes_back_as_function_error(probe_stack: Stack, invoke: Any) -> None:
    result = invoke(probe_stack.outputs["EchoFunctionName"], {"action": "raise", "message": "kaputt"})
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "ProbeError"
    assert result.payload["errorMessage"] == "kaputt"
    assert any("app.py" in frame for frame in result.payload["stackTrace"])
    assert "[ERROR] ProbeError: kaputt" in result.log


def test_layer_module_is_importable_and_localstack_is_not(probe_stack: Stack, invoke: Any) -> None:
    result = invoke(probe_stack.outputs["EchoFunctionName"], {"action": "layer"})
    assert result.function_error is None, result.payload
    assert result.payload["value"] == "from-the-probe-layer"
    layer_python_dir = os.path.dirname(result.payload["file"])
    assert layer_python_dir.endswith("/python")
    sys_path = result.payload["sys_path"]
    assert sys_path.index(layer_python_dir) == 1  # right after the task root, where /opt/python is on AWS
    imports = result.payload["imports"]
    assert imports["localstack"] is None and imports["yaml"] is None and imports["plux"] is None
    assert imports["boto3"] and "/runtimes/python3.13/" in imports["boto3"]  # Lambda's runtime boto3
    assert not [p for p in sys_path if "site-packages" in p and "/runtimes/" not in p and "/lambda/" not in p]


def test_python311_runtime_runs_under_python311(probe_stack: Stack, invoke: Any) -> None:
    result = invoke(probe_stack.outputs["Py311FunctionName"], {"action": "env"})
    assert result.function_error is None, result.payload
    assert result.payload["python"] == "3.11"
    assert result.payload["env"]["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"


def test_second_invocation_reuses_the_warm_environment(probe_stack: Stack, invoke: Any) -> None:
    name = probe_stack.outputs["WarmFunctionName"]
    cold = invoke(name, {"action": "env"})
    warm = invoke(name, {"action": "env"})
    assert cold.init_duration_ms is not None and cold.init_duration_ms > 0, cold.log
    assert "INIT_START" in cold.log and "probe init in pid" in cold.log  # init-phase output is kept
    assert warm.init_duration_ms is None, warm.log
    assert "Init Duration" not in warm.report
    assert warm.payload["pid"] == cold.payload["pid"]
    assert "Max Memory Used: " in warm.report and "Memory Size: 128 MB" in warm.report


def test_concurrent_invocations_run_in_separate_environments(probe_stack: Stack, invoke: Any) -> None:
    name = probe_stack.outputs["EchoFunctionName"]
    n, seconds = 3, 1.5
    started = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: invoke(name, {"action": "sleep", "seconds": seconds}), range(n)))
    elapsed = time.monotonic() - started
    assert all(r.function_error is None for r in results), [r.payload for r in results]
    assert len({r.payload["pid"] for r in results}) == n
    assert elapsed < n * seconds, f"{n} invocations of {seconds}s took {elapsed:.1f}s: not concurrent"


def test_timeout_kills_the_environment_and_next_call_is_cold(probe_stack: Stack, invoke: Any) -> None:
    name = probe_stack.outputs["TimeoutFunctionName"]
    first = invoke(name, {"action": "env"})
    assert first.function_error is None, first.payload
    started = time.monotonic()
    timed_out = invoke(name, {"action": "sleep", "seconds": 5})
    assert time.monotonic() - started < 4.5
    assert timed_out.function_error == "Unhandled"
    assert timed_out.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in timed_out.payload["errorMessage"]
    assert "Task timed out after 1.00 seconds" in timed_out.log and "Status: timeout" in timed_out.report
    assert not _alive(first.payload["pid"]), "the timed-out environment's process is still running"
    after = invoke(name, {"action": "env"})
    assert after.function_error is None, after.payload
    assert after.payload["pid"] != first.payload["pid"]
    assert after.init_duration_ms is not None, after.log


def test_logs_reach_cloudwatch(localcloud: LocalCloud, probe_stack: Stack, invoke: Any) -> None:
    name = probe_stack.outputs["EchoFunctionName"]
    marker = f"marker-{uuid.uuid4()}"
    result = invoke(name, {"action": "log", "marker": marker})
    request_id = result.payload["request_id"]
    logs = localcloud.client("logs")
    deadline = time.monotonic() + 15
    messages: list[str] = []
    while time.monotonic() < deadline:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        messages = [e["message"] for e in events]
        if any(f"REPORT RequestId: {request_id}" in m for m in messages):
            break
        time.sleep(0.3)
    text = "".join(messages)
    assert marker in text
    for line in (
        f"START RequestId: {request_id}",
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}",
    ):
        assert line in text
