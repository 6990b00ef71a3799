"""The newcomer clock: `make demo` from a fresh clone with nothing built, timed phase by phase.

    python -m bench.newcomer [--port 4800] [--keep]     # writes bench/results/newcomer.json

A new user's first command, measured as they would meet it: ``git clone`` of this checkout's HEAD into a
temporary folder beside a link to ``../shared`` (the data and the LocalStack constraints), then ``make
demo`` there with its own local cloud on ``--port``. Every output line is timestamped as it arrives; the
phases are told apart by the lines that open them (venv, local cloud install, models, images, deploy, the
demo's requests), so the JSON says where the time went, not only how long it took. The clone's local cloud
is stopped (by PID, ``make down``) and the clone deleted afterwards unless ``--keep`` (then it is left for
a ``make bench-quick`` "after make demo's set-up").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, say
from bench.common import RESULTS as RESULTS_DIR

RESULTS = RESULTS_DIR / "newcomer.json"
GOAL_S = 12 * 60
#: (phase, a substring of the line that opens it), in the order `make demo` runs them
PHASES = (
    ("venv", "==> creating .venv"),
    ("local cloud install", "[localcloud] $"),
    ("models", "training: "),
    ("images", "==> images:"),
    ("local cloud start", "localcloud up"),
    ("deploy", "==> deploying stack"),
    ("demo requests", "demo/run.py"),
)


def phases(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds per phase: from the first line that opens it to the first line of the next phase seen."""
    starts: list[tuple[float, str]] = []
    for name, marker in PHASES:
        hit = next((t for t, line in lines if marker in line), None)
        if hit is not None:
            starts.append((hit, name))
    starts.sort()
    out = {}
    for (t, name), nxt in zip(starts, [*starts[1:], (end, "")], strict=True):
        out[name] = round(nxt[0] - t, 1)
    return out


def run(port: int, keep: bool) -> dict[str, Any]:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    parent = Path(tempfile.mkdtemp(prefix="newcomer-"))
    shared = Path(os.environ.get("LOCALCLOUD_SHARED_DIR") or REPO.parent / "shared").resolve()
    (parent / "shared").symlink_to(shared)  # ../shared beside the clone: data, LocalStack constraints
    clone = parent / "main"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV"))}
    env["LOCALCLOUD_PORT"] = str(port)
    say(f"make demo in a fresh clone of {head.stdout.strip()[:12]} at {clone} (local cloud on port {port})")
    lines: list[tuple[float, str]] = []
    started = time.time()
    load = os.getloadavg()
    proc = subprocess.Popen(
        ["make", "demo"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            if "WARNING: Location" not in line:
                sys.stderr.write(f"[{time.time() - started:6.0f} s] {line}")
        rc = proc.wait()
    finally:
        ended = time.time()
        subprocess.run(["make", "down"], cwd=clone, env=env, capture_output=True, check=False)
        if not keep:
            shutil.rmtree(parent, ignore_errors=True)
    result = {
        "command": "python -m bench.newcomer " + " ".join(sys.argv[1:]),
        "git": head.stdout.strip(),
        "returncode": rc,
        "total_s": round(ended - started, 1),
        "goal_s": GOAL_S,
        "phases_s": phases(lines, ended),
        "machine_load_at_start": [round(x, 2) for x in load],
        "cores": os.cpu_count(),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "clone": str(clone) if keep else None,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4800, help="the clone's local cloud port")
    parser.add_argument("--keep", action="store_true", help="keep the clone (and stop its local cloud)")
    args = parser.parse_args(argv)
    result = run(args.port, args.keep)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    verdict = "met" if result["returncode"] == 0 and result["total_s"] <= GOAL_S else "not met"
    say(f"make demo from nothing: {result['total_s'] / 60:.1f} min ({verdict}); {result['phases_s']}")
    return int(result["returncode"] != 0)


if __name__ == "__main__":
    raise SystemExit(main())
