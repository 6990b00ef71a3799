"""Device check of the GPU path (issue 14): run it with ``bench/gpu_check.sh`` on a machine with a GPU.

Three measurements, one JSON file (``bench/results/gpu_check-<host>.json``) and a headline:

1. **Speed**: texts/s of the encoder the bulk worker picks (``topicserve_worker.accelerator``: fp16 on CUDA
   when the session really runs there) against the CPU INT8 encoder, measured in the same process, interleaved
   (the order alternates per round), medians. Each measurement encodes the same pool of real texts,
   tokenised beforehand, in sub-batches of 64 / 256 / 1024 sorted by length, as the worker's service does
   with ``WORKER_ENCODE_BATCH_SIZE``. Without a usable GPU the worker's encoder *is* the CPU INT8 one, so
   only that is measured and the record says why the GPU was not used.
2. **Fidelity**: cosine of the fp16 encoder, on the provider it ran on, to the fp32 encoder (CPU EP) on
   real 20NG test texts (goal: mean >= 0.999), and how often each head's label on fp16 embeddings equals
   its label on INT8 embeddings (what the Lambda path serves).
3. **The bulk worker draining a queue** of ``--texts`` requests (default 20,000: the 20NG test texts, repeated
   with a suffix so each is distinct and really encoded): the real ``topicserve_worker.worker.Worker`` (merged
   receives, the batcher's per-message rules, heartbeats, deletes), its results written by ``ResultsStore`` to
   moto's in-process DynamoDB. The queue is an in-memory stand-in with the SQS calls the worker makes
   (visibility timeouts, receipt handles), because moto's SQS is O(queue length) per call (see
   :func:`backend`); ``--backend moto`` uses moto's SQS anyway (small ``--texts`` only), and without
   boto3/moto (the GPU machines lack them) the results go to a dict. It stops at ``--deadline`` and reports
   the rate of what it answered.

Everything it needs is local: the encoder folder (``build/models/encoder``: model.fp16.onnx,
model.int8.onnx, model.fp32.onnx, tokenizer.json; ``make models``), the heads and manifest
(``build/models``), the dataset (``$DATA_HOME/20news-bydate_py3.pkz`` + scikit-learn, or ``--texts-file``,
a JSON list of strings). What is missing is listed first, and the parts that can run still run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_dynamodb.type_defs import ScanInputTypeDef

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
COS_MEAN_GOAL = 0.999
#: encoder sub-batches measured: 64/256/1024 for the GPU, and 1, the serving default on CPU
#: (topicserve.settings.Settings.encode_batch_size: the INT8 encoder is batch-invariant only one text a call)
SIZES = (1, 64, 256, 1024)
MAX_CHARS = 50_000  # topicserve.text.DEFAULT_MAX_CHARS: what a queued request may carry


def say(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- what is there ---------------------------------------------------------------------------------------
def version_of(module: str) -> str | None:
    try:
        return str(getattr(importlib.import_module(module), "__version__", "present"))
    except Exception:  # ImportError, or a broken install that fails on import
        return None


def nvidia_smi() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    query = "--query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu"
    try:
        out = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"
    return (out.stdout or out.stderr).strip()


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((ln.split(":", 1)[1].strip() for ln in info if "model name" in ln), "")
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        mem = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("MemTotal")), "")
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "loadavg_at_start": list(os.getloadavg()),
        "gpu": nvidia_smi(),
    }


def preflight(models: Path, encoder_dir: Path, texts_file: Path | None) -> tuple[dict[str, Any], list[str]]:
    """Versions of what the check uses, and the list of what is missing (each with what it costs)."""
    found: dict[str, Any] = {
        m: version_of(m)
        for m in (
            "numpy",
            "onnxruntime",
            "tokenizers",
            "onnx",
            "boto3",
            "moto",
            "sklearn",
            "aws_lambda_powertools",
        )
    }
    import onnxruntime as ort

    found["onnxruntime_providers"] = ort.get_available_providers()
    missing = []
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        missing.append(
            f"onnxruntime {ort.__version__} is a CPU build: install onnxruntime-gpu (1.31.x for CUDA 13, "
            "1.25.0 for CUDA 12) to measure the GPU; the CPU fallback is measured instead"
        )
    for module, why in (("tokenizers", "the encoder cannot tokenise: nothing can run"),):
        if found[module] is None:
            missing.append(f"python package {module}: {why}")
    if found["moto"] is None or found["boto3"] is None:
        missing.append("boto3/moto: the worker's results go to a dict instead of moto's DynamoDB")
    for name in ("model.fp16.onnx", "model.int8.onnx", "model.fp32.onnx", "tokenizer.json"):
        if not (encoder_dir / name).is_file():
            missing.append(f"{encoder_dir / name} (make models)")
    if not (models / "manifest.json").is_file():
        missing.append(f"{models / 'manifest.json'} (make models): no heads, so no worker drain")
    if texts_file is None:
        pkz = data_home() / "20news-bydate_py3.pkz"
        if not pkz.is_file():
            missing.append(f"{pkz}: set DATA_HOME, or pass --texts-file (a JSON list of texts)")
        if found["sklearn"] is None:
            missing.append("scikit-learn (reads the dataset): pass --texts-file instead")
    elif not texts_file.is_file():
        missing.append(f"--texts-file {texts_file}")
    return found, missing


def data_home() -> Path:
    return Path(os.environ.get("DATA_HOME") or REPO.parent / "shared" / "data")


def real_texts(texts_file: Path | None) -> list[str]:
    """Non-empty 20NG test texts in bench/texts.py's seeded order (or a JSON list from ``texts_file``)."""
    if texts_file is not None:
        texts = [str(t) for t in json.loads(texts_file.read_text())]
    else:
        from bench.texts import test_texts

        texts = test_texts()
    texts = [t.strip()[:MAX_CHARS] for t in texts if len(t.strip()) >= 20]
    if not texts:
        raise SystemExit("gpu_check: no usable texts")
    return texts


