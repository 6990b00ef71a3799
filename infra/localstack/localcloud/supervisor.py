"""`up` / `down` / `status`: the LocalStack process of this local cloud and everything below it.

LocalStack runs in a session of its own; its PID file holds ``pid starttime`` (a recycled PID is never
mistaken for ours). Function environments run in sessions of their own too, so stopping means collecting
the whole tree from /proc first (``localcloud_executor.proctree``), not signalling a process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable

from infra.localstack.executor.localcloud_executor import proctree
from infra.localstack.executor.localcloud_executor.layout import BOOTSTRAP_SCRIPT, INIT_PROGRAM
from infra.localstack.localcloud.console import log, tail
from infra.localstack.localcloud.installers import install
from infra.localstack.localcloud.settings import (
    EXECUTOR_NAME,
    FS_ROOT,
    HOME,
    HOST,
    LOG_FILE,
    PID_FILE,
    PORT,
    REPO,
    RUNTIMES_FILE,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    TMP_DIR,
    VENV,
)

Process = tuple[int, str | None]  # (pid, start time): a process, even after its PID is recycled


def read_pid() -> tuple[int, str] | None:
    """The PID file holds `pid starttime`; a stale file (process gone or PID reused) counts as none."""
    try:
        pid_s, start = PID_FILE.read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    if proctree.start_time(pid) != start:
        return None
    return pid, start


def health(port: int = PORT, timeout: float = 1.0) -> dict[str, object] | None:
    """LocalStack's /_localstack/health, or None when nothing healthy answers."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/_localstack/health", timeout=timeout) as resp:
            if resp.status == 200:
                answer: dict[str, object] = json.loads(resp.read())
                return answer
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return None


def _in_tmp_dir(path: str | None) -> bool:
    return path is not None and (path == str(TMP_DIR) or path.startswith(f"{TMP_DIR}{os.sep}"))


def belongs_here(pid: int) -> bool:
    """Whether a process is of this local cloud, not of one on another port or of another checkout:
    LocalStack and its Java have TMPDIR = TMP_DIR, a function's runtime a TMPDIR below it, and an
    environment's init (started with no environment of its own) its working directory there."""
    return _in_tmp_dir(proctree.environ(pid).get("TMPDIR")) or _in_tmp_dir(proctree.cwd(pid))


def processes() -> list[Process]:
    """Every process of this local cloud, found through /proc whoever its parent is: LocalStack, its Java
    (DynamoDB Local, recognised by our FILESYSTEM_ROOT in its arguments) and function environments (our
    executor's programs). After a LocalStack died without cleaning up (SIGKILL), its leftovers."""
    found: list[Process] = []
    executor_programs = (str(INIT_PROGRAM), str(BOOTSTRAP_SCRIPT))
    for pid, argv in proctree.command_lines():
        is_localstack = argv[:1] == [str(VENV / "bin" / "python")] and "localstack.runtime.main" in argv
        is_java = bool(argv) and argv[0].endswith("java") and any(str(FS_ROOT) in a for a in argv)
        is_env = any(a in executor_programs for a in argv)
        if (is_localstack or is_java or is_env) and belongs_here(pid):
            start = proctree.start_time(pid)
            if start is not None:
                found.append((pid, start))
    return found


def _alive(procs: Iterable[Process]) -> list[Process]:
    return [(p, s) for p, s in procs if s is not None and proctree.start_time(p) == s]


