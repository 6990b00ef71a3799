"""In-process sections: the raw INT8 encoder's ceiling, the naive per-request peer, four heads for the
price of one, cache-hit latency in the service and what a rollout costs a request."""

from __future__ import annotations

from typing import Any

from bench.common import ratio
from bench.report.markdown import fmt, pct, table


def section(inp: dict[str, Any]) -> list[str]:
    c, p, cache = inp["ceiling"], inp["peer"], inp["cache_latency"]
    ceiling, peer = c["ceiling_texts_per_s"], p["throughput_median"]["peer"]
    lat = p["latency_ms"]
    four = p.get("four_heads", {})
    return [
        "## Ceiling: the raw INT8 encoder",
        "",
        f"{c['texts']} 20NG test texts, {c['rounds']} interleaved rounds. Best batch size: "
        f"**{c['best_batch']}**, ceiling **{fmt(ceiling)} texts/s**.",
        "",
        *table(
            ["variant", "texts/s (median)", "% of ceiling"],
            [[k, fmt(v), pct(ratio(v, ceiling))] for k, v in c["throughput_median"].items()],
        ),
        "## Peer: the naive per-request loop, and four heads for one",
        "",
        f"Same texts, {p['rounds']} interleaved rounds. Peer = sentence-transformers (PyTorch fp32) + "
        "pickled "
        f"scikit-learn logistic regression, one request at a time ({p['peer_texts']} texts; ours batched on "
        f"{p['batched_texts']} texts).",
        "",
        *table(
            ["variant", "texts/s (median)", "% of ceiling", "x peer"],
            [
                [k, fmt(v), pct(ratio(v, ceiling)), fmt(ratio(v, peer), 2)]
                for k, v in p["throughput_median"].items()
            ],
        ),
        f"Per-request latency p50: peer {fmt(lat['peer']['p50'])} ms, ours "
        f"{fmt(lat['ours_per_request']['p50'])} ms "
        f"(peer / ours {fmt(p['p50_peer_over_ours_per_request'], 2)}x).",
        "",
        f"Four heads for a text cost **{fmt(p['four_heads_cost_ratio'], 3)}x** one head: (encode + all four "
        "heads) "
        "/ encode inside the same calls (an upper bound, immune to drift); paired wall-clock ratio of "
        "one-head and "
        f"four-head calls on the same batches: median {fmt(four.get('paired_wall_ratio_median'), 3)}x over "
        f"{four.get('rounds')} rounds. The heads alone per text (ms): "
        + ", ".join(f"{k} {v:.4f}" for k, v in p["head_ms_per_text"].items())
        + ".",
        "",
        f"Cache-hit latency in the service (LRU tier): p50 {fmt(cache['hit_ms']['p50'], 3)} ms vs miss "
        f"{fmt(cache['miss_ms']['p50'], 1)} ms ({pct(cache['hit_over_miss_p50'])}).",
        "",
        *rollout_cost(inp.get("rollout_cost")),
    ]


def rollout_cost(rc: dict[str, Any] | None) -> list[str]:
    if not rc:
        return []
    med = rc["ms_per_text_median"]
    share = rc["heads_over_encoder_median"]
    return [
        "### What a rollout costs a request",
        "",
        f"{rc['texts']} fresh texts in requests of {rc['batch']}, {rc['rounds']} interleaved rounds "
        "(caches off). A shadow scoring every text costs "
        f"**{fmt(rc['shadow_over_production'], 3)}x** production alone per text; a 20% canary "
        f"{fmt(rc['canary_over_production'], 3)}x. Inside the calls, heads / encoder: "
        + ", ".join(f"{k} {pct(v)}" for k, v in share.items())
        + ".",
        "",
        *table(["variant", "ms per text (median)"], [[k, fmt(v, 2)] for k, v in med.items()]),
    ]