def cycled(pool: Sequence[str], n: int) -> list[str]:
    """``n`` distinct texts: the pool, then the pool again with a round suffix (dedup must not skip them)."""
    return [pool[i % len(pool)] + ("" if i < len(pool) else f" [{i // len(pool)}]") for i in range(n)]


# -- 1. speed ---------------------------------------------------------------------------------------------
def measure_speed(
    variants: dict[str, Any], ids: Sequence[Sequence[int]], sizes: Sequence[int], rounds: int, budget: float
) -> dict[str, Any]:
    """texts/s of each variant at each sub-batch size: warm-up first, then ``rounds`` interleaved rounds
    (stopping early, after at least one, when ``budget`` seconds are spent)."""
    names = list(variants)
    samples: dict[str, dict[int, list[float]]] = {n: {b: [] for b in sizes} for n in names}
    for name in names:  # first runs allocate memory and, on CUDA, pick kernels for each shape
        for b in sizes:
            variants[name].encode_tokens(ids[: min(len(ids), b)], batch_size=b)
    started = time.perf_counter()
    done = 0
    for r in range(rounds):
        for b in sizes:
            for name in names if r % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                variants[name].encode_tokens(ids, batch_size=b)
                samples[name][b].append(len(ids) / (time.perf_counter() - t0))
        done += 1
        say(
            f"speed round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {samples[n][sizes[-1]][-1]:.0f}/s" for n in names)
        )
        if time.perf_counter() - started > budget:
            break
    medians = {n: {str(b): statistics.median(samples[n][b]) for b in sizes} for n in names}
    out: dict[str, Any] = {
        "pool_texts": len(ids),
        "mean_tokens": float(np.mean([len(x) for x in ids])),
        "rounds": done,
        "texts_per_second_median": medians,
        "samples": {n: {str(b): v for b, v in s.items()} for n, s in samples.items()},
        "what": "encode_tokens of the same pre-tokenised pool per measurement (tokenisation excluded)",
    }
    if "cuda-fp16" in names:
        out["speedup_cuda_fp16_over_cpu_int8"] = {
            str(b): medians["cuda-fp16"][str(b)] / medians["cpu-int8"][str(b)] for b in sizes
        }
    return out


