"""Request-rate sweep section: open-loop Poisson arrivals at fractions of the measured capacity, one row
per (path, variant, workload, load) point."""

from __future__ import annotations

from typing import Any

from bench.common import ratio
from bench.report.figures import unfinished_share
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
                pct(unfinished_share(p)),
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
        "unfinished",
        "pred. cache hits",
        "mean batch",
    ]
    cap = sw["capacity"]
    return [
        "## Request-rate sweep (open-loop Poisson arrivals)",
        "",
        f"Capacity used for the offered loads: SQS {fmt(cap['sqs'])}/s, HTTP {fmt(cap['http'])}/s. Latency = "
        "result written (SQS) or response received (HTTP) minus the *scheduled* arrival. Adaptive SLO "
        f"{sw['slo_ms']} ms. Unfinished: requests without an ok answer; on the SQS path those still queued "
        "or in flight when the point's drain window closed (then purged, so that the next point starts "
        "empty): work cut off, not failed requests; on the HTTP path, responses other than 200.",
        "",
        *table(header, rows),
    ]
