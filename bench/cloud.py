"""Benchmarks through the local cloud: cold starts, warmers on a bursty trace, the request-rate sweep.

All of it drives the deployed stack (LocalStack + the local-process Lambda executor running the real
handlers under awslambdaric) with the product's own code paths: HTTP through the REST API with
:class:`topicserve.client.Client`, SQS through :func:`topicserve.queue.send_all` and the batcher's event
source mapping. Variants are switched with configuration only (environment variables, the mapping's batch
size / window), never with benchmark-only code in the handlers.

Time is bounded everywhere: every point has a fixed duration and a drain deadline; a point that cannot
drain is cut (queue purged) and its unfinished requests count as errors.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO,
    WORK,
    apigw_event,
    client,
    deploy_helpers,
    dir_size,
    invoke,
    pct,
    ratio,
    say,
    set_env,
    summary,
)
from bench.texts import salted
from topicserve.client import Client
from topicserve.queue import send_all
from topicserve.requests import QueuedRequest, new_batch_id
from topicserve.warming import warm_event

MODEL = "logreg"


@dataclass
class Stack:
    """A deployed bench stack (its stack.json) and the clients the benchmarks use."""

    info: dict[str, Any]
    encode_batch_size: int | None = None

    def __post_init__(self) -> None:
        self.lam = client("lambda")
        self.sqs = client("sqs")
        self.ddb = client("dynamodb")
        self.s3 = client("s3")
        self.http = Client(self.info, timeout=60)
        self.predict_fn = self.info["functions"]["predict"][MODEL]
        self.batcher = self.info["functions"]["batcher"]
        self.warmer = self.info["functions"]["warmer"]
        mappings = self.lam.list_event_source_mappings(FunctionName=self.batcher)["EventSourceMappings"]
        self.mapping = mappings[0]["UUID"]

    # -- configuration switches ------------------------------------------------------------------------
    def set_batching(self, batch_size: int, window_s: int) -> None:
        self.lam.update_event_source_mapping(
            UUID=self.mapping, BatchSize=batch_size, MaximumBatchingWindowInSeconds=window_s
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = self.lam.get_event_source_mapping(UUID=self.mapping)["State"]
            if state == "Enabled":
                return
            time.sleep(0.3)

    def configure_batcher(self, variant: dict[str, Any]) -> None:
        set_env(
            self.lam,
            self.batcher,
            {
                "DEDUP": "true" if variant["dedup"] else "false",
                "DISABLE_CACHES": variant["disable_caches"],
                "ADAPTIVE_BATCHING": "true" if variant.get("adaptive") else "false",
                "LATENCY_SLO_MS": str(variant.get("slo_ms", 5000)),
                # the encoder's best batch size measured in this run (None: the function's default)
                "ENCODE_BATCH_SIZE": str(self.encode_batch_size) if self.encode_batch_size else None,
            },
        )
        self.set_batching(variant["batch_size"], variant["window_s"])

    def configure_predict(self, disable_caches: str) -> None:
        set_env(self.lam, self.predict_fn, {"DISABLE_CACHES": disable_caches})  # one text per request

    # -- SQS path --------------------------------------------------------------------------------------
    def drain_queue(self, timeout_s: float = 60) -> None:
        """Purge what is left and wait until nothing is in flight, so the next point starts clean."""
        url = self.info["queue_url"]
        self.sqs.purge_queue(QueueUrl=url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            if (
                int(attrs["ApproximateNumberOfMessages"])
                + int(attrs["ApproximateNumberOfMessagesNotVisible"])
                == 0
            ):
                return
            time.sleep(0.5)

    def collect(self, batch_id: str, expected: int, deadline: float) -> list[dict[str, Any]]:
        """Poll the results table for ``batch_id`` until ``expected`` rows or the deadline."""
        rows: list[dict[str, Any]] = []
        while True:
            rows = self._query(batch_id)
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(1.0)

    def _query(self, batch_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.info["tables"]["results"],
            "KeyConditionExpression": "batch_id = :b",
            "ExpressionAttributeValues": {":b": {"S": batch_id}},
        }
        while True:
            page = self.ddb.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return [
                    {
                        "request_id": i["request_id"]["S"],
                        "completed_ms": float(i["completed_ms"]["N"]),
                        "result": json.loads(i["result"]["S"]),
                    }
                    for i in items
                    if "completed_ms" in i
                ]
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def sqs_point(
        self, texts: list[str], rate: float, duration_s: float, drain_s: float, models: list[str], seed: int
    ) -> dict[str, Any]:
        """Open-loop Poisson arrivals at ``rate`` msg/s for ``duration_s`` onto the queue; latency is the
        batcher's result-write time minus the *scheduled* send time (client delays count against us)."""
        arrivals = poisson(rate, duration_s, seed)
        batch_id = new_batch_id()
        requests = [
            QueuedRequest(batch_id, str(i), texts[i % len(texts)], models) for i in range(len(arrivals))
        ]
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
            send_all(self.sqs, self.info["queue_url"], [r.to_message() for r in requests[i : max(j, i + 1)]])
            i = max(j, i + 1)
        send_lag_s = time.time() - (t0 + arrivals[-1]) if len(arrivals) else 0.0
        rows = self.collect(batch_id, len(requests), time.monotonic() + drain_s)
        if len(rows) < len(requests):
            self.drain_queue()
        return point_stats(rows, scheduled, rate, duration_s, send_lag_s, models)

    # -- HTTP path -------------------------------------------------------------------------------------
    def http_point(self, texts: list[str], rate: float, duration_s: float, seed: int) -> dict[str, Any]:
        arrivals = poisson(rate, duration_s, seed)
        t0 = time.time() + 0.2
        records: list[dict[str, Any]] = [{} for _ in arrivals]

        def call(i: int) -> None:
            status, body = self.http.predict(MODEL, [texts[i % len(texts)]])
            done = time.time()
            cached = None
            if status == 200 and isinstance(body, dict):
                cached = body["predictions"][0]["cached"]["prediction"]
            records[i] = {
                "latency_ms": (done - t0 - arrivals[i]) * 1000,
                "ok": status == 200,
                "cached": cached,
                "done": done,
            }

        with ThreadPoolExecutor(max_workers=48) as pool:
            for i, a in enumerate(arrivals):
                delay = t0 + a - time.time()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(call, i)
        ok = [r for r in records if r.get("ok")]
        lat = [r["latency_ms"] for r in ok]
        end = max((r["done"] for r in records if r), default=t0)
        hits = [r["latency_ms"] for r in ok if r["cached"]]
        misses = [r["latency_ms"] for r in ok if not r["cached"]]
        return {
            "offered_rps": rate,
            "sent": len(arrivals),
            "ok": len(ok),
            "error_rate": 1 - len(ok) / max(1, len(arrivals)),
            "throughput_rps": len(ok) / max(1e-9, end - t0),
            "latency_ms": summary(lat),
            "cache_hit_ratio": len(hits) / max(1, len(ok)),
            "hit_latency_ms": summary(hits),
            "miss_latency_ms": summary(misses),
            "mean_batch_size": 1.0,
        }

    def prewarm(self, environments: int) -> None:
        """Start ``environments`` environments of the predict function at once (the warmer's own event), so
        an HTTP point measures the steady state and not a pile-up of cold starts after a config change."""
        with ThreadPoolExecutor(max_workers=environments) as pool:
            list(
                pool.map(
                    lambda _: invoke(self.lam, self.predict_fn, warm_event(environments, 1500)),
                    range(environments),
                )
            )
        self.http.predict(MODEL, ["warm-up"])

    def http_capacity(self, texts: list[str], seconds: float, workers: int = 2) -> float:
        """Closed loop, ``workers`` concurrent callers, unique texts: completed requests per second."""
        done = [0]
        stop = time.monotonic() + seconds
        lock = threading.Lock()

        def loop(k: int) -> None:
            i = k
            while time.monotonic() < stop:
                status, _ = self.http.predict(MODEL, [texts[i % len(texts)]])
                i += workers
                with lock:
                    done[0] += status == 200

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(loop, range(workers)))
        return done[0] / (time.monotonic() - started)

    def batcher_breakdown(self, since_ms: int) -> dict[str, Any]:
        """Where the batcher's time went since ``since_ms``: its own per-batch log (encode, heads, cache
        lookups + writes) against the invocations' billed durations (the rest: parsing, result writes)."""
        time.sleep(1.5)  # log delivery is asynchronous
        logs = client("logs")
        kwargs: dict[str, Any] = {"logGroupName": f"/aws/lambda/{self.batcher}", "startTime": since_ms}
        batches, durations = [], []
        for _ in range(20):
            page = logs.filter_log_events(**kwargs)
            for event in page.get("events", []):
                message = event["message"]
                if message.startswith("REPORT"):
                    found = re.search(r"\tDuration: ([\d.]+) ms", message)
                    if found:
                        durations.append(float(found.group(1)))
                elif "batch processed" in message:
                    with contextlib.suppress(ValueError):
                        batches.append(json.loads(message))
            if "nextToken" not in page:
                break
            kwargs["nextToken"] = page["nextToken"]
        total = sum(durations)
        other = total - sum(b.get(k, 0) or 0 for b in batches for k in ("encode_ms", "heads_ms", "cache_ms"))
        parts = {k: sum(b.get(k, 0) or 0 for b in batches) for k in ("encode_ms", "heads_ms", "cache_ms")}
        return {
            "invocations": len(durations),
            "batches_logged": len(batches),
            "duration_ms_total": total,
            **parts,
            "other_ms": total - sum(parts.values()),
            "shares": {k: ratio(v, total) for k, v in parts.items()} | {"other_ms": ratio(other, total)},
        }

    def sqs_capacity(self, texts: list[str], drain_s: float, models: list[str]) -> dict[str, Any]:
        """Backlog drain: enqueue all ``texts`` at once; sustained rate = completed / (last - first result
        write + the first batch's own service time, estimated as one mean batch interval)."""
        batch_id = new_batch_id()
        requests = [QueuedRequest(batch_id, str(i), t, models) for i, t in enumerate(texts)]
        started = time.time()
        since_ms = int(started * 1000)
        send_all(self.sqs, self.info["queue_url"], [r.to_message() for r in requests])
        sent = time.time()
        rows = self.collect(batch_id, len(requests), time.monotonic() + drain_s)
        if len(rows) < len(requests):
            self.drain_queue()
        times = sorted({r["completed_ms"] for r in rows})
        n_batches = len(times)
        span = (times[-1] - times[0]) / 1000 if n_batches > 1 else float("nan")
        per_batch = span / (n_batches - 1) if n_batches > 1 else float("nan")
        sustained = len(rows) / (span + per_batch) if n_batches > 1 else float("nan")
        return {
            "texts": len(texts),
            "completed": len(rows),
            "send_seconds": sent - started,
            "end_to_end_texts_per_s": len(rows) / max(1e-9, (times[-1] / 1000 - started)) if times else 0.0,
            "sustained_texts_per_s": sustained,
            "batches": n_batches,
            "mean_batch_size": len(rows) / max(1, n_batches),
            "batcher_time": self.batcher_breakdown(since_ms),
        }


