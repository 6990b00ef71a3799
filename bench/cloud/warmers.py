"""Warmers on a bursty trace: the same arrivals replayed without and with the warmer function, against an
emulated platform keep-alive."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.cloud.arrivals import bursty_trace, dispatch
from bench.cloud.stack import MODEL, Stack
from bench.common import apigw_event, invoke, ratio, say, summary
from topicserve_ops.lambda_config import renew_environments, update_environment

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_lambda import LambdaClient


class KeepAlive:
    """Emulated platform keep-alive: an environment idle for ``keepalive_s`` is reclaimed.

    LocalStack's own keep-alive (LAMBDA_KEEPALIVE_MS, default 10 min) is fixed for a running instance that
    other sessions share, so the replay reclaims environments itself: a reaper renews the function's
    environments (``topicserve_ops.lambda_config.renew_environments``) once nothing ran on it for
    ``keepalive_s``.
    """

    def __init__(self, lam: LambdaClient, function_name: str, keepalive_s: float) -> None:
        self.lam, self.fn, self.keepalive_s = lam, function_name, keepalive_s
        self.lock = threading.Condition()
        self.in_flight = 0
        self.last_active = time.monotonic()
        self.alive = True
        self.reclaimed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._reap, daemon=True)

    def __enter__(self) -> KeepAlive:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def begin(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.alive = True
            self.last_active = time.monotonic()

    def end(self) -> None:
        with self.lock:
            self.in_flight -= 1
            self.last_active = time.monotonic()

    def _reap(self) -> None:
        while not self.stop.wait(0.1):
            with self.lock:
                idle = time.monotonic() - self.last_active
                if self.alive and self.in_flight == 0 and idle > self.keepalive_s:
                    renew_environments(self.lam, [self.fn])
                    self.alive = False
                    self.reclaimed += 1


def replay(
    st: Stack, arrivals: list[float], keepalive_s: float, warm_every_s: float | None, texts: list[str]
) -> dict[str, Any]:
    """Replay ``arrivals`` against the logreg function (direct invokes of API Gateway events), with the
    warmer function firing every ``warm_every_s`` (None: no warmer)."""
    records: list[dict[str, Any]] = [{} for _ in arrivals]
    warm_runs: list[dict[str, Any]] = []
    with KeepAlive(st.lam, st.predict_fn, keepalive_s) as keep:
        t0 = time.monotonic() + 0.5
        stop = threading.Event()

        def call(i: int) -> None:
            keep.begin()
            try:
                inv = invoke(st.lam, st.predict_fn, apigw_event(MODEL, {"text": texts[i % len(texts)]}))
            finally:
                keep.end()
            records[i] = {
                "t": arrivals[i],
                "cold": inv.init_duration_ms is not None,
                "latency_ms": (time.monotonic() - t0 - arrivals[i]) * 1000,
                "ok": inv.function_error is None,
            }

        def warmer() -> None:
            assert warm_every_s is not None
            while not stop.wait(warm_every_s):
                keep.begin()
                try:
                    inv = invoke(
                        st.lam, st.warmer, {"source": "aws.events", "detail-type": "Scheduled Event"}
                    )
                    warm_runs.append(inv.payload if isinstance(inv.payload, dict) else {})
                finally:
                    keep.end()

        thread = threading.Thread(target=warmer, daemon=True) if warm_every_s else None
        if thread:
            thread.start()
        dispatch(arrivals, t0, call, workers=16)
        stop.set()
        if thread:
            thread.join(timeout=60)
        reclaimed = keep.reclaimed
    done = [r for r in records if r]
    lat = [r["latency_ms"] for r in done]
    colds = [r for r in done if r["cold"]]
    return {
        "requests": len(arrivals),
        "completed": len(done),
        "cold_starts": len(colds),
        "cold_share": len(colds) / max(1, len(done)),
        "latency_ms": summary(lat),
        "errors": sum(not r["ok"] for r in done),
        "warmer_runs": len(warm_runs),
        "environments_reclaimed": reclaimed,
        "raw": done,
    }


def warmers(
    st: Stack, duration_s: float, keepalive_s: float, warm_every_s: float, texts: list[str], seed: int = 7
) -> dict[str, Any]:
    """The same bursty trace without and with the warmer (warming only the logreg function)."""
    update_environment(st.lam, st.warmer, {"WARM_TARGETS": st.predict_fn, "WARM_CONCURRENCY": "1"})
    st.configure_predict("")
    arrivals = bursty_trace(duration_s, keepalive_s, seed)
    gaps = np.diff(arrivals) if len(arrivals) > 1 else np.array([0.0])
    say(
        f"warmers: {len(arrivals)} requests over {duration_s:.0f} s, keep-alive {keepalive_s} s, "
        f"warmer every {warm_every_s} s; gaps > keep-alive: {(gaps > keepalive_s).mean():.0%}"
    )
    without = replay(st, arrivals, keepalive_s, None, texts)
    say(f"  without warmers: cold share {without['cold_share']:.0%}, p99 {without['latency_ms']['p99']} ms")
    with_w = replay(st, arrivals, keepalive_s, warm_every_s, texts)
    say(f"  with warmers: cold share {with_w['cold_share']:.0%}, p99 {with_w['latency_ms']['p99']} ms")
    remaining = ratio(with_w["cold_starts"], without["cold_starts"])  # None without cold starts to remove
    removed = None if remaining is None else 1 - remaining
    return {
        "trace": {
            "arrivals": arrivals,
            "duration_s": duration_s,
            "gap_cv": float(np.std(gaps) / np.mean(gaps)),
            "share_of_gaps_over_keepalive": float((gaps > keepalive_s).mean()),
        },
        "keepalive_s": keepalive_s,
        "warm_every_s": warm_every_s,
        "without": without,
        "with": with_w,
        "cold_starts_removed": removed,
        "p99_ratio_with_over_without": ratio(with_w["latency_ms"]["p99"], without["latency_ms"]["p99"]),
    }