def _signal_all(procs: Iterable[Process], sig: signal.Signals) -> None:
    for pid, _ in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(procs: list[Process], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _alive(procs):
        time.sleep(0.1)


def _kill_leftovers() -> int:
    left = processes()
    if not left:
        return 0
    log(f"stopping {len(left)} leftover process(es) of an earlier local cloud: {[p for p, _ in left]}")
    _signal_all(left, signal.SIGTERM)
    _wait_gone(left, 3)
    _signal_all(_alive(left), signal.SIGKILL)
    return len(left)


def localstack_env() -> dict[str, str]:
    """The settings that make LocalStack run on the host, loopback-only, offline, with our executor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        {
            "GATEWAY_LISTEN": f"{HOST}:{PORT}",
            "GATEWAY_SERVER": "hypercorn",  # the default server binds 0.0.0.0
            "LOCALSTACK_HOST": f"{HOST}:{PORT}",
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(FS_ROOT),
            "DNS_ADDRESS": "0",  # no DNS server (it would bind port 53 on all interfaces)
            "SQS_ENDPOINT_STRATEGY": "path",
            "SQS_DISABLE_CLOUDWATCH_METRICS": "1",  # else each SendMessage costs ~18 ms
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",  # no analytics calls home
            "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR_NAME,
            "LOCALCLOUD_RUNTIMES_FILE": str(RUNTIMES_FILE),
            # container-image functions: OCI archives from `make images`, unpacked once per digest
            "LOCALCLOUD_IMAGES_DIR": os.environ.get("LOCALCLOUD_IMAGES_DIR", str(REPO / "build" / "images")),
            "LOCALCLOUD_IMAGE_CACHE": str(HOME / "images"),
            "LOCALCLOUD_DDB_HOST": HOST,
            "TMPDIR": str(TMP_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # user overrides (e.g. LS_LOG=debug, LAMBDA_KEEPALIVE_MS) still win; so do the event-source-mapping poll
    # interval / empty-poll backoff (LocalStack waits 1 s after *every* SQS poll and backs off up to 10 s on
    # an empty queue; bench/common.py sets AWS-like values when it starts the cloud) and the code-size limits
    for key in (
        "LS_LOG",
        "DEBUG",
        "LAMBDA_KEEPALIVE_MS",
        "LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT",
        "LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC",
        "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC",
        "LAMBDA_LIMITS_CODE_SIZE_ZIPPED",
        "LAMBDA_LIMITS_CODE_SIZE_UNZIPPED",
    ):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def up() -> int:
    """Start LocalStack in its own session (so `down` can signal the whole group) and wait for health."""
    if health():
        running = read_pid()
        who = f"PID {running[0]}" if running else "not started by localcloud"
        log(f"already healthy on {HOST}:{PORT} ({who})")
        return 0
    running = read_pid()
    if running:
        log("a LocalStack started by localcloud is running but not healthy: waiting for it")
        return _wait_healthy(running[0], time.monotonic())
    if install() != 0:  # instant when the stamp matches
        return 1
    _kill_leftovers()  # e.g. a DynamoDB Local left running by a LocalStack that was SIGKILLed
    if TMP_DIR.exists():
        shutil.rmtree(TMP_DIR, ignore_errors=True)  # unzipped code of the last run
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    FS_ROOT.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(LOG_FILE, "ab") as logf:
        logf.write(f"\n===== localcloud up {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        logf.flush()
        proc = subprocess.Popen(
            [str(VENV / "bin/python"), "-m", "localstack.runtime.main"],
            cwd=str(HOME),
            env=localstack_env(),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    start = proctree.start_time(proc.pid)
    PID_FILE.write_text(f"{proc.pid} {start}\n")
    return _wait_healthy(proc.pid, t0, proc)


def _wait_healthy(pid: int, t0: float, proc: subprocess.Popen[bytes] | None = None) -> int:
    deadline = t0 + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log(f"LocalStack exited with code {proc.returncode}; last log lines:")
            print(tail(LOG_FILE, 40), file=sys.stderr)
            PID_FILE.unlink(missing_ok=True)
            return 1
        if health(timeout=0.5):
            log(f"healthy on http://{HOST}:{PORT} (PID {pid}) after {time.monotonic() - t0:.1f} s")
            return 0
        time.sleep(0.2)
    log(f"LocalStack not healthy after {START_TIMEOUT_S:.0f} s; see {LOG_FILE}")
    print(tail(LOG_FILE, 40), file=sys.stderr)
    return 1


def down() -> int:
    """Stop LocalStack and everything below it; never leaves a process behind.

    1. SIGTERM to LocalStack alone: it shuts its services down, stops DynamoDB Local and every Lambda
       environment itself, and reaps them (signalling the whole group at once would orphan them).
    2. After a grace period (LOCALCLOUD_STOP_TIMEOUT), SIGTERM then SIGKILL to whatever is left: LocalStack
       (it sometimes hangs on shutdown) and every descendant collected through /proc, whatever its group
       (function environments run in sessions of their own).
    """
    running = read_pid()
    if running is None:
        PID_FILE.unlink(missing_ok=True)
        if health():
            log(f"something healthy answers on port {PORT} but was not started by localcloud: left alone")
        elif not _kill_leftovers():
            log("not running")
        return 0
    pid, start = running
    t0 = time.monotonic()
    procs: dict[int, str | None] = {pid: start}

    def collect() -> None:
        for p in proctree.descendants(pid):
            procs.setdefault(p, proctree.start_time(p))

    collect()
    for leftover, leftover_start in processes():
        procs.setdefault(leftover, leftover_start)
    _signal_all([(pid, start)], signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and proctree.start_time(pid) == start:
        collect()  # environments started during shutdown, too
        time.sleep(0.1)
    left = _alive(procs.items())
    if left:
        _signal_all(left, signal.SIGTERM)
        _wait_gone(left, 2)
        left = _alive(procs.items())
    if left:
        log(f"SIGKILL to {len(left)} process(es) still alive: {[p for p, _ in left]}")
        _signal_all(left, signal.SIGKILL)
        _wait_gone(left, 5)
    PID_FILE.unlink(missing_ok=True)
    remaining = _alive(procs.items())
    if remaining:
        log(f"could not stop: {[p for p, _ in remaining]}")
        return 1
    log(f"stopped (PID {pid}, {len(procs)} process(es)) in {time.monotonic() - t0:.1f} s")
    return 0


def status() -> dict[str, object]:
    """Running / healthy / PID / port of this local cloud."""
    running = read_pid()
    return {
        "running": running is not None,
        "healthy": health() is not None,
        "pid": running[0] if running else None,
        "port": PORT,
        "endpoint": f"http://{HOST}:{PORT}",
        "processes": (1 + len(proctree.descendants(running[0]))) if running else 0,
        "started_by_localcloud": running is not None,
        "home": str(HOME),
    }
