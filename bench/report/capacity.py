"""Backlog-drain sections on the SQS path: sustained capacity with unique texts, and each serving
feature's throughput on a Zipf workload at saturation."""

from __future__ import annotations

from typing import Any

from bench.common import ratio
from bench.report.markdown import fmt, pct, table


def section(cap: dict[str, Any], ceiling: float | None, cloud: dict[str, Any]) -> list[str]:
    q = cap["sqs"]
    sustained = q["sustained_texts_per_s"]
    bt = q.get("batcher_time", {}).get("shares", {})
    return [
        "## Capacity",
        "",
        f"SQS path, backlog of {q['texts']} unique texts (BatchSize 100, window 1 s, all caches on): "
        "sustained "
        f"**{fmt(sustained)} texts/s** ({pct(ratio(sustained, ceiling))} of the ceiling), mean batch "
        f"{fmt(q['mean_batch_size'])}, {q['completed']}/{q['texts']} completed. Where the batcher's time "
        "went "
        f"(its own timers over its billed duration): encode {pct(bt.get('encode_ms'))}, cache lookups + "
        "writes "
        f"{pct(bt.get('cache_ms'))}, heads {pct(bt.get('heads_ms'))}, other (parsing, result writes) "
        f"{pct(bt.get('other_ms'))}. HTTP path (2 closed-loop callers, caches off): {fmt(cap['http_rps'])} "
        "req/s "
        f"({pct(ratio(cap['http_rps'], ceiling))} of the ceiling).",
        "",
        f"Local cloud: {'started by the benchmark' if cloud.get('started_by_bench') else 'shared, reused'}; "
        f"SQS event source settings: {cloud.get('esm_settings')}. The batcher's encoder batch size: "
        f"{cloud.get('encode_batch_size') or 'the default (32)'} (the best batch size measured for the "
        "ceiling in this run).",
        "",
    ]


def saturation_section(sat: dict[str, Any], ceiling: float | None) -> list[str]:
    base = sat.get("+batching", next(iter(sat.values())))["sustained_texts_per_s"]
    rows = []
    for k, v in sat.items():
        t = v["sustained_texts_per_s"]
        rows.append([k, fmt(t), fmt(ratio(t, base), 2), pct(ratio(t, ceiling)), fmt(v["mean_batch_size"])])
    return [
        "## Zipf workload at saturation (backlog drain, SQS path)",
        "",
        *table(["variant", "texts/s", "x +batching", "% of ceiling", "mean batch"], rows),
    ]
