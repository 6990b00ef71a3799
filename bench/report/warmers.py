"""Warmers section: cold starts on a bursty trace with and without the scheduled warmer."""

from __future__ import annotations

from typing import Any

from bench.report.markdown import fmt, pct, percentile_ms, table


def section(w: dict[str, Any]) -> list[str]:
    trace = w["trace"]
    rows = [
        [
            f"{k} warmers",
            pct(w[k]["cold_share"]),
            w[k]["cold_starts"],
            percentile_ms(w[k]["latency_ms"], "p50"),
            percentile_ms(w[k]["latency_ms"], "p99"),
        ]
        for k in ("without", "with")
    ]
    return [
        "## Warmers on a bursty trace",
        "",
        f"{w['without']['requests']} requests over {fmt(trace['duration_s'], 0)} s in bursts with "
        "heavy-tailed idle "
        f"gaps (lognormal, CV {fmt(trace['gap_cv'], 2)}; {pct(trace['share_of_gaps_over_keepalive'])} of "
        "gaps "
        f"longer than the keep-alive). Keep-alive {w['keepalive_s']} s, emulated: the replay reclaims an "
        "environment idle that long (the shared LocalStack's own keep-alive is fixed at 10 min); warmer "
        "every "
        f"{w['warm_every_s']} s.",
        "",
        *table(["", "cold share", "cold starts", "p50 ms", "p99 ms"], rows),
        f"Cold starts removed: **{pct(w['cold_starts_removed'])}**; p99 with / without: "
        f"{fmt(w['p99_ratio_with_over_without'], 2)}x. A cold start left with warmers comes from a burst: a "
        "request "
        "arriving while the one warm environment is busy gets a new (cold) environment.",
        "",
    ]
