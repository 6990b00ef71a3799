"""Shared plumbing of the benchmarks: statistics, results files, the local cloud, stacks, Lambda invokes.

Measurement rules (docs: /work/shared/DESIGN.md section 4): this machine's speed drifts up to 3x between
runs, so every comparison is made *inside one run* with the variants interleaved, and reported as medians
and ratios. Every results file keeps the raw samples, the machine and the command.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.lambda_report import Invocation
from infra.localstack.localcloud import clients, supervisor

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_lambda import LambdaClient

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "build" / "bench"


def say(message: str) -> None:
    """Progress on stderr, timestamped: long steps must show they are alive."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- statistics -------------------------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def summary(values: Sequence[float]) -> dict[str, Any]:
    """p50/p95/p99/mean/n of a sample (None when empty: an empty sample is reported, not hidden)."""
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "mean": float(np.mean(values)) if len(values) else None,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else a / b


# -- results ----------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if "model name" in ln), "")
    load = os.getloadavg()
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
    }


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def save_work(name: str, result: dict[str, Any]) -> None:
    """A tool's result, raw samples included, as ``build/bench/<name>.json``; its summary (without them)
    on stdout."""
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=1))


def save(name: str, data: dict[str, Any], command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"name": name, "command": command, "machine": machine_info(), **data}
    path.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    say(f"wrote {path}")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


# -- the local cloud --------------------------------------------------------------------------------------
# LocalStack's SQS event source poller waits LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC (default 1 s)
# after *every* poll and backs off up to 10 s on an empty queue; AWS's pollers long-poll continuously. A local
# cloud started by the benchmark uses AWS-like values; one that is reused keeps its own (recorded).
BENCH_CLOUD_ENV = {
    "LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC": "0.05",
    "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC": "1",
}


@contextlib.contextmanager
def local_cloud() -> Iterator[bool]:
    """Use the running local cloud, or start one and stop it at the end (the e2e fixture's rule).

    Yields whether this process started it. A cloud that was already healthy is left running: other
    sessions may be using it.
    """
    started = False
    if supervisor.health() is None:
        say(f"starting the local cloud (localcloud up) with {BENCH_CLOUD_ENV}")
        _localcloud("up", check=True, env={**os.environ, **BENCH_CLOUD_ENV})
        started = True
    else:
        say("reusing the running local cloud")
    try:
        yield started
    finally:
        if started:
            say("stopping the local cloud we started (localcloud down)")
            _localcloud("down", check=False)


def _localcloud(command: str, **kwargs: Any) -> None:
    subprocess.run([sys.executable, "-m", "infra.localstack.localcloud", command], cwd=REPO, **kwargs)


#: botocore ``Config`` options of the benchmarks' local-cloud clients, as in
#: ``clients.client(service, **BENCH_CLIENT)``: room for their concurrency, and patient reads
BENCH_CLIENT: dict[str, Any] = {
    "retries": {"max_attempts": 2, "mode": "standard"},
    "read_timeout": 120,
    "connect_timeout": 5,
    "max_pool_connections": 64,
}


def deploy_stack(name: str, params: dict[str, str]) -> dict[str, Any]:
    """infra/deploy.py (sam build + deploy + model registration) into the local cloud; returns stack.json."""
    output = WORK / f"stack-{name}.json"
    command = [sys.executable, "-m", "infra.deploy", "--stack-name", name, "--output", str(output)]
    for key, value in params.items():
        command += ["--param", f"{key}={value}"]
    say(f"deploying stack {name} ({' '.join(f'{k}={v}' for k, v in params.items())})")
    subprocess.run(command, cwd=REPO, env={**os.environ, **clients.aws_env()}, check=True, stdout=sys.stderr)
    stack: dict[str, Any] = json.loads(output.read_text())
    return stack


def delete_stack(name: str) -> None:
    cfn = clients.client("cloudformation", **BENCH_CLIENT)
    with contextlib.suppress(Exception):
        cfn.delete_stack(StackName=name)
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 90}
        )
        say(f"deleted stack {name}")


# -- Lambda invocations -----------------------------------------------------------------------------------
def invoke(lambda_client: LambdaClient, function_name: str, payload: Any) -> Invocation:
    started = time.perf_counter()
    response = lambda_client.invoke(
        FunctionName=function_name, Payload=json.dumps(payload).encode(), LogType="Tail"
    )
    wall = (time.perf_counter() - started) * 1000
    return Invocation(response, wall)


def apigw_event(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A REST API proxy event for POST /v1/predict/{model} (what API Gateway hands the function)."""
    return {
        "resource": "/v1/predict/{model}",
        "path": f"/v1/predict/{model}",
        "httpMethod": "POST",
        "headers": {"content-type": "application/json"},
        "pathParameters": {"model": model},
        "requestContext": {
            "requestId": "bench",
            "stage": "bench",
            "httpMethod": "POST",
            "resourcePath": f"/v1/predict/{model}",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def dir_size(path: Path) -> int:
    """Bytes under ``path``, following symbolic links (a package's installed size)."""
    total = 0
    for root, _, files in os.walk(path, followlinks=True):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_size
    return total
