"""The measured inputs of the cost model (bench/cost.py): what each function was billed, read back from
the REPORT lines the local executor writes to its log group (Billed Duration = duration + init, rounded
up, as on AWS), memory sizes from the deployed configuration, item sizes from the tables, message sizes
from the messages really sent; and the short probes that produce billed invocations of the paths the
other benchmarks do not exercise (the synchronous path with caches on, the api function's POST and GET,
the naive peer warm).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.cloud.stack import MODEL, Stack
from bench.common import BENCH_CLIENT, apigw_event, invoke, say, summary
from bench.cost import billed_ms, ddb_item_bytes
from bench.lambda_report import parse_report
from infra.localstack.localcloud.clients import client

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_lambda import LambdaClient

LOG_DELIVERY_S = 2.0  # the local executor ships logs asynchronously


@dataclass
class FunctionLog:
    """What a function logged in a window: its REPORT lines (parsed), its JSON "batch processed" lines, and
    the bytes of every event (what CloudWatch Logs bills as ingested: the REPORT and START/END lines, the
    structured logs and the EMF metrics alike)."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    log_bytes: int = 0


def function_log(fn: str, since_ms: int, until_ms: int | None = None) -> FunctionLog:
    """The log of ``fn`` in [since_ms, until_ms)."""
    logs = client("logs", **BENCH_CLIENT)
    kwargs: dict[str, Any] = {"logGroupName": f"/aws/lambda/{fn}", "startTime": since_ms}
    if until_ms is not None:
        kwargs["endTime"] = until_ms
    out = FunctionLog()
    for _ in range(50):
        try:
            page = logs.filter_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException:
            break
        for event in page.get("events", []):
            message = event["message"]
            out.log_bytes += len(message.encode())
            if message.startswith("REPORT"):
                out.reports.append(parse_report(message))
            elif "batch processed" in message:
                with contextlib.suppress(ValueError):
                    out.batches.append(json.loads(message))
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    return out


def memory_mb(fn: str) -> float:
    """The function's configured memory (what AWS bills GB-seconds on), read from its configuration."""
    return float(client("lambda", **BENCH_CLIENT).get_function_configuration(FunctionName=fn)["MemorySize"])


def bill(fn: str, reports: list[dict[str, Any]], log_bytes: int | None = None) -> dict[str, Any]:
    """Billed figures of ``reports``: invocations, summed billed ms (init included), the part that was
    init, the configured memory and, when known, the bytes the function logged meanwhile (JSON-able:
    bench/cost.py reads it back)."""
    billed = [
        r["billed_ms"] if r["billed_ms"] is not None else billed_ms(r["duration_ms"] or 0.0, r["init_ms"])
        for r in reports
    ]
    return {
        "invocations": len(reports),
        "billed_ms": float(sum(billed)),
        "init_ms": float(sum(r["init_ms"] or 0.0 for r in reports)),
        "cold_starts": sum(r["init_ms"] is not None for r in reports),
        "billed_ms_per_invocation": summary(billed),
        "memory_mb": memory_mb(fn),
        "log_bytes": log_bytes,
    }


def window_bill(fn: str, since_ms: int, until_ms: int | None = None) -> dict[str, Any]:
    time.sleep(LOG_DELIVERY_S)
    log = function_log(fn, since_ms, until_ms)
    return bill(fn, log.reports, log.log_bytes)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- sizes ---------------------------------------------------------------------------------------------------
def item_sizes(st: Stack, sample: int = 20) -> dict[str, Any]:
    """Median billed size (bytes) of the items in the cache (one record per text) and results tables (a
    scan of ``sample`` items each, after the benchmarks filled them)."""
    out: dict[str, Any] = {}
    for key, table in (("record", "cache"), ("result", "results")):
        items = st.ddb.scan(TableName=st.info["tables"][table], Limit=sample * 3).get("Items", [])
        if key == "result":  # the result rows, not the batches' #meta items
            items = [i for i in items if "result" in i]
        sizes = [ddb_item_bytes(i) for i in items[:sample]]
        out[key] = statistics.median(sizes) if sizes else None
    return out


def chunk_item_bytes(st: Stack, batch_id: str) -> float | None:
    """Median billed size of the result chunk items of one batch (its own models and texts)."""
    items = st.ddb.query(
        TableName=st.info["tables"]["results"],
        KeyConditionExpression="batch_id = :b",
        ExpressionAttributeValues={":b": {"S": batch_id}},
    ).get("Items", [])
    sizes = [ddb_item_bytes(i) for i in items if "r" in i]
    return statistics.median(sizes) if sizes else None