def poisson(rate: float, duration_s: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    n_max = int(rate * duration_s * 3 + 20)
    times = np.cumsum(rng.exponential(1.0 / rate, size=n_max))
    return [float(t) for t in times if t < duration_s]


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


# -- variants of the SQS path ----------------------------------------------------------------------------
SQS_VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"batch_size": 1, "window_s": 0, "dedup": False, "disable_caches": "all"},
    "+batching": {"batch_size": 100, "window_s": 1, "dedup": False, "disable_caches": "all"},
    "+dedup": {"batch_size": 100, "window_s": 1, "dedup": True, "disable_caches": "all"},
    "+embedding_cache": {"batch_size": 100, "window_s": 1, "dedup": True, "disable_caches": "prediction"},
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
                st.prewarm(4)
            current = key
        rate = max(0.5, fraction * capacity[path])
        texts = salted(workloads[workload], f"p{k}-{time.time_ns()}")
        say(f"  point {k + 1}/{len(plan)}: {key} {workload} {fraction:.0%} of capacity = {rate:.1f}/s")
        if path == "sqs":
            stats = st.sqs_point(texts, rate, duration_s, drain_s, [MODEL], seed=k)
        else:
            stats = st.http_point(texts, rate, duration_s, seed=k)
        stats.update({"path": path, "variant": variant, "workload": workload, "fraction": fraction})
        if path == "sqs":
            esm = st.lam.get_event_source_mapping(UUID=st.mapping)
            stats["mapping_after"] = {
                "batch_size": esm["BatchSize"],
                "window_s": esm.get("MaximumBatchingWindowInSeconds", 0),
            }
        say(
            f"    -> {stats['throughput_rps']:.1f}/s, p50 {stats['latency_ms']['p50']} ms, "
            f"p99 {stats['latency_ms']['p99']} ms, errors {stats['error_rate']:.1%}, "
            f"hits {stats['cache_hit_ratio']:.1%}, batch {stats['mean_batch_size']:.1f}"
        )
        out.append(stats)
    return out


