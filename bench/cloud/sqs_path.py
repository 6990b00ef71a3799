"""The SQS path: its variants, one open-loop point, capacity (backlog drain), and where the batcher's time
goes (from its own per-batch log)."""

from __future__ import annotations

import time
from typing import Any

from bench.cloud.arrivals import poisson
from bench.cloud.billing import LOG_DELIVERY_S, bill, function_log
from bench.cloud.stack import Stack
from bench.common import ratio, summary
from bench.texts import salted
from topicserve.queue import send_all
from topicserve.requests import QueuedRequest, new_batch_id, pack_chunks
from topicserve.settings import Settings

SQS_VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"batch_size": 1, "window_s": 0, "dedup": False, "disable_caches": "all"},
    "+batching": {"batch_size": 100, "window_s": 1, "dedup": False, "disable_caches": "all"},
    "+dedup": {"batch_size": 100, "window_s": 1, "dedup": True, "disable_caches": "all"},
    "+embedding_cache": {"batch_size": 100, "window_s": 1, "dedup": True, "disable_caches": "answers"},
    "+prediction_cache": {"batch_size": 100, "window_s": 1, "dedup": True, "disable_caches": ""},
    "fixed_b10_w0": {"batch_size": 10, "window_s": 0, "dedup": True, "disable_caches": ""},
    "adaptive": {"batch_size": 10, "window_s": 0, "dedup": True, "disable_caches": "", "adaptive": True},
}


def warm_batcher(st: Stack, models: list[str]) -> None:
    """One small batch through the path so a point never includes the environment's cold start."""
    batch_id = new_batch_id()
    reqs = [
        QueuedRequest(batch_id, str(i), f"warm-up text number {i} {time.time()}", models) for i in range(3)
    ]
    send_all(st.sqs, st.info["queue_url"], [r.to_message() for r in reqs])
    st.collect(batch_id, len(reqs), time.monotonic() + 60)


def sqs_point(
    st: Stack, texts: list[str], rate: float, duration_s: float, drain_s: float, models: list[str], seed: int
) -> dict[str, Any]:
    """Open-loop Poisson arrivals at ``rate`` msg/s for ``duration_s`` onto the queue; latency is the
    batcher's result-write time minus the *scheduled* send time (client delays count against us)."""
    arrivals = poisson(rate, duration_s, seed)
    batch_id = new_batch_id()
    requests = [QueuedRequest(batch_id, str(i), texts[i % len(texts)], models) for i in range(len(arrivals))]
    t0 = time.time() + 0.2
    scheduled = [(t0 + a) * 1000 for a in arrivals]
    i = 0
    while i < len(arrivals):  # group arrivals due within 20 ms into one SendMessageBatch call
        now = time.time()
        due = t0 + arrivals[i]
        if due > now:
            time.sleep(due - now)
        j = i
        while j < len(arrivals) and t0 + arrivals[j] <= time.time() + 0.02 and j - i < 10:
            j += 1
        send_all(st.sqs, st.info["queue_url"], [r.to_message() for r in requests[i : max(j, i + 1)]])
        i = max(j, i + 1)
    send_lag_s = time.time() - (t0 + arrivals[-1]) if len(arrivals) else 0.0
    rows = st.collect(batch_id, len(requests), time.monotonic() + drain_s)
    if len(rows) < len(requests):
        st.drain_queue()
    return point_stats(rows, scheduled, rate, duration_s, send_lag_s, models)


def point_stats(
    rows: list[dict[str, Any]],
    scheduled: list[float],
    rate: float,
    duration_s: float,
    send_lag_s: float,
    models: list[str],
) -> dict[str, Any]:
    ok = [r for r in rows if r["result"].get("status") == "ok"]
    lat = [r["completed_ms"] - scheduled[int(r["request_id"])] for r in ok]
    batches = len({r["completed_ms"] for r in rows})
    pairs = [(r["result"]["models"][m]["cached"]) for r in ok for m in models if m in r["result"]["models"]]
    first = min(scheduled) if scheduled else 0.0
    last = max((r["completed_ms"] for r in rows), default=first)
    return {
        "offered_rps": rate,
        "sent": len(scheduled),
        "ok": len(ok),
        "error_rate": 1 - len(ok) / max(1, len(scheduled)),
        "throughput_rps": len(ok) / max(1e-9, (last - first) / 1000),
        "latency_ms": summary(lat),
        "cache_hit_ratio": sum(p["prediction"] for p in pairs) / max(1, len(pairs)),
        "embedding_hit_ratio": sum(p["embedding"] for p in pairs) / max(1, len(pairs)),
        "mean_batch_size": len(rows) / max(1, batches),
        "client_send_lag_s": send_lag_s,
        "duration_s": duration_s,
    }