# -- 2. fidelity ------------------------------------------------------------------------------------------
def measure_fidelity(
    fp32: Any,
    fp16: Any,
    int8: Any,
    heads: dict[str, Any],
    texts: Sequence[str],
    *,
    fp16_batch: int,
    int8_batch: int,
) -> dict[str, Any]:
    """fp16 (at the worker's sub-batch on its provider) and INT8 (at the serving sub-batch) against fp32."""

    from training.fidelity import cosine_stats as cos  # numpy only: runs where the serving library runs

    ids = [t.ids for t in fp32.tokenize(texts)]
    ref = fp32.encode_tokens(ids, batch_size=64)
    half = fp16.encode_tokens(ids, batch_size=fp16_batch)
    quant = int8.encode_tokens(ids, batch_size=int8_batch)

    def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        return {
            name: float((head.predict_proba(a).argmax(axis=1) == head.predict_proba(b).argmax(axis=1)).mean())
            for name, head in heads.items()
        }

    fp16_vs_fp32 = cos(ref, half)
    return {
        "n": len(texts),
        "reference": "model.fp32.onnx on CPUExecutionProvider, sub-batch 64",
        "fp16_provider": fp16.providers[0],
        "fp16_sub_batch": fp16_batch,
        "int8_sub_batch": int8_batch,
        "fp16_vs_fp32": fp16_vs_fp32,
        "int8_vs_fp32": cos(ref, quant),
        "goal_cos_mean": COS_MEAN_GOAL,
        "ok": bool(fp16_vs_fp32["cos_mean"] >= COS_MEAN_GOAL),
        "head_label_agreement_fp16_vs_int8": agreement(half, quant),
        "head_label_agreement_fp32_vs_int8": agreement(ref, quant),  # the part that is INT8's, not fp16's
        "head_label_agreement_fp16_vs_fp32": agreement(half, ref),
    }


# -- 3. the worker draining a queue ------------------------------------------------------------------------
class MemoryQueue:
    """The SQS calls the worker makes, in memory, for machines without moto: receive with a visibility
    timeout, delete and change visibility by receipt handle. Messages whose visibility runs out go back to
    the end of the queue (SQS gives no order either)."""

    def __init__(self) -> None:
        self.visible: collections.OrderedDict[str, str] = collections.OrderedDict()  # id -> body
        self.inflight: dict[str, tuple[str, float]] = {}  # id -> (body, visible again at)
        self.receipts: dict[str, str] = {}  # receipt handle -> id
        self._next = 0

    def _id(self, prefix: str) -> str:
        self._next += 1
        return f"{prefix}{self._next}"

    def send_message_batch(self, **call: Any) -> dict[str, Any]:
        for entry in call["Entries"]:
            self.visible[self._id("m")] = entry["MessageBody"]
        return {"Successful": [{"Id": e["Id"]} for e in call["Entries"]]}

    def receive_message(self, **call: Any) -> dict[str, Any]:
        now = time.monotonic()
        for mid, (body, at) in list(self.inflight.items()):
            if at <= now:
                del self.inflight[mid]
                self.visible[mid] = body
        out: list[dict[str, Any]] = []
        while self.visible and len(out) < call.get("MaxNumberOfMessages", 1):
            mid, body = self.visible.popitem(last=False)
            receipt = self._id("r")
            self.receipts[receipt] = mid
            self.inflight[mid] = (body, now + call.get("VisibilityTimeout", 30))
            out.append({"MessageId": mid, "ReceiptHandle": receipt, "Body": body})
        return {"Messages": out} if out else {}

    def delete_message_batch(self, **call: Any) -> dict[str, Any]:
        for entry in call["Entries"]:
            self.inflight.pop(self.receipts.pop(entry["ReceiptHandle"], ""), None)
        return {"Successful": [{"Id": e["Id"]} for e in call["Entries"]]}

    def change_message_visibility_batch(self, **call: Any) -> dict[str, Any]:
        now = time.monotonic()
        for entry in call["Entries"]:
            mid = self.receipts.get(entry["ReceiptHandle"], "")
            if mid in self.inflight:
                self.inflight[mid] = (self.inflight[mid][0], now + entry["VisibilityTimeout"])
        return {"Successful": [{"Id": e["Id"]} for e in call["Entries"]]}


BACKENDS = {
    "moto-results": "SQS: the in-memory stand-in; results: topicserve ResultsStore on moto's DynamoDB",
    "moto": "SQS and DynamoDB both on moto (faithful, but moto's SQS costs O(queue length) per call)",
    "memory": "SQS: the in-memory stand-in; results: a dict (no boto3 / moto needed)",
}