# -- cold starts -----------------------------------------------------------------------------------------
def fp32_function(st: Stack) -> tuple[str, str, int]:
    """A twin of the logreg predict function whose encoder layer is the fp32 one (same code, same head).

    Returns (function name, layer version ARN, layer zip size). Created with the Lambda API beside the
    stack (CloudFormation does not know it): :func:`delete_fp32_function` removes both.
    """
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "layers/encoder/build.py", "--variant", "fp32"],
        cwd=REPO,
        check=True,
        stdout=sys.stderr,
    )
    layer_dir = REPO / "build" / "layers" / "encoder-fp32"
    archive = WORK / "encoder-fp32.zip"
    if not archive.exists() or archive.stat().st_mtime < (layer_dir / "python").stat().st_mtime:
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for path in sorted(layer_dir.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(layer_dir))
    key = "bench/encoder-fp32.zip"
    st.s3.upload_file(str(archive), st.info["bucket"], key)
    layer = st.lam.publish_layer_version(
        LayerName="topicserve-bench-encoder-fp32",
        Content={"S3Bucket": st.info["bucket"], "S3Key": key},
        CompatibleRuntimes=["python3.13"],
    )
    config = st.lam.get_function_configuration(FunctionName=st.predict_fn)
    code_url = st.lam.get_function(FunctionName=st.predict_fn)["Code"]["Location"]
    with urllib.request.urlopen(code_url, timeout=60) as response:
        code = response.read()
    layers = [
        layer["LayerVersionArn"] if ":layer:EncoderLayer" in entry["Arn"] else entry["Arn"]
        for entry in config["Layers"]
    ]
    name = f"{st.info['stack_name']}-logreg-fp32"
    st.lam.create_function(
        FunctionName=name,
        Runtime=config["Runtime"],
        Role=config["Role"],
        Handler=config["Handler"],
        Code={"ZipFile": code},
        Layers=layers,
        Environment={"Variables": config["Environment"]["Variables"]},
        MemorySize=config["MemorySize"],
        Timeout=config["Timeout"],
    )
    st.lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return name, layer["LayerVersionArn"], archive.stat().st_size


