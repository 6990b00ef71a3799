"""Fixtures for end-to-end tests against the local cloud (LocalStack + local-process Lambda executor).

* ``localcloud`` (session): starts the local cloud once per test session through
  ``python3 -m infra.localstack.localcloud up``, or reuses one that is already healthy (and then leaves it
  running). What it started it always stops (fixture teardown, plus an ``atexit`` guard for
  KeyboardInterrupt and crashes), and it then checks that no LocalStack, Java or function process it saw
  is left behind. ``LOCALCLOUD_PORT`` picks the local cloud (one on another port has its own state).
* ``localcloud.client(service)``: boto3 clients bound to the local endpoint with dummy credentials.
* ``sam_stack`` (session): a factory that deploys a SAM template with the real SAM CLI
  (``sam build`` + ``sam deploy``, the same commands that deploy to AWS) and deletes the stack afterwards.

Every test here is marked ``e2e``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra.deploy import SAM_DEPLOY_FLAGS, stack_outputs
from infra.localstack.executor.localcloud_executor import proctree
from infra.localstack.localcloud import clients, interpreters, settings, supervisor

REPO = Path(__file__).resolve().parents[2]
REGION = clients.REGION


def _command_line(pid: int) -> str | None:
    args = proctree.argv(pid)
    return None if args is None else " ".join(args)


@dataclass
class ProcessRecord:
    """Every process seen below LocalStack during the session, to prove none outlives it."""

    seen: dict[tuple[int, str], str] = field(default_factory=dict)

    def snapshot(self, root: int) -> None:
        for pid in [root, *proctree.descendants(root)]:
            start = proctree.start_time(pid)
            cmd = _command_line(pid)
            if start is not None and cmd is not None:
                self.seen[(pid, start)] = cmd

    def alive(self) -> list[str]:
        return [
            f"{pid}: {cmd[:160]}"
            for (pid, start), cmd in self.seen.items()
            if proctree.start_time(pid) == start
        ]


def stray_processes() -> list[str]:
    """Processes of this local cloud anywhere on the machine: LocalStack, its Java, function environments."""
    return [f"{pid}: {(_command_line(pid) or '')[:160]}" for pid, _ in supervisor.processes()]


@dataclass
class LocalCloud:
    """Handle on the running local cloud."""

    endpoint: str
    region: str
    started_here: bool
    pid: int | None
    processes: ProcessRecord = field(default_factory=ProcessRecord)

    def client(self, service: str) -> Any:
        return clients.client(
            service, retries={"max_attempts": 2, "mode": "standard"}, read_timeout=90, connect_timeout=5
        )

    def resource(self, service: str) -> Any:
        """A boto3 resource (e.g. a DynamoDB Table) bound to the local endpoint with dummy credentials."""
        return clients.resource(service)

    def env(self) -> dict[str, str]:
        """Environment for CLIs (SAM, AWS CLI) talking to the local cloud."""
        return {**os.environ, **clients.aws_env()}

    def snapshot(self) -> None:
        if self.pid is not None:
            self.processes.snapshot(self.pid)


def _run_localcloud(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.localstack.localcloud", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def localcloud() -> Iterator[LocalCloud]:
    started_here = False
    if supervisor.health() is None:
        proc = _run_localcloud("up")
        if proc.returncode != 0:
            pytest.fail(f"localcloud up failed:\n{proc.stderr[-4000:]}", pytrace=False)
        started_here = True
    running = supervisor.read_pid()
    cloud = LocalCloud(clients.ENDPOINT, REGION, started_here, running[0] if running else None)
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if started_here and not stopped:
            stopped = True
            cloud.snapshot()
            _run_localcloud("down")

    atexit.register(stop)  # KeyboardInterrupt / crash: still stop what we started
    try:
        cloud.snapshot()
        yield cloud
    finally:
        stop()
    if started_here:
        deadline = time.monotonic() + 5
        while (cloud.processes.alive() or stray_processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = cloud.processes.alive() + stray_processes()
        assert not left, "processes left behind after localcloud down:\n" + "\n".join(left)
        assert not settings.PID_FILE.exists(), "PID file left behind"


@pytest.fixture(scope="session")
def lam(localcloud: LocalCloud) -> Any:
    """A Lambda client of the local cloud."""
    return localcloud.client("lambda")


@pytest.fixture(autouse=True)
def _record_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each e2e test, remember the process tree (to check at the end that all of it is gone)."""
    yield
    if "localcloud" in request.fixturenames:
        request.getfixturevalue("localcloud").snapshot()


def _sam_env(cloud: LocalCloud) -> dict[str, str]:
    """SAM needs real pythonX.Y executables (not pyenv shims) on PATH for the runtimes it builds."""
    env = cloud.env()
    bins = []
    for version in ("3.13", "3.12", "3.11"):
        py = interpreters.find_python(version)
        if py is not None:
            bins.append(str(py.parent))
    env["PATH"] = os.pathsep.join([*bins, env.get("PATH", "")])
    return env


@dataclass
class Stack:
    name: str
    outputs: dict[str, str]
    deployed_at: float


def deploy_sam_stack(cloud: LocalCloud, template: Path, stack_name: str, build_dir: Path) -> Stack:
    """`sam build` + `sam deploy` into the local cloud, exactly as one deploys to AWS (plus the endpoint)."""
    sam = settings.SAM_VENV / "bin" / "sam"
    if not sam.exists():
        pytest.fail(f"SAM CLI missing ({sam}): run `make localcloud`", pytrace=False)
    env = _sam_env(cloud)
    build = [str(sam), "build", "--template-file", str(template), "--build-dir", str(build_dir)]
    deploy = [
        str(sam), "deploy", "--template-file", str(build_dir / "template.yaml"), "--stack-name", stack_name,
        *SAM_DEPLOY_FLAGS, "--region", cloud.region,
    ]  # fmt: skip
    for cmd in (build, deploy):
        proc = subprocess.run(cmd, env=env, cwd=template.parent, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.fail(
                f"{' '.join(cmd[:2])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False
            )
    return Stack(stack_name, stack_outputs(cloud.client("cloudformation"), stack_name), time.time())


def delete_stack(cloud: LocalCloud, stack_name: str) -> None:
    cfn = cloud.client("cloudformation")
    with contextlib.suppress(Exception):
        cfn.delete_stack(StackName=stack_name)
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )


@pytest.fixture(scope="session")
def sam_stack(
    localcloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[Path, str], Stack]]:
    """Factory: ``sam_stack(template_path, name_prefix)`` deploys a stack; all are deleted at session end."""
    deployed: list[str] = []

    def deploy(template: Path, prefix: str) -> Stack:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        build_dir = tmp_path_factory.mktemp(f"sam-build-{prefix}")
        deployed.append(name)
        return deploy_sam_stack(localcloud, template, name, build_dir)

    try:
        yield deploy
    finally:
        for name in reversed(deployed):
            delete_stack(localcloud, name)
