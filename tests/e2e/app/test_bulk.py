"""The whole 20 Newsgroups test set through ``POST /v1/batches``, as a user with real documents sends it.

7,532 documents in 1,000-request submissions, empty and very long ones included: no submission may be
refused, every document gets a result (ok, or an error for the empty ones), read back through the
paginated ``GET /v1/batches/{id}``, and the served accuracy over the ok results is printed beside the
manifest's offline figure. BULK_DOCUMENTS limits the count (default: the whole test set).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.app.test_app import MODELS
from topicserve_ops.client import Client

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]
PAGE = 250


def read_pages(client: Client, batch_id: str) -> tuple[list[dict[str, Any]], int]:
    results: list[dict[str, Any]] = []
    status, page = client.results(batch_id, limit=PAGE)
    pages = 1
    while True:
        assert status == 200, page
        assert len(page["results"]) <= PAGE
        results += page["results"]
        if not page["next"]:
            return results, pages
        status, page = client.results(batch_id, limit=PAGE, next_token=page["next"])
        pages += 1


def test_the_whole_test_set_is_answered(app_stack: dict[str, Any]) -> None:
    from training.data import load

    data = load(Path(os.environ.get("DATA_HOME", REPO.parent / "shared" / "data")), quick=False)
    n = int(os.environ.get("BULK_DOCUMENTS", len(data.test.texts)))
    texts, truth = data.test.texts[:n], [data.labels[y] for y in data.test.y[:n]]
    client = Client(app_stack, timeout=120)
    started = time.monotonic()
    answers = client.submit_batches([{"id": str(i), "text": t} for i, t in enumerate(texts)], size=1_000)
    assert all(a["status"] == 202 for a in answers), [a for a in answers if a["status"] != 202][:1]
    rejected = [r for a in answers for r in a["rejected"]]
    assert sum(a["count"] for a in answers) == n
    print(
        f"\n{n} documents in {len(answers)} submissions: {sum(a['queued'] for a in answers)} queued, "
        f"{len(rejected)} rejected ({sorted({r['error']['type'] for r in rejected})})"
    )

    deadline = time.monotonic() + float(os.environ.get("BULK_TIMEOUT", "1500"))
    pending = {a["batch_id"] for a in answers}
    while pending and time.monotonic() < deadline:
        for batch_id in list(pending):
            status, page = client.results(batch_id, limit=1)
            if status == 200 and page["status"] == "complete":
                pending.discard(batch_id)
        time.sleep(5)
    assert not pending, f"{len(pending)} submissions incomplete after the timeout"
    elapsed = time.monotonic() - started

    by_id: dict[str, dict[str, Any]] = {}
    pages = 0
    for answer in answers:
        results, count = read_pages(client, answer["batch_id"])
        pages += count
        for r in results:
            assert r["request_id"] not in by_id, "a document answered twice"
            by_id[r["request_id"]] = r
    assert set(by_id) == {str(i) for i in range(n)}
    ok = {int(i): r for i, r in by_id.items() if r["status"] == "ok"}
    errors = {int(i): r for i, r in by_id.items() if r["status"] == "error"}
    assert all(not texts[i].strip() for i in errors), "only documents with nothing to read may fail"
    manifest = json.loads((REPO / "build" / "models" / "manifest.json").read_text())
    print(
        f"{len(ok)} ok + {len(errors)} error results read in {pages} pages, {elapsed:.0f} s end to end; "
        f"{sum(r['truncated'] for r in ok.values())} documents longer than the encoder reads"
    )
    for model in MODELS:
        served = sum(r["models"][model]["label"] == truth[i] for i, r in ok.items()) / len(ok)
        offline = manifest["heads"][model]["metrics"]["accuracy"]
        print(f"  {model:6s} served accuracy {served:.4f} (ok results)   manifest {offline:.4f}")
        assert abs(served - offline) < 0.05, (model, served, offline)