def delete_fp32_function(st: Stack, name: str, layer_arn: str) -> None:
    """Delete the twin function and the fp32 layer's *older* versions.

    The version just used is kept (as SAM retains layer versions): LocalStack 2026.3's ListLayers fails
    ("list index out of range") for every caller once a layer has no version left.
    """
    layer = layer_arn.split(":")[-2]
    current = int(layer_arn.split(":")[-1])
    try:
        st.lam.delete_function(FunctionName=name)
    except Exception as exc:  # cleanup must go on
        say(f"cleanup: {exc!r}")
    try:
        for v in st.lam.list_layer_versions(LayerName=layer)["LayerVersions"]:
            if v["Version"] != current:
                st.lam.delete_layer_version(LayerName=layer, VersionNumber=v["Version"])
    except Exception as exc:
        say(f"cleanup: {exc!r}")


def package_sizes(st: Stack, fp32_zip: int, naive_bytes: int) -> dict[str, Any]:
    """Installed (unzipped) and zipped sizes of each variant's function + layers."""

    def zipped(fn: str) -> int:
        cfg = st.lam.get_function_configuration(FunctionName=fn)
        return cfg["CodeSize"] + sum(layer.get("CodeSize", 0) for layer in cfg.get("Layers", []))

    serving = dir_size(REPO / ".aws-sam" / "build" / "ServingLayer")
    code = dir_size(REPO / "functions" / "predict")
    return {
        "ours_int8": {
            "unzipped_bytes": serving + code + dir_size(REPO / "build/layers/encoder-int8"),
            "zipped_bytes": zipped(st.predict_fn),
        },
        "fp32": {
            "unzipped_bytes": serving + code + dir_size(REPO / "build/layers/encoder-fp32"),
            "zipped_bytes": zipped(st.predict_fn) - _encoder_layer_size(st) + fp32_zip,
        },
        "naive": {
            "unzipped_bytes": naive_bytes,
            "zipped_bytes": None,
            "note": "over the 250 MB zip limit: a container image on AWS; mounted as a folder locally",
        },
    }