@contextlib.contextmanager
def backend(kind: str) -> Iterator[tuple[Any, str, Callable[[list[Any]], None], Callable[[], int]]]:
    """(sqs client, queue url, result writer, count of stored results), see BACKENDS.

    Why SQS is not moto's by default: moto 5 computes every queue attribute (a scan of all messages) on
    each SendMessage and ReceiveMessage, so one call costs O(queue length). Measured here: 500 messages
    sent at a backlog of 2,000 took 13.8 s (~28 ms each), so enqueueing 20,000 would take most of an hour.
    Its DynamoDB scales (512 results written in 0.09 s at any table size), so the results go there.
    """
    if kind == "memory":
        queue = MemoryQueue()
        stored: dict[tuple[str, str], Any] = {}

        def write(rows: list[Any]) -> None:
            stored.update({(b, r): res for b, r, res in rows})

        yield queue, "memory://bulk", write, lambda: len(stored)
        return
    import boto3
    from moto import mock_aws

    from topicserve.results import ResultsStore

    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(var, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        if kind == "moto":
            sqs: Any = boto3.client("sqs", region_name="us-east-1")
            url = sqs.create_queue(QueueName="bulk", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        else:
            sqs, url = MemoryQueue(), "memory://bulk"
        ddb.create_table(
            TableName="results",
            KeySchema=[
                {"AttributeName": "batch_id", "KeyType": "HASH"},
                {"AttributeName": "request_id", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "batch_id", "AttributeType": "S"},
                {"AttributeName": "request_id", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        results = ResultsStore("results", client=ddb)

        def count() -> int:
            total = 0
            kwargs: ScanInputTypeDef = {"TableName": "results", "Select": "COUNT"}
            while True:
                page = ddb.scan(**kwargs)
                total += int(page["Count"])
                if "LastEvaluatedKey" not in page:
                    return total
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

        yield sqs, url, results.put_results, count


def drain(
    kind: str, encoder: Any, choice: Any, heads: dict[str, Any], texts: Sequence[str], deadline: float
) -> dict[str, Any]:
    from topicserve.requests import QueuedRequest
    from topicserve.service import InferenceService
    from topicserve.settings import Settings
    from topicserve_worker.worker import Worker, WorkerSettings

    with backend(kind) as (sqs, url, write, count):
        settings = Settings(models=tuple(heads), results_table="results", bulk_queue_url=url)
        t0 = time.perf_counter()
        bodies = [
            QueuedRequest("gpu-check", f"r{i:06d}", t, list(heads)).to_message() for i, t in enumerate(texts)
        ]
        for start in range(0, len(bodies), 10):
            sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[start : start + 10])],
            )
        enqueue_seconds = time.perf_counter() - t0
        config = WorkerSettings(wait_seconds=0)
        batch_size = config.batch_size_for(choice, settings)
        service = InferenceService(encoder, heads, encode_batch_size=batch_size)
        worker = Worker(sqs, config, service, write, settings)
        say(f"worker: {len(texts)} requests queued in {enqueue_seconds:.1f} s ({kind}); draining")
        encode_s = heads_s = 0.0
        batches = 0
        t0 = time.perf_counter()
        stopped_early = False
        while True:
            if time.monotonic() > deadline:
                stopped_early = True  # the check's time is up: report the rate of what was answered
                break
            messages = worker.gather()
            if not messages:
                break
            outcome = worker.serve(messages)
            batches += 1
            if outcome.stats is not None:
                encode_s += outcome.stats.encode_seconds
                heads_s += outcome.stats.heads_seconds
            if batches % 5 == 0:
                rate = worker.answered / (time.perf_counter() - t0)
                say(f"worker: {worker.answered}/{len(texts)} answered, {rate:.0f} texts/s")
        seconds = time.perf_counter() - t0
        stored = count()
    return {
        "backend": kind,
        "queue": BACKENDS[kind],
        "requests": len(texts),
        "models": list(heads),
        "answered": worker.answered,
        "retried": worker.retried,
        "results_stored": stored,
        "batches": batches,
        "target_messages": config.target_messages,
        "encode_batch_size": batch_size,
        "enqueue_seconds": enqueue_seconds,
        "drain_seconds": seconds,
        "texts_per_second": worker.answered / seconds if seconds else None,
        "encode_seconds": encode_s,
        "heads_seconds": heads_s,
        "complete": worker.answered == len(texts) and stored == len(texts),
        "stopped_at_deadline": stopped_early,
    }


# -- the check --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=20_000, help="requests the worker drains (default 20,000)")
    p.add_argument("--models", type=Path, default=REPO / "build" / "models", help="make models output")
    p.add_argument("--encoder-dir", type=Path, help="default: <models>/encoder")
    p.add_argument("--texts-file", type=Path, help="a JSON list of texts instead of the 20NG test set")
    p.add_argument("--pool", type=int, default=2048, help="texts per speed measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds (at most)")
    p.add_argument(
        "--speed-budget", type=float, default=150.0, help="seconds after which no new round starts"
    )
    p.add_argument("--fidelity-texts", type=int, default=1000)
    p.add_argument(
        "--backend",
        choices=["auto", *BACKENDS],
        default="auto",
        help="where the worker's queue and results live (auto: moto-results with moto, else memory)",
    )
    p.add_argument("--deadline", type=float, default=450.0, help="seconds from start: the drain stops here")
    p.add_argument("--encoder", choices=["auto", "cuda", "cpu"], default="auto", help="as WORKER_ENCODER")
    p.add_argument("--out", type=Path, help="default: bench/results/gpu_check-<host>.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_wall, deadline = time.perf_counter(), time.monotonic() + args.deadline
    record: dict[str, Any] = {
        "command": [sys.executable, "-m", "bench.gpu_check", *(sys.argv[1:] if argv is None else argv)],
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    out = args.out or RESULTS / f"gpu_check-{record['machine']['host']}.json"
    encoder_dir = args.encoder_dir or args.models / "encoder"
    record["packages"], missing = preflight(args.models, encoder_dir, args.texts_file)
    record["missing"] = missing
    for line in missing:
        say(f"MISSING: {line}")

    def save() -> None:
        record["seconds"] = time.perf_counter() - started_wall
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")

    needed = [encoder_dir / "model.int8.onnx", encoder_dir / "tokenizer.json"]
    if version_of("tokenizers") is None or not all(p.is_file() for p in needed):
        record["headline"] = "gpu_check could not run: " + "; ".join(missing)
        save()
        print(record["headline"])
        return 2

    from topicserve.encoder import Encoder
    from topicserve.heads import Head
    from topicserve.settings import Settings
    from topicserve_worker.accelerator import CPU, select_encoder
    from topicserve_worker.worker import GPU_ENCODE_BATCH_SIZE

    texts = real_texts(args.texts_file)
    say(f"{len(texts)} real texts; selecting the worker's encoder (WORKER_ENCODER={args.encoder})")
    selected = select_encoder(encoder_dir, args.encoder)
    choice = selected.choice
    record["selection"] = choice.as_dict()
    say(f"encoder: {choice.provider} {choice.precision} ({choice.reason})")

    def cpu_encoder(name: str) -> Encoder:
        return Encoder(encoder_dir / name, encoder_dir / "tokenizer.json", providers=[CPU])

    int8 = selected.encoder if not choice.on_gpu else cpu_encoder("model.int8.onnx")
    variants = {"cpu-int8": int8, **({"cuda-fp16": selected.encoder} if choice.on_gpu else {})}
    ids = [t.ids for t in int8.tokenize(texts[: args.pool])]
    say(f"speed: {', '.join(variants)} at sub-batches {SIZES} on {len(ids)} texts")
    record["speed"] = measure_speed(variants, ids, SIZES, args.rounds, args.speed_budget)
    served = str(Settings().encode_batch_size)
    record["speed"]["as_the_worker_runs"] = {
        "cpu-int8": {
            "sub_batch": served,
            "texts_per_second": record["speed"]["texts_per_second_median"]["cpu-int8"].get(served),
        },
    }
    if choice.on_gpu:
        gpu = str(GPU_ENCODE_BATCH_SIZE)
        record["speed"]["as_the_worker_runs"]["cuda-fp16"] = {
            "sub_batch": gpu,
            "texts_per_second": record["speed"]["texts_per_second_median"]["cuda-fp16"][gpu],
        }
    if not choice.on_gpu:
        record["speed"]["cuda-fp16"] = f"not run: {choice.reason}"

    heads: dict[str, Head] = {}
    if (args.models / "manifest.json").is_file():
        manifest = json.loads((args.models / "manifest.json").read_text())
        record["models"] = {
            "quick": manifest.get("quick"),
            "encoders": {v: e.get("sha256") for v, e in manifest.get("encoder", {}).items()},
            "heads": {h: e.get("sha256") for h, e in manifest.get("heads", {}).items()},
        }
        heads = {
            name: Head(REPO / entry["path"], name=name, version="gpu-check", labels=manifest["labels"])
            for name, entry in manifest["heads"].items()
        }
    if (encoder_dir / "model.fp32.onnx").is_file() and (encoder_dir / "model.fp16.onnx").is_file():
        fp16 = selected.encoder if choice.on_gpu else cpu_encoder("model.fp16.onnx")
        fid_texts = texts[-args.fidelity_texts :]  # the other end of the seeded order from the speed pool
        say(f"fidelity: fp16 on {fp16.providers[0]} vs fp32 on {len(fid_texts)} texts")
        record["fidelity"] = measure_fidelity(
            cpu_encoder("model.fp32.onnx"),
            fp16,
            int8,
            heads,
            fid_texts,
            fp16_batch=GPU_ENCODE_BATCH_SIZE,
            int8_batch=Settings().encode_batch_size,
        )
        if not choice.on_gpu:
            record["fidelity"]["note"] = (
                "no GPU: the fp16 file ran on the CPU EP (fp16 weights, fp32 arithmetic)"
            )
    else:
        record["fidelity"] = {"ok": None, "skipped": "model.fp32.onnx or model.fp16.onnx missing"}

    if heads:
        kind = args.backend
        if kind == "auto":
            kind = "moto-results" if version_of("moto") and version_of("boto3") else "memory"
        record["drain"] = drain(kind, selected.encoder, choice, heads, cycled(texts, args.texts), deadline)
    else:
        record["drain"] = {"skipped": "no manifest, so no heads"}
    record["headline"] = headline(record)
    save()
    print(record["headline"])
    print(f"raw results: {os.path.relpath(out, REPO)}")
    return 0 if record["fidelity"]["ok"] is not False else 1


def headline(r: dict[str, Any]) -> str:
    sel, speed, fid, dr = r["selection"], r["speed"], r["fidelity"], r["drain"]
    rates = speed["texts_per_second_median"]
    lines = [
        f"gpu_check on {r['machine']['host']} ({r['machine']['gpu'] or 'no NVIDIA GPU visible'}): "
        f"the worker's encoder runs on {sel['provider']} ({sel['precision']})"
        + ("" if sel["on_gpu"] else f"; CPU fallback: {sel['reason']}"),
        f"  encoder texts/s, median of {speed['rounds']} rounds on {speed['pool_texts']} texts, sub-batch "
        + "/".join(map(str, SIZES))
        + ": "
        + "; ".join(f"{n} " + "/".join(f"{v:.0f}" for v in per.values()) for n, per in rates.items()),
    ]
    if "speedup_cuda_fp16_over_cpu_int8" in speed:
        lines.append(
            "  cuda-fp16 / cpu-int8 at the same sub-batch: "
            + "/".join(f"{v:.1f}x" for v in speed["speedup_cuda_fp16_over_cpu_int8"].values())
        )
    runs = speed["as_the_worker_runs"]
    line = "  as the worker runs them: " + "; ".join(
        f"{n} at sub-batch {w['sub_batch']}: {w['texts_per_second']:.0f} texts/s"
        for n, w in runs.items()
        if w["texts_per_second"] is not None
    )
    if len(runs) == 2 and all(w["texts_per_second"] for w in runs.values()):
        line += f" ({runs['cuda-fp16']['texts_per_second'] / runs['cpu-int8']['texts_per_second']:.1f}x)"
    lines.append(line)
    if "fp16_vs_fp32" in fid:
        f16 = fid["fp16_vs_fp32"]
        lines.append(
            f"  fp16 vs fp32 on {fid['fp16_provider']} (n={fid['n']}): cos mean {f16['cos_mean']:.6f} min "
            f"{f16['cos_min']:.6f}: {'OK' if fid['ok'] else 'BELOW'} (goal {COS_MEAN_GOAL})\n"
            "  head labels on fp16 = on int8 (fp32 = int8, fp16 = fp32): "
            + ", ".join(
                f"{h} {a:.3f} ({fid['head_label_agreement_fp32_vs_int8'][h]:.3f}, "
                f"{fid['head_label_agreement_fp16_vs_fp32'][h]:.3f})"
                for h, a in fid["head_label_agreement_fp16_vs_int8"].items()
            )
        )
    else:
        lines.append(f"  fidelity: {fid['skipped']}")
    if "answered" in dr:
        lines.append(
            f"  worker drain ({dr['backend']}): {dr['answered']}/{dr['requests']} answered in "
            f"{dr['drain_seconds']:.1f} s = {dr['texts_per_second']:.0f} texts/s (encoder "
            f"{dr['encode_seconds']:.1f} s, heads {dr['heads_seconds']:.1f} s, "
            f"sub-batch {dr['encode_batch_size']})"
            + (" [stopped at the deadline]" if dr["stopped_at_deadline"] else "")
        )
    else:
        lines.append(f"  worker drain: {dr['skipped']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
