"""Cold-start section: forced cold starts per package variant (init, first response, memory, size)."""

from __future__ import annotations

from typing import Any

from bench.report.markdown import fmt, percentile_ms, table


def section(cs: dict[str, Any]) -> list[str]:
    sizes = cs["package_sizes"]
    rows = []
    for k, v in cs["stats"].items():
        zipped = sizes[k].get("zipped_bytes") or sizes[k].get("archive_bytes")
        rows.append(
            [
                k,
                percentile_ms(v["init_ms"], "p50"),
                percentile_ms(v["init_ms"], "p95"),
                percentile_ms(v["first_response_ms"], "p50"),
                percentile_ms(v["first_response_ms"], "p95"),
                fmt(v["init_p50_over_naive"], 2),
                percentile_ms(v["max_memory_mb"], "p50"),
                percentile_ms(v.get("runtime_build_ms") or {"p50": None}, "p50"),
                fmt(sizes[k]["unzipped_bytes"] / 2**20, 0),
                fmt(zipped / 2**20 if zipped else None, 0),
            ]
        )
    header = [
        "variant",
        "init p50 ms",
        "init p95 ms",
        "first response p50 ms",
        "p95 ms",
        "init / naive",
        "max memory MB",
        "of init: build_runtime p50 ms",
        "unzipped MiB",
        "zipped / image archive MiB",
    ]
    return [
        "## Cold starts",
        "",
        f"{cs['stats']['ours_int8']['n']} forced cold starts per variant, interleaved (environments renewed "
        "before each); first response = a synchronous invoke of a real predict request, init included.",
        "",
        *table(header, rows),
        f"Note: {cs['naive_note']}.",
        "",
    ]
