"""The request-rate sweep: points of each path:variant at fractions of the measured capacity, per workload."""

from __future__ import annotations

import time
from typing import Any

from bench.cloud.http_path import http_point, prewarm
from bench.cloud.sqs_path import SQS_VARIANTS, sqs_point, warm_batcher
from bench.cloud.stack import MODEL, Stack
from bench.common import say
from bench.texts import salted


def sweep(
    st: Stack,
    workloads: dict[str, list[str]],
    plan: list[tuple[str, str, float]],
    capacity: dict[str, float],
    duration_s: float,
    drain_s: float,
) -> list[dict[str, Any]]:
    """Run ``plan`` = [(path:variant, workload, fraction of capacity)], grouped by variant (a variant
    switch costs a fresh environment), points of a variant interleaved across workloads."""
    out = []
    current = None
    for k, (key, workload, fraction) in enumerate(plan):
        path, variant = key.split(":", 1)
        if key != current:
            say(f"sweep: configuring {key}")
            if path == "sqs":
                st.configure_batcher(SQS_VARIANTS[variant])
                warm_batcher(st, [MODEL])
            else:
                st.configure_predict("all" if variant == "baseline" else "")
                prewarm(st, 4)
            current = key
        rate = max(0.5, fraction * capacity[path])
        texts = salted(workloads[workload], f"p{k}-{time.time_ns()}")
        say(f"  point {k + 1}/{len(plan)}: {key} {workload} {fraction:.0%} of capacity = {rate:.1f}/s")
        if path == "sqs":
            stats = sqs_point(st, texts, rate, duration_s, drain_s, [MODEL], seed=k)
        else:
            stats = http_point(st, texts, rate, duration_s, seed=k)
        stats.update({"path": path, "variant": variant, "workload": workload, "fraction": fraction})
        if path == "sqs":
            esm = st.lam.get_event_source_mapping(UUID=st.mapping)
            stats["mapping_after"] = {
                "batch_size": esm["BatchSize"],
                "window_s": esm.get("MaximumBatchingWindowInSeconds", 0),
            }
        say(
            f"    -> {stats['throughput_rps']:.1f}/s, p50 {stats['latency_ms']['p50']} ms, "
            f"p99 {stats['latency_ms']['p99']} ms, unfinished {stats['error_rate']:.1%}, "
            f"hits {stats['cache_hit_ratio']:.1%}, batch {stats['mean_batch_size']:.1f}"
        )
        out.append(stats)
    return out
