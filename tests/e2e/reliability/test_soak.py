"""Soak: the predict API at 50% of its measured capacity for minutes; no error, no memory growth.

1. Warm one environment of each predict function, then measure capacity: one closed-loop client sending
   round-robin to the four models for CAPACITY_SECONDS (each request waits for the previous one, so this
   is what the warm environments serve back to back on this machine, as it is loaded right now).
2. Soak: an open-loop client at 50% of that rate (fixed schedule, no back-off) for SOAK_SECONDS
   (default 60; the ``slow`` variant 600), every request a new text (nothing served from a cache, the
   worst case for memory: the LRU fills).
3. Properties: every response a 200; no environment crashed (no exit, timeout or unhandled error in the
   functions' logs); every model has an environment that lived through the whole soak, and each such
   environment's resident memory grew < 10% from its value after the capacity probe.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import LocalCloud
from tests.e2e.reliability.conftest import crashes, environments
from topicserve.catalogue import MODEL_NAMES
from topicserve_ops.client import Client

pytestmark = pytest.mark.e2e
MODELS = MODEL_NAMES
MAX_GROWTH = 0.10
CAPACITY_SECONDS = float(os.environ.get("CAPACITY_SECONDS", "20"))


def text(i: int) -> str:
    return f"Message {i} about the launch schedule, the playoffs and a graphics card ({uuid.uuid4().hex})"


def rss_by_runtime(localcloud: LocalCloud, stack: dict[str, Any]) -> dict[int, tuple[str, float]]:
    """runtime PID -> (model, resident MB) of every live environment of the predict functions."""
    out = {}
    for model in MODELS:
        for env in environments(localcloud, stack["functions"]["predict"][model]):
            rss = env.rss_mb()
            if env.runtime_pid is not None and rss is not None:
                out[env.runtime_pid] = (model, rss)
    return out


@pytest.mark.parametrize(
    "duration",
    [
        pytest.param(float(os.environ.get("SOAK_SECONDS", "60")), id="default"),
        pytest.param(float(os.environ.get("SOAK_SECONDS_SLOW", "600")), id="full", marks=pytest.mark.slow),
    ],
)
def test_soak_at_half_capacity(
    duration: float, rel_stack: dict[str, Any], rel_client: Client, localcloud: LocalCloud
) -> None:
    if localcloud.pid is None:
        pytest.skip("the running LocalStack was not started by localcloud: its environments are unknown")
    i = 0
    for model in MODELS:  # warm-up: one environment each, models loaded, first requests served
        for _ in range(3):
            status, body = rel_client.predict(model, [text(i)])
            assert status == 200, body
            i += 1

    started = time.monotonic()
    served = 0
    while time.monotonic() - started < CAPACITY_SECONDS:
        status, body = rel_client.predict(MODELS[served % len(MODELS)], [text(i)])
        assert status == 200, body
        served, i = served + 1, i + 1
    capacity = served / (time.monotonic() - started)
    rate = capacity / 2
    baseline = rss_by_runtime(localcloud, rel_stack)
    assert {m for m, _ in baseline.values()} == set(MODELS), baseline

    since_ms = int(time.time() * 1000) - 1000
    errors: list[str] = []
    latencies: list[float] = []
    samples: list[dict[int, tuple[str, float]]] = []
    started = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - started) < duration:
        due = started + n / rate
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        sent = time.monotonic()
        status, body = rel_client.predict(MODELS[n % len(MODELS)], [text(i)])
        latencies.append((time.monotonic() - sent) * 1000)
        if status != 200:
            errors.append(f"{status}: {str(body)[:200]}")
        if n % max(1, int(rate * 10)) == 0:  # a memory sample every ~10 s
            samples.append(rss_by_runtime(localcloud, rel_stack))
        n, i = n + 1, i + 1
    final = rss_by_runtime(localcloud, rel_stack)
    achieved = n / elapsed
    time.sleep(2)  # the last REPORT lines reach CloudWatch Logs
    crashed = crashes(localcloud, list(rel_stack["functions"]["predict"].values()), since_ms)

    # Environments measured at the start and still alive at the end: LocalStack may add one when a request
    # lands while the previous one is being released, and retires idle ones after its keep-alive; neither
    # is a crash (a crash shows in the logs, checked above). Growth is measured on the survivors.
    growth = {
        pid: (model, round(mb, 1), round(final[pid][1], 1), round((final[pid][1] - mb) / mb * 100, 2))
        for pid, (model, mb) in baseline.items()
        if pid in final
    }
    latencies.sort()
    summary = {
        "duration_s": round(elapsed, 1),
        "capacity_rps": round(capacity, 2),
        "target_rps": round(rate, 2),
        "achieved_rps": round(achieved, 2),
        "requests": n,
        "errors": len(errors),
        "crashes": len(crashed),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "memory_samples": len(samples),
        "environments_start_end_new": [len(baseline), len(final), len(set(final) - set(baseline))],
        "rss_mb_start_end_growth_pct": {f"{g[0]}:{pid}": list(g[1:]) for pid, g in growth.items()},
    }
    print("\nsoak:", json.dumps(summary))
    assert not errors, f"{len(errors)} errors: {errors[:10]}"
    assert not crashed, "crashed environments:\n" + "\n".join(crashed[:20])
    assert achieved >= 0.9 * rate, f"the client fell behind: {achieved:.2f} of {rate:.2f} requests/s"
    assert {g[0] for g in growth.values()} == set(MODELS), (
        f"a model has no environment measured throughout: {growth}"
    )
    too_much = {k: v for k, v in growth.items() if v[3] >= MAX_GROWTH * 100}
    assert not too_much, f"memory grew >= {MAX_GROWTH:.0%}: {too_much}"