def _encoder_layer_size(st: Stack) -> int:
    cfg = st.lam.get_function_configuration(FunctionName=st.predict_fn)
    return sum(layer.get("CodeSize", 0) for layer in cfg["Layers"] if ":layer:EncoderLayer" in layer["Arn"])


def deploy_naive(stack_name: str) -> str:
    """The naive variant's own stack (bench/naive/template.yaml), code folder from bench/naive/package.py."""
    from bench.naive.package import PACKAGE

    deploy = deploy_helpers()
    deploy.sam_deploy(
        stack_name,
        "--template-file",
        str(REPO / "bench/naive/template.yaml"),
        "--parameter-overrides",
        f"CodeDir={PACKAGE.resolve()}",
    )
    cfn = client("cloudformation")
    outputs = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["Outputs"]
    return next(o["OutputValue"] for o in outputs if o["OutputKey"] == "FunctionName")


def cold_starts(lam: Any, variants: dict[str, str], n: int, texts: list[str]) -> dict[str, Any]:
    """``n`` forced cold starts per variant, interleaved (order rotated per round). Each: renew the
    function's environments, then one synchronous invoke of a real predict request."""
    renew = deploy_helpers().renew_environments
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(n):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            renew(lam, [variants[name]])
            inv = invoke(lam, variants[name], apigw_event(MODEL, {"text": texts[r % len(texts)]}))
            ok = (
                inv.function_error is None
                and isinstance(inv.payload, dict)
                and inv.payload.get("statusCode") == 200
            )
            split = invoke(lam, variants[name], warm_event(1, 0)).payload if name != "naive" else {}
            raw[name].append(
                {
                    "init_ms": inv.init_duration_ms,
                    "first_response_ms": inv.wall_ms,
                    "duration_ms": inv.duration_ms if inv.report else None,
                    "max_memory_mb": inv.max_memory_mb,
                    "ok": ok,
                    # build_runtime's share of init: registry lookups, head download + sha256, model loads
                    "runtime_build_ms": 1000 * split["init_seconds"] if "init_seconds" in split else None,
                }
            )
        say(
            f"  cold-start round {r + 1}/{n}: "
            + ", ".join(
                f"{k} init {raw[k][-1]['init_ms']} ms / first {raw[k][-1]['first_response_ms']:.0f} ms"
                for k in names
            )
        )
    stats = {}
    for name, samples in raw.items():
        good = [s for s in samples if s["ok"]]
        stats[name] = {
            "n": len(samples),
            "ok": len(good),
            "init_ms": summary([s["init_ms"] for s in good if s["init_ms"] is not None]),
            "first_response_ms": summary([s["first_response_ms"] for s in good]),
            "max_memory_mb": summary([s["max_memory_mb"] for s in good if s["max_memory_mb"] is not None]),
            "runtime_build_ms": summary([s["runtime_build_ms"] for s in good if s.get("runtime_build_ms")]),
        }
    base = stats.get("naive", {}).get("init_ms", {}).get("p50")
    for name in stats:
        stats[name]["init_p50_over_naive"] = ratio(stats[name]["init_ms"]["p50"], base)
    return {"raw": raw, "stats": stats}


