"""Cold-start init of a predict function's library, this checkout against an earlier revision, interleaved.

    python -m bench.init_ab --baseline <git rev> [--rounds 15] [--model logreg] [--stack build/stack.json]

Each sample is a fresh Python process (as a cold start is) that imports ``topicserve.bootstrap`` and runs
``build_runtime()`` against a deployed stack's registry (the local cloud or AWS: what ``make deploy`` wrote
to ``build/stack.json``) with an empty model cache, so every sample pays the registry reads, the download,
the sha256 check and the model loads. Baseline and current alternate sample by sample; medians, the ratio
and the raw samples go to ``build/bench/init_ab.json``. The baseline's ``layers/serving`` comes from a
``git worktree`` under ``build/bench/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, WORK, ratio, save_work, say

PROBE = """
import json, time
t0 = time.perf_counter()
from topicserve.bootstrap import build_runtime
rt = build_runtime()
print(json.dumps({"total_s": time.perf_counter() - t0, "init_s": rt.init_seconds}))
"""


def worktree(rev: str) -> Path:
    path = WORK / f"baseline-{rev[:12]}"
    if not (path / "layers" / "serving").is_dir():
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--force", str(path), rev], cwd=REPO, check=True
        )
    return path


def sample(serving: Path, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="init-ab-") as cache:
        run_env = {**env, "PYTHONPATH": str(serving), "MODEL_CACHE_DIR": cache}
        proc = subprocess.run(
            [sys.executable, "-c", PROBE], env=run_env, capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--model", default="logreg")
    parser.add_argument("--stack", type=Path, default=REPO / "build" / "stack.json")
    args = parser.parse_args(argv)
    stack = json.loads(args.stack.read_text())
    env = {
        **os.environ,
        "MODEL_NAMES": args.model,
        "REGISTRY_BUCKET": stack["bucket"],
        "REGISTRY_TABLE": stack["tables"]["registry"],
        "ENCODER_DIR": str(REPO / "build" / "layers" / "encoder-int8" / "python" / "topicserve_encoder"),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    if stack.get("endpoint_url"):
        env |= {
            "AWS_ENDPOINT_URL": stack["endpoint_url"],
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": stack.get("region") or "us-east-1",
        }
    variants = {
        "baseline": worktree(args.baseline) / "layers" / "serving",
        "current": REPO / "layers" / "serving",
    }
    raw: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            raw[name].append(sample(variants[name], env))
        say(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{k} {raw[k][-1]['total_s'] * 1000:.0f} ms" for k in variants)
        )
    med: dict[str, Any] = {
        k: {m: float(np.median([s[m] for s in v])) for m in ("total_s", "init_s")} for k, v in raw.items()
    }
    result = {
        "command": " ".join(["python -m bench.init_ab", *(argv or sys.argv[1:])]),
        "baseline": args.baseline,
        "model": args.model,
        "rounds": args.rounds,
        "median": med,
        "current_over_baseline_total": ratio(med["current"]["total_s"], med["baseline"]["total_s"]),
        "current_over_baseline_init": ratio(med["current"]["init_s"], med["baseline"]["init_s"]),
        "raw": raw,
    }
    save_work("init_ab", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