def batcher_breakdown(st: Stack, since_ms: int) -> dict[str, Any]:
    """Where the batcher's time went since ``since_ms``: its own per-batch log (encode, heads, cache
    lookups + writes, and the batch counts the cost model needs) against the invocations' durations and
    billed durations from their REPORT lines (the rest: parsing, tokenising, result writes)."""
    time.sleep(LOG_DELIVERY_S)
    log = function_log(st.batcher, since_ms)
    reports, batches = log.reports, log.batches
    total = sum(r["duration_ms"] or 0.0 for r in reports)
    parts = {k: sum(b.get(k, 0) or 0 for b in batches) for k in ("encode_ms", "heads_ms", "cache_ms")}
    counts = (
        "batch_size",
        "texts",
        "unique_texts",
        "prediction_hits",
        "embedding_hits",
        "encoded",
        "encode_ms",
        "cache_reads",
        "cache_writes",
    )
    return {
        "invocations": len(reports),
        "batches_logged": len(batches),
        "duration_ms_total": total,
        **parts,
        "other_ms": total - sum(parts.values()),
        "shares": {k: ratio(v, total) for k, v in parts.items()}
        | {"other_ms": ratio(total - sum(parts.values()), total)},
        "bill": bill(st.batcher, reports, log.log_bytes),
        "batches": [{k: b.get(k) for k in counts} for b in batches],
    }


def sqs_capacity(st: Stack, texts: list[str], drain_s: float, models: list[str]) -> dict[str, Any]:
    """Backlog drain: enqueue all ``texts`` at once, in chunks as the API queues them; sustained rate =
    completed / (last - first result
    write + the first batch's own service time, estimated as one mean batch interval)."""
    batch_id = new_batch_id()
    requests = [QueuedRequest(batch_id, str(i), t, models) for i, t in enumerate(texts)]
    # queued as POST /v1/batches queues them: chunks of Settings.chunk_texts, one result item each
    settings = Settings()
    chunks = pack_chunks(requests, max_texts=settings.chunk_texts, max_bytes=settings.max_message_bytes)
    messages = [c.to_message() for c in chunks]
    started = time.time()
    since_ms = int(started * 1000)
    send_all(st.sqs, st.info["queue_url"], messages)
    sent = time.time()
    rows = st.collect(batch_id, len(requests), time.monotonic() + drain_s)
    if len(rows) < len(requests):
        st.drain_queue()
    times = sorted({r["completed_ms"] for r in rows})
    waits = sorted(int(r["completed_ms"] - since_ms) for r in rows)
    n_batches = len(times)
    span = (times[-1] - times[0]) / 1000 if n_batches > 1 else float("nan")
    per_batch = span / (n_batches - 1) if n_batches > 1 else float("nan")
    # an invocation writes all its chunks at one time, and concurrent invocations can finish within
    # milliseconds of each other: with few writes the spacing says nothing, so the end-to-end rate (from
    # the first send, window wait included: an underestimate) bounds the sustained one
    end_to_end = len(rows) / max(1e-9, (times[-1] / 1000 - started)) if times else 0.0
    sustained = len(rows) / (span + per_batch) if n_batches > 1 else float("nan")
    if n_batches < 4 or not sustained < 4 * end_to_end:
        sustained = end_to_end
    return {
        "batch_id": batch_id,
        "texts": len(texts),
        # from the first send to each result's write: what a bulk caller waits, backlog included
        "latency_ms": summary(waits),
        "latencies_ms": waits,
        "message_bytes": [len(m.encode()) for m in messages],
        "completed": len(rows),
        "send_seconds": sent - started,
        "end_to_end_texts_per_s": end_to_end,
        "sustained_texts_per_s": sustained,
        "batches": n_batches,
        "mean_batch_size": len(rows) / max(1, n_batches),
        "batcher_time": batcher_breakdown(st, since_ms),
    }


def paired_models(
    st: Stack, texts: list[str], rounds: int, drain_s: float, variants: dict[str, list[str]]
) -> dict[str, Any]:
    """The same ``texts`` drained through the batcher once per variant (a list of models per text) in
    each of ``rounds`` rounds, the variants' order rotated per round, so what one variant costs against
    another is not the machine's drift nor the texts' lengths. Each run is salted apart (a tag of the
    same length), so no run hits another's cache records. Returns each variant's runs pooled in the
    shape of :func:`sqs_capacity`'s (what bench/cost.py prices) and the batcher's billed ms per text of
    every round."""
    names = list(variants)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    per_round: list[dict[str, float]] = []
    for r in range(rounds):
        row: dict[str, float] = {}
        for k in range(len(names)):
            name = names[(k + r) % len(names)]
            run = sqs_capacity(st, salted(texts, f"{k}{r}{time.time_ns()}"), drain_s, variants[name])
            runs[name].append(run)
            row[f"{name}_ms_per_text"] = run["batcher_time"]["bill"]["billed_ms"] / max(1, run["completed"])
        per_round.append(row)
    return {"rounds": rounds, **{name: pooled(runs[name]) for name in names}, "per_round": per_round}


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several :func:`sqs_capacity` runs as one: counts and billed ms summed, batches and messages joined."""
    bills = [run["batcher_time"]["bill"] for run in runs]
    per_invocation = [b["billed_ms"] / max(1, b["invocations"]) for b in bills]
    bill_sum = {
        key: sum(b.get(key) or 0 for b in bills)
        for key in ("invocations", "billed_ms", "init_ms", "cold_starts", "log_bytes")
    }
    return {
        "batch_ids": [run["batch_id"] for run in runs],
        "texts": sum(run["texts"] for run in runs),
        "completed": sum(run["completed"] for run in runs),
        "message_bytes": [b for run in runs for b in run["message_bytes"]],
        "latency_ms": summary([w for run in runs for w in run["latencies_ms"]]),
        "bill": bill_sum
        | {"memory_mb": bills[0]["memory_mb"], "billed_ms_per_invocation": summary(per_invocation)},
        "batches": [b for run in runs for b in run["batcher_time"]["batches"]],
    }
