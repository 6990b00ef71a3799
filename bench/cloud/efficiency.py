"""The batcher's efficiency: how much of what it is billed is the encoder's own work.

    efficiency = encoder in-process ms per text / batcher billed ms per text

on the same texts in the same run: the capacity run's backlog (unique texts, caches on) gives the billed
side from the REPORT lines; the encoder then tokenises and encodes those very texts in this process, with
the batcher's encoder batch size, while the local cloud is idle. The emulator's own share of the billed
time is stated apart, so that a low figure can be told from a slow function:

* DynamoDB Local waits inside the function: the cache lookups and writes (the batcher's own cache timer)
  and the result writes (not timed by the function: the same rows are written again from here, in
  batch-sized calls, and timed);
* the local executor's fixed cost per invocation (Runtime API round trips, awslambdaric, the handler's
  fixed work): the Duration of an invocation with an empty batch.

On AWS a BatchWriteItem takes ~10-20 ms instead of DynamoDB Local's ~300 ms here, so the figure without
those waits is the closer estimate of the function's efficiency there.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.cloud.billing import now_ms, window_bill
from bench.cloud.stack import Stack
from bench.common import invoke, ratio, say
from topicserve.requests import new_batch_id
from topicserve.results import ResultsStore


def encoder_ms_per_text(texts: list[str], batch_size: int, rounds: int) -> dict[str, Any]:
    """Tokenise + encode ``texts`` in this process (the encoder the functions load), median ms per text."""
    from bench.inprocess import load_encoder

    encoder = load_encoder()
    encoder.encode(texts[:4], batch_size)  # session warm-up
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        encoder.encode(texts, batch_size)
        samples.append((time.perf_counter() - started) * 1000 / len(texts))
    return {
        "texts": len(texts),
        "batch_size": batch_size,
        "rounds": samples,
        "median": statistics.median(samples),
    }


def result_write_ms(st: Stack, batch_id: str, batch_size: int) -> dict[str, Any]:
    """Write the capacity run's result rows again (under a new batch id) in calls of the batcher's mean
    batch size, timed: what the batcher waited on DynamoDB Local for its result writes."""
    rows = st._query(batch_id)
    store = ResultsStore(st.info["tables"]["results"], client=st.ddb)
    copy = new_batch_id()
    started = time.perf_counter()
    for i in range(0, len(rows), max(1, batch_size)):
        store.put_results([(copy, r["request_id"], r["result"]) for r in rows[i : i + batch_size]])
    return {"rows": len(rows), "ms": (time.perf_counter() - started) * 1000}


def empty_invoke_ms(st: Stack, n: int) -> dict[str, Any]:
    """Median Duration of the batcher invoked with an empty batch: the executor's fixed cost per call."""
    invoke(st.lam, st.batcher, {"Records": []})
    durations = [invoke(st.lam, st.batcher, {"Records": []}).duration_ms for _ in range(n)]
    return {"n": n, "median": statistics.median(durations), "raw": durations}


def efficiency(
    st: Stack, capacity: dict[str, Any], texts: list[str], batch_size: int, rounds: int
) -> dict[str, Any]:
    """Efficiency of the capacity run (``capacity``: sqs_capacity's output on ``texts``)."""
    bt = capacity["batcher_time"]
    done = max(1, capacity["completed"])
    billed = bt["bill"]["billed_ms"]
    enc = encoder_ms_per_text(texts, batch_size, rounds)
    writes = result_write_ms(st, capacity["batch_id"], round(capacity["mean_batch_size"]))
    since = now_ms()
    empty = empty_invoke_ms(st, 5)
    window_bill(st.batcher, since)  # drains the empty invocations' log lines before later windows
    per_text = {
        "billed": billed / done,
        "init": bt["bill"]["init_ms"] / done,
        "encode_in_function": bt["encode_ms"] / done,
        "cache_dynamodb_local": bt["cache_ms"] / done,
        "result_writes_dynamodb_local": writes["ms"] / max(1, writes["rows"]),
        "executor_fixed": empty["median"] * bt["invocations"] / done,
    }
    emulator = sum(
        per_text[k] for k in ("cache_dynamodb_local", "result_writes_dynamodb_local", "executor_fixed")
    )
    own = per_text["billed"] - emulator
    out = {
        "texts": done,
        "invocations": bt["invocations"],
        "encoder_in_process_ms_per_text": enc["median"],
        "ms_per_text": per_text,
        "emulator_ms_per_text": emulator,
        "efficiency": ratio(enc["median"], per_text["billed"]),
        "efficiency_without_emulator": ratio(enc["median"], own) if own > 0 else None,
        "encode_in_function_over_in_process": ratio(per_text["encode_in_function"], enc["median"]),
        "encoder": enc,
        "result_writes": writes,
        "empty_invoke_ms": empty,
    }
    say(
        f"   efficiency {out['efficiency']:.2f} (encoder {enc['median']:.1f} ms/text in process, billed "
        f"{per_text['billed']:.1f} ms/text, of which emulator {emulator:.1f})"
    )
    return out