# -- probes --------------------------------------------------------------------------------------------------
def sync_probe(
    st: Stack, texts: list[str], n: int, per_request: int, models: Sequence[str]
) -> dict[str, Any]:
    """``n`` POST /v1/predict/{model} of ``per_request`` unique texts each through the REST API, caches on
    (the deployed configuration), one caller, for every model in ``models``. Each model is its own predict
    function, so a text answered by five models on this path is five requests to five functions; the
    models take turns request by request, so they share the machine's state. Per model: the billed
    duration and log bytes of its function over the probe, and the client's latency per request."""
    if len(texts) < n * per_request:  # an empty request would be a 400, not a measurement
        raise ValueError(
            f"{n} requests of {per_request} texts need {n * per_request} texts, got {len(texts)}"
        )
    fns = {m: st.info["functions"]["predict"][m] for m in models}
    for m in models:  # each function's environment up (a cold start is not a warm request's cost)
        st.http.predict(m, [f"warm-up {m} {time.time_ns()}"])
    since = now_ms()
    ok = dict.fromkeys(models, 0)
    latency: dict[str, list[float]] = {m: [] for m in models}
    for i in range(n):
        chunk = texts[i * per_request : (i + 1) * per_request]
        for m in models:
            started = time.perf_counter()
            ok[m] += st.http.predict(m, chunk)[0] == 200
            latency[m].append((time.perf_counter() - started) * 1000)
    until = now_ms()
    out: dict[str, Any] = {}
    for m in models:
        b = window_bill(fns[m], since, until + 1)
        out[m] = {
            "requests": n,
            "texts_per_request": per_request,
            "ok": ok[m],
            "bill": b,
            "latency_ms": summary(latency[m]),
        }
        say(
            f"   cost probe, sync {m} x{per_request}: {ok[m]}/{n} ok, "
            f"{b['billed_ms'] / max(1, b['invocations']):.0f} billed ms/request, "
            f"p50 {out[m]['latency_ms']['p50']:.0f} ms"
        )
    return out


def api_probe(st: Stack, texts: list[str], k: int) -> dict[str, Any]:
    """One client submission of ``k`` texts through the REST API (POST /v1/batches), then, once every
    result is in, one GET of the whole page: the api function's billed duration for each."""
    st.http.call("GET", "/v1/health")  # an environment of the api function, warm
    requests = [{"id": str(i), "text": t, "models": [MODEL]} for i, t in enumerate(texts[:k])]
    since = now_ms()
    status, body = st.http.call("POST", "/v1/batches", {"requests": requests})
    batch_id = body.get("batch_id") if isinstance(body, dict) else None
    if status != 202 or not batch_id:
        say(f"   cost probe, API: POST /v1/batches answered {status}: {str(body)[:200]}")
        return {"texts": k, "ok": False}
    st.collect(batch_id, k, time.monotonic() + 120)
    mid = now_ms()
    get_status, page = st.http.results(batch_id, limit=k)
    got = len(page.get("results", [])) if isinstance(page, dict) else 0
    post, get = window_bill(st.api, since, mid), window_bill(st.api, mid)
    say(
        f"   cost probe, API: POST {post['billed_ms']:.0f} billed ms ({post['invocations']} invocations), "
        f"GET {get['billed_ms']:.0f} ms for {got} results"
    )
    return {"texts": k, "batch_id": batch_id, "ok": get_status == 200 and got == k, "post": post, "get": get}


def naive_warm(lam: LambdaClient, fn: str, texts: list[str], n: int) -> dict[str, Any]:
    """The naive peer's warm per-request billed duration: one request to make sure an environment is
    up, then ``n`` single-text requests (its REPORT lines from the invocations' tail logs)."""
    invoke(lam, fn, apigw_event(MODEL, {"text": texts[-1]}))
    reports = []
    for t in texts[:n]:
        inv = invoke(lam, fn, apigw_event(MODEL, {"text": t}))
        if inv.function_error is None and inv.report:
            reports.append(parse_report(inv.report))
    b = bill(fn, reports)
    say(f"   naive warm: {b['billed_ms'] / max(1, b['invocations']):.0f} billed ms/request")
    return {"requests": n, "bill": b}
