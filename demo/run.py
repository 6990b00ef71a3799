"""The end-to-end demo against a deployed stack (``make demo`` runs it after ``make deploy``).

1. one HTTP prediction per model through API Gateway (with the API key; the first call to each function is
   its cold start);
2. an SQS submission of 200 20 Newsgroups test texts (with some repeated), their results and accuracy;
3. the same submission again, now served from the caches;
4. cold versus warm latency of the synchronous path;
5. the drift monitor's view of that traffic;
6. the same predict code as a container-image function (``make images``), beside its zip twin.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from topicserve.catalogue import MODEL_NAMES
from topicserve.monitoring.capture import window_start
from topicserve.requests import QueuedRequest, new_batch_id
from topicserve.text import normalise
from topicserve_ops.client import Client, drift_table

MODELS = MODEL_NAMES
REPO = Path(__file__).resolve().parents[1]


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 90 - len(title)), flush=True)


def test_texts(n: int = 200, repeats: int = 20) -> tuple[list[str], list[str], list[str]]:
    """n texts: n - repeats distinct 20NG test documents, then `repeats` of them again (duplicates)."""
    from sklearn.datasets import fetch_20newsgroups

    data_home = os.environ.get("DATA_HOME", str(REPO.parent / "shared" / "data"))
    test = fetch_20newsgroups(
        data_home=data_home, subset="test", remove=("headers", "footers", "quotes"), download_if_missing=False
    )
    picked = [i for i, t in enumerate(test.data) if 40 <= len(normalise(t)) <= 4000][: n - repeats]
    picked += picked[:repeats]
    texts = [test.data[i] for i in picked]
    labels = [test.target_names[test.target[i]] for i in picked]
    return texts, labels, list(test.target_names)


def renew_environments(function_names: list[str]) -> None:
    """Retire the functions' warm environments (infra/deploy.py does the same after a promotion)."""
    import boto3

    from topicserve_ops.lambda_config import renew_environments as renew

    renew(boto3.client("lambda"), function_names)


def timed_predict(client: Client, model: str, text: str) -> tuple[float, int, Any]:
    started = time.perf_counter()
    status, body = client.predict(model, [text])
    return (time.perf_counter() - started) * 1000, status, body


def submit_and_wait(client: Client, texts: list[str], timeout: float = 600) -> tuple[dict[str, Any], float]:
    batch_id = new_batch_id()
    requests = [QueuedRequest(batch_id, str(i), t, list(MODELS)) for i, t in enumerate(texts)]
    started = time.perf_counter()
    calls = client.submit(requests)
    print(f"sent {len(requests)} messages to SQS in {calls} SendMessageBatch calls (batch {batch_id})")
    last = -1
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = client.results(batch_id, limit=1)
        done = body.get("completed", 0) if status == 200 else 0
        if done != last:
            print(
                f"  {done:4d}/{len(requests)} results after {time.perf_counter() - started:5.1f} s",
                flush=True,
            )
            last = done
        if done >= len(requests):
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    return client.all_results(batch_id)[1], elapsed


def report(body: dict[str, Any], labels: list[str]) -> None:
    results = {r["request_id"]: r for r in body.get("results", [])}
    ok = [results.get(str(i)) for i in range(len(labels))]
    errors = sum(1 for r in ok if r is None or r["status"] != "ok")
    print(f"results: {len(results)} / {len(labels)} ({errors} errors or missing)")
    for model in MODELS:
        answered = [(r["models"][model], labels[i]) for i, r in enumerate(ok) if r and r["status"] == "ok"]
        correct = sum(p["label"] == truth for p, truth in answered)
        hits = sum(p["cached"]["prediction"] for p, _ in answered)
        emb = sum(p["cached"]["embedding"] for p, _ in answered)
        print(
            f"  {model:8s} accuracy {correct / max(1, len(answered)):.3f}  "
            f"prediction-cache hits {hits:3d}/{len(answered)}  embedding reused {emb:3d}/{len(answered)}"
        )


