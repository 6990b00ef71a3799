"""The HTTP path (REST API -> predict function): one open-loop point, capacity (closed loop), pre-warming."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.cloud.arrivals import dispatch, poisson
from bench.cloud.stack import MODEL, Stack
from bench.common import invoke, summary
from topicserve.warming import warm_event


def http_point(st: Stack, texts: list[str], rate: float, duration_s: float, seed: int) -> dict[str, Any]:
    arrivals = poisson(rate, duration_s, seed)
    t0 = time.time() + 0.2
    records: list[dict[str, Any]] = [{} for _ in arrivals]

    def call(i: int) -> None:
        status, body = st.http.predict(MODEL, [texts[i % len(texts)]])
        done = time.time()
        cached = None
        if status == 200 and isinstance(body, dict):
            cached = body["predictions"][0]["cached"]["prediction"]
        records[i] = {
            "latency_ms": (done - t0 - arrivals[i]) * 1000,
            "ok": status == 200,
            "cached": cached,
            "done": done,
        }

    dispatch(arrivals, t0, call, workers=48, clock=time.time)
    ok = [r for r in records if r.get("ok")]
    lat = [r["latency_ms"] for r in ok]
    end = max((r["done"] for r in records if r), default=t0)
    hits = [r["latency_ms"] for r in ok if r["cached"]]
    misses = [r["latency_ms"] for r in ok if not r["cached"]]
    return {
        "offered_rps": rate,
        "sent": len(arrivals),
        "ok": len(ok),
        "error_rate": 1 - len(ok) / max(1, len(arrivals)),
        "throughput_rps": len(ok) / max(1e-9, end - t0),
        "latency_ms": summary(lat),
        "cache_hit_ratio": len(hits) / max(1, len(ok)),
        "hit_latency_ms": summary(hits),
        "miss_latency_ms": summary(misses),
        "mean_batch_size": 1.0,
    }


def prewarm(st: Stack, environments: int) -> None:
    """Start ``environments`` environments of the predict function at once (the warmer's own event), so
    an HTTP point measures the steady state and not a pile-up of cold starts after a config change."""
    with ThreadPoolExecutor(max_workers=environments) as pool:
        list(
            pool.map(
                lambda _: invoke(st.lam, st.predict_fn, warm_event(environments, 1500)),
                range(environments),
            )
        )
    st.http.predict(MODEL, ["warm-up"])


def http_capacity(st: Stack, texts: list[str], seconds: float, workers: int = 2) -> float:
    """Closed loop, ``workers`` concurrent callers, unique texts: completed requests per second."""
    done = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def loop(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            status, _ = st.http.predict(MODEL, [texts[i % len(texts)]])
            i += workers
            with lock:
                done[0] += status == 200

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(loop, range(workers)))
    return done[0] / (time.monotonic() - started)
