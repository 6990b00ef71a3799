"""Where a predict function's cold start goes: imports by package and the runtime's own steps.

    python -m bench.init_breakdown [--stack build/stack.json] [--model logreg] [--rounds 5]

Each round is one process started as the local executor starts a function: the function's interpreter
(python3.13) with ``-I -S -B`` (nothing from site-packages, no bytecode written: Lambda's /opt and
/var/task are read-only, so a cold start there never finds .pyc files it did not ship), its import path built
as Lambda builds it (task root, layers, runtime dir), and the deployed function's environment pointed at the
stack. It imports ``awslambdaric`` (the runtime client; its import is init on AWS too) and then the handler
module under ``-X importtime``: the handler's import runs ``build_runtime()``, whose step timers
(:mod:`topicserve.initsteps`) come back on stdout. Imports are summed by top-level package (self time: a
package's own modules, not what they import), steps by name; the result is the median of the rounds, with
the raw rounds beside it. What neither half explains (interpreter start, the executor's own work) is what a
real cold start's ``Init Duration`` adds: ``bench.cloud.coldstarts`` measures that one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, save_work, say

#: ``import time: self [us] | cumulative | imported package`` (the indentation of the name is its depth)
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")

HANDLER_MODULE = "app"  # every function's handler module (template.yaml: Handler: app.handler)

PROBE = """
import json, sys, time
t0 = time.perf_counter()
import awslambdaric.bootstrap  # what the runtime imports before the handler
t1 = time.perf_counter()
import app
t2 = time.perf_counter()
print("BREAKDOWN " + json.dumps({
    "runtime_client_ms": (t1 - t0) * 1000,
    "handler_import_ms": (t2 - t1) * 1000,
    "build_runtime_ms": app.runtime.init_seconds * 1000,
    "steps": app.runtime.init_steps.to_dict(),
}))
"""


def layout(function: str) -> dict[str, Any]:
    """Task root, layer paths and runtime dir of a deployed function, as ``sam build`` left them here."""
    from infra.localstack.localcloud.interpreters import python313
    from infra.localstack.localcloud.settings import RUNTIMES_DIR

    build = REPO / ".aws-sam" / "build"
    task_root = build / f"Predict{function.capitalize()}Function"  # the logical id in template.yaml
    return {
        "python": str(python313()),
        "task_root": str(task_root),
        "layers": [str(build / "ServingLayer" / "python"), str(REPO / "build/layers/encoder-int8/python")],
        "runtime_dir": str(RUNTIMES_DIR / "python3.13"),
    }


def sample(where: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    path = [where["task_root"], *where["layers"]]
    code = f"import sys; sys.path[:0] = {path!r}; sys.path.append({where['runtime_dir']!r})\n" + PROBE
    with tempfile.TemporaryDirectory(prefix="init-breakdown-") as tmp:
        run_env = {**env, "TMPDIR": tmp, "MODEL_CACHE_DIR": str(Path(tmp) / "models")}
        started = time.perf_counter()
        proc = subprocess.run(
            [where["python"], "-I", "-S", "-B", "-X", "importtime", "-c", code],
            cwd=where["task_root"],
            env=run_env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall_ms = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BREAKDOWN "))
    result: dict[str, Any] = json.loads(line.removeprefix("BREAKDOWN "))
    result["process_wall_ms"] = wall_ms
    result["imports_ms"] = imports_by_package(proc.stderr)
    return result


def imports_by_package(importtime: str) -> dict[str, float]:
    """Self time per top-level package (stdlib modules summed as ``stdlib``), in ms, of the imports init
    makes: those that finish before the handler module does. The handler module itself (``app``) is left
    out: its self time is its body, ``build_runtime()`` included, and its waits for the loader threads,
    which the steps explain; imports after it are the routing read's, after init."""
    stdlib = set(sys.stdlib_module_names)
    totals: dict[str, float] = defaultdict(float)
    for raw in importtime.splitlines():
        match = IMPORT_LINE.match(raw)
        if match and match.group(4) == HANDLER_MODULE:
            break  # init ends with the handler module: later imports are the background registry read's
        if not match:
            continue
        top = match.group(4).split(".")[0]
        totals["stdlib" if top in stdlib or top.startswith("_") else top] += int(match.group(1)) / 1000
    return dict(totals)


def function_env(stack: dict[str, Any], model: str) -> dict[str, str]:
    """The deployed function's own variables, reaching the stack from this machine."""
    import boto3

    lam = boto3.client("lambda")
    config = lam.get_function_configuration(FunctionName=stack["functions"]["predict"][model])
    env = dict(config.get("Environment", {}).get("Variables", {}))
    env |= {"POWERTOOLS_LOG_LEVEL": "WARNING", "AWS_DEFAULT_REGION": stack.get("region") or "us-east-1"}
    if stack.get("endpoint_url"):
        env |= {
            "AWS_ENDPOINT_URL": stack["endpoint_url"],
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
    return env


def breakdown(stack: dict[str, Any], model: str, rounds: int) -> dict[str, Any]:
    where = layout(model)
    env = function_env(stack, model)
    raw = []
    for r in range(rounds):
        raw.append(sample(where, env))
        say(f"  init breakdown {r + 1}/{rounds}: handler import {raw[-1]['handler_import_ms']:.0f} ms")
    packages = sorted({p for s in raw for p in s["imports_ms"]})
    steps = sorted({k for s in raw for k in s["steps"]})
    return {
        "model": model,
        "rounds": rounds,
        "median_ms": {
            k: float(np.median([s[k] for s in raw]))
            for k in ("process_wall_ms", "runtime_client_ms", "handler_import_ms", "build_runtime_ms")
        },
        "imports_ms": {p: float(np.median([s["imports_ms"].get(p, 0.0) for s in raw])) for p in packages},
        "steps_ms": {
            k: {
                "ms": float(np.median([s["steps"].get(k, {}).get("ms", 0.0) for s in raw])),
                "thread": raw[-1]["steps"].get(k, {}).get("thread", ""),
            }
            for k in steps
        },
        "raw": raw,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=REPO / "build" / "stack.json")
    parser.add_argument("--model", default="logreg")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    stack = json.loads(args.stack.read_text())
    if stack.get("endpoint_url"):
        os.environ.setdefault("AWS_ENDPOINT_URL", stack["endpoint_url"])
    result = breakdown(stack, args.model, args.rounds)
    result["command"] = " ".join(["python -m bench.init_breakdown", *(argv or sys.argv[1:])])
    save_work("init_breakdown", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