def image_demo(client: Client, image_fn: str, texts: list[str]) -> None:
    """Invoke the image function and the zip function with the same API Gateway event, cold, and show
    that they agree and what Lambda's REPORT line says of each."""
    import base64
    import re

    lam = client.aws("lambda")
    zip_fn = client.stack["functions"]["predict"]["logreg"]
    renew_environments([image_fn, zip_fn])
    event = {"httpMethod": "POST", "path": "/v1/predict/logreg", "body": json.dumps({"texts": texts})}
    answers = {}
    for kind, name in (("image", image_fn), ("zip", zip_fn)):
        response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
        body = json.loads(json.loads(response["Payload"].read())["body"])
        answers[kind] = [p["label"] for p in body["predictions"]]
        log = base64.b64decode(response["LogResult"]).decode(errors="replace")
        report = re.search(r"REPORT .*", log)
        line = report.group(0) if report else ""
        fields = re.findall(r"(Init Duration|Billed Duration|Duration|Max Memory Used): ([\d.]+ \w+)", line)
        print(f"  {kind:5s} {', '.join(f'{k} {v}' for k, v in fields)}")
    same = answers["image"] == answers["zip"]
    print(f"  labels of {len(texts)} texts: {'identical' if same else 'DIFFERENT'}: {answers['image']}")


def main() -> int:
    stack_path = Path(os.environ.get("STACK_JSON", REPO / "build" / "stack.json"))
    client = Client.from_file(stack_path)
    print(f"stack {client.stack['stack_name']} at {client.stack['api_url']}")
    manifest = REPO / "build" / "models" / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("quick"):
        print("models: the QUICK build (1,500 training texts); `make demo DEMO_MODELS=full` serves all")
    texts, labels, _ = test_texts()

    section("1. one HTTP prediction per model (POST /v1/predict/{model}, x-api-key)")
    print("(each predict function's environments are renewed first, so each first call is a cold start)")
    renew_environments(list(client.stack["functions"]["predict"].values()))
    cold: dict[str, float] = {}
    for i, model in enumerate(MODELS):
        ms, status, body = timed_predict(client, model, texts[i])
        cold[model] = ms
        if status != 200:
            print(f"  {model}: HTTP {status} {body}")
            return 1
        p = body["predictions"][0]
        top = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in p["top"])
        print(f"  {model:8s} v{body['model_version']}: {p['label']:26s} (truth {labels[i]})")
        print(f"          top-3: {top}  [{ms:.0f} ms]")
    status, _ = client.call("GET", "/v1/health", api_key="")
    print(f"  without the API key: HTTP {status}")

    window = window_start(time.time(), int(client.stack.get("monitor_window_seconds", 300)))
    section("2. SQS submission of 200 20NG test texts (20 of them repeated)")
    first, seconds = submit_and_wait(client, texts)
    print(f"completed in {seconds:.1f} s")
    report(first, labels)

    section("3. the same 200 texts again: served from the caches")
    second, seconds2 = submit_and_wait(client, texts)
    print(f"completed in {seconds2:.1f} s (first pass {seconds:.1f} s)")
    report(second, labels)

    section("4. cold vs warm latency (synchronous path)")
    warm: dict[str, list[float]] = {m: [] for m in MODELS}
    for j in range(5):
        for model in MODELS:
            warm[model].append(timed_predict(client, model, texts[100 + j])[0])
    for model in MODELS:
        median = statistics.median(warm[model])
        print(f"  {model:8s} cold start {cold[model]:7.0f} ms   warm median {median:6.0f} ms")

    section("5. monitoring: the window of the SQS traffic above, against the training reference")
    drift = client.monitor(window)  # as far as the functions have written it (the batcher: every batch)
    print(drift_table(drift))
    png = client.download(drift["report"]["png"], REPO / "build" / "demo-drift.png")
    print(f"  report {drift['report']['json']}; PNG saved to {png.relative_to(REPO)}")
    print("  (the embedding test needs >= 50 sampled embeddings: MonitorEmbeddingSample keeps 5 % of texts)")

    section("6. the same predict code as a container image (PackageType Image, build/images/topicserve-cpu)")
    image_fn = client.stack.get("image_function")
    if image_fn:
        image_demo(client, image_fn, texts[150:155])
    else:
        print("  no image function in this stack (`make images`, then `make deploy`)")

    counts = Counter(r["status"] for r in second.get("results", []))
    print(f"\nsecond pass statuses: {dict(counts)}")
    print("\nThe local cloud is still running: `make down` stops it (by PID, children included).")
    summary = {
        "cold_ms": cold,
        "warm_ms": warm,
        "sqs_seconds": [seconds, seconds2],
        "drift": {"window": drift["window"], "drift": drift["drift"], "summary": drift["summary"]},
    }
    (REPO / "build" / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
