"""Request-rate sweep section: open-loop Poisson arrivals at fractions of the measured capacity, one row
per (path, variant, workload, load) point."""

from __future__ import annotations

from typing import Any

from bench.common import ratio
from bench.report.markdown import fmt, pct, percentile_ms, table


def section(sw: dict[str, Any], ceiling: float | None) -> list[str]:
    rows = []
    for p in sw["points"]:
        lat = p["latency_ms"]
        rows.append(
            [
                p["path"],
                p["variant"],
                p["workload"],
                pct(p["fraction"]),
                fmt(p["offered_rps"]),
                fmt(p["throughput_rps"]),
                pct(ratio(p["throughput_rps"], ceiling)),
                percentile_ms(lat, "p50"),
                percentile_ms(lat, "p95"),
                percentile_ms(lat, "p99"),
                pct(p["error_rate"]),
                pct(p["cache_hit_ratio"]),
                fmt(p["mean_batch_size"]),
            ]
        )
    header = [
        "path",
        "variant",
        "workload",
        "load",
        "offered /s",
        "throughput /s",
        "% ceiling",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "pred. cache hits",
        "mean batch",
    ]
    cap = sw["capacity"]
    return [
        "## 4-5. Request-rate sweep (open-loop Poisson arrivals)",
        "",
        f"Capacity used for the offered loads: SQS {fmt(cap['sqs'])}/s, HTTP {fmt(cap['http'])}/s. Latency = "
        "result written (SQS) or response received (HTTP) minus the *scheduled* arrival. Adaptive SLO "
        f"{sw['slo_ms']} ms.",
        "",
        *table(header, rows),
    ]