# -- warmers on a bursty trace ---------------------------------------------------------------------------
def bursty_trace(duration_s: float, keepalive_s: float, seed: int) -> list[float]:
    """Arrival times in the manner of the Azure Functions trace (Shahrad et al., ATC'20): invocations come
    in bursts, idle gaps are heavy-tailed (lognormal, CV > 1) and often exceed the keep-alive."""
    rng = np.random.default_rng(seed)
    times, t = [], 1.0
    while t < duration_s:
        for _ in range(1 + int(rng.geometric(0.45)) - 1):
            times.append(t)
            t += float(rng.exponential(0.4))
        t += float(rng.lognormal(mean=math.log(0.9 * keepalive_s), sigma=1.0))
    return [x for x in times if x < duration_s]


class KeepAlive:
    """Emulated platform keep-alive: an environment idle for ``keepalive_s`` is reclaimed.

    LocalStack's own keep-alive (LAMBDA_KEEPALIVE_MS, default 10 min) is fixed for a running instance that
    other sessions share, so the replay reclaims environments itself: a reaper renews the function's
    environments (infra/deploy.py renew_environments) once nothing ran on it for ``keepalive_s``.
    """

    def __init__(self, lam: Any, function_name: str, keepalive_s: float) -> None:
        self.lam, self.fn, self.keepalive_s = lam, function_name, keepalive_s
        self.lock = threading.Condition()
        self.in_flight = 0
        self.last_active = time.monotonic()
        self.alive = True
        self.reclaimed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._reap, daemon=True)

    def __enter__(self) -> KeepAlive:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def begin(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.alive = True
            self.last_active = time.monotonic()

    def end(self) -> None:
        with self.lock:
            self.in_flight -= 1
            self.last_active = time.monotonic()

    def _reap(self) -> None:
        renew = deploy_helpers().renew_environments
        while not self.stop.wait(0.1):
            with self.lock:
                idle = time.monotonic() - self.last_active
                if self.alive and self.in_flight == 0 and idle > self.keepalive_s:
                    renew(self.lam, [self.fn])
                    self.alive = False
                    self.reclaimed += 1


def replay(
    st: Stack, arrivals: list[float], keepalive_s: float, warm_every_s: float | None, texts: list[str]
) -> dict[str, Any]:
    """Replay ``arrivals`` against the logreg function (direct invokes of API Gateway events), with the
    warmer function firing every ``warm_every_s`` (None: no warmer)."""
    records: list[dict[str, Any]] = [{} for _ in arrivals]
    warm_runs: list[dict[str, Any]] = []
    with KeepAlive(st.lam, st.predict_fn, keepalive_s) as keep:
        t0 = time.monotonic() + 0.5
        stop = threading.Event()

        def call(i: int) -> None:
            keep.begin()
            try:
                inv = invoke(st.lam, st.predict_fn, apigw_event(MODEL, {"text": texts[i % len(texts)]}))
            finally:
                keep.end()
            records[i] = {
                "t": arrivals[i],
                "cold": inv.init_duration_ms is not None,
                "latency_ms": (time.monotonic() - t0 - arrivals[i]) * 1000,
                "ok": inv.function_error is None,
            }

        def warmer() -> None:
            assert warm_every_s is not None
            while not stop.wait(warm_every_s):
                keep.begin()
                try:
                    inv = invoke(
                        st.lam, st.warmer, {"source": "aws.events", "detail-type": "Scheduled Event"}
                    )
                    warm_runs.append(inv.payload if isinstance(inv.payload, dict) else {})
                finally:
                    keep.end()

        thread = threading.Thread(target=warmer, daemon=True) if warm_every_s else None
        if thread:
            thread.start()
        with ThreadPoolExecutor(max_workers=16) as pool:
            for i, a in enumerate(arrivals):
                delay = t0 + a - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(call, i)
        stop.set()
        if thread:
            thread.join(timeout=60)
        reclaimed = keep.reclaimed
    done = [r for r in records if r]
    lat = [r["latency_ms"] for r in done]
    colds = [r for r in done if r["cold"]]
    return {
        "requests": len(arrivals),
        "completed": len(done),
        "cold_starts": len(colds),
        "cold_share": len(colds) / max(1, len(done)),
        "latency_ms": summary(lat),
        "errors": sum(not r["ok"] for r in done),
        "warmer_runs": len(warm_runs),
        "environments_reclaimed": reclaimed,
        "raw": done,
    }


def warmers(
    st: Stack, duration_s: float, keepalive_s: float, warm_every_s: float, texts: list[str], seed: int = 7
) -> dict[str, Any]:
    """The same bursty trace without and with the warmer (warming only the logreg function)."""
    set_env(st.lam, st.warmer, {"WARM_TARGETS": st.predict_fn, "WARM_CONCURRENCY": "1"})
    st.configure_predict("")
    arrivals = bursty_trace(duration_s, keepalive_s, seed)
    gaps = np.diff(arrivals) if len(arrivals) > 1 else np.array([0.0])
    say(
        f"warmers: {len(arrivals)} requests over {duration_s:.0f} s, keep-alive {keepalive_s} s, "
        f"warmer every {warm_every_s} s; gaps > keep-alive: {(gaps > keepalive_s).mean():.0%}"
    )
    without = replay(st, arrivals, keepalive_s, None, texts)
    say(f"  without warmers: cold share {without['cold_share']:.0%}, p99 {without['latency_ms']['p99']} ms")
    with_w = replay(st, arrivals, keepalive_s, warm_every_s, texts)
    say(f"  with warmers: cold share {with_w['cold_share']:.0%}, p99 {with_w['latency_ms']['p99']} ms")
    removed = 1 - ratio(with_w["cold_starts"], without["cold_starts"]) if without["cold_starts"] else None
    return {
        "trace": {
            "arrivals": arrivals,
            "duration_s": duration_s,
            "gap_cv": float(np.std(gaps) / np.mean(gaps)),
            "share_of_gaps_over_keepalive": float((gaps > keepalive_s).mean()),
        },
        "keepalive_s": keepalive_s,
        "warm_every_s": warm_every_s,
        "without": without,
        "with": with_w,
        "cold_starts_removed": removed,
        "p99_ratio_with_over_without": ratio(with_w["latency_ms"]["p99"], without["latency_ms"]["p99"]),
    }


def load_stack(path: Path) -> Stack:
    return Stack(json.loads(path.read_text()))


__all__ = [
    "Stack",
    "cold_starts",
    "deploy_naive",
    "fp32_function",
    "package_sizes",
    "pct",
    "sweep",
    "warmers",
]
