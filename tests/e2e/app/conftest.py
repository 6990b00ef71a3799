"""The real application stack (template.yaml) deployed into the local cloud the way `make deploy` does it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalCloud, delete_stack

REPO = Path(__file__).resolve().parents[3]
STACK_NAME = "topicserve-e2e"
ROUTING_TTL_SECONDS = 2
MONITOR_WINDOW_SECONDS = 30


def labelled_texts(n: int) -> dict[str, str]:
    """``n`` distinct 20NG test documents (their first 400 characters, to keep the encoder cheap) and
    their true labels, in the dataset's order (label feedback: test_rollout.py, test_feedback.py)."""
    from topicserve.text import normalise
    from training import data as data_mod
    from training.common import Settings

    ds = data_mod.load(Settings.from_env().data_home, quick=False)
    seen: dict[str, str] = {}
    for text, y in zip(ds.test.texts, ds.test.y, strict=True):
        cut = normalise(text)[:400].strip()
        if len(cut.split()) >= 5:
            seen.setdefault(cut, ds.labels[int(y)])
        if len(seen) == n:
            break
    return seen


def deploy_app(
    localcloud: LocalCloud, stack_name: str, params: dict[str, str], output: Path
) -> Iterator[dict[str, Any]]:
    """Deploy template.yaml as ``stack_name`` with infra/deploy.py, yield build/stack.json's content, and
    delete the stack afterwards, even when the deploy or the tests fail."""
    command = [sys.executable, "-m", "infra.deploy", "--stack-name", stack_name, "--output", str(output)]
    for key, value in params.items():
        command += ["--param", f"{key}={value}"]
    try:
        proc = subprocess.run(
            command, cwd=REPO, env=localcloud.env(), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            pytest.fail(f"deploy failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}", pytrace=False)
        yield json.loads(output.read_text())
    finally:
        delete_stack(localcloud, stack_name)


@pytest.fixture(scope="session")
def app_stack(localcloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Deploy with infra/deploy.py (sam build + sam deploy + model registration), delete at the end.

    Warmer schedules are off here so that cold and warm starts are what each test makes them; the warmer
    function itself is deployed and tests invoke it directly (the gate function likewise).
    """
    output = tmp_path_factory.mktemp("stack") / "stack.json"
    params = {
        "WarmerEnabled": "false",
        "BatchSize": "100",
        "BatchingWindowSeconds": "1",
        # rollout tests (test_rollout.py): a short routing TTL, records written at every invocation, and the
        # gate only when a test invokes it (a scheduled run could promote a canary in the middle of a test)
        "RoutingTtlSeconds": str(ROUTING_TTL_SECONDS),
        "RolloutFlushSeconds": "0",
        "GateEnabled": "false",
        # the sequential gate (docs/ROLLOUT.md) with test_rollout.py's few hundred texts: an unlabelled
        # candidate is promoted once its disagreement's upper bound is <= 0.25 (the C=3 canary disagrees
        # on ~6 %: bound ~0.11-0.13 after its ~300-450 compared texts) and its error rate's is < 0.05
        # (~200 clean attempts); the broken canary is rolled back on the labels that test feeds back
        "GateMinEffect": "0.25",
        "GateMaxErrorRate": "0.05",
        # label feedback (test_feedback.py, test_rollout.py): every served text's answers in the ledger
        "FeedbackLedgerSample": "1.0",
        # monitoring tests (test_monitoring.py): short windows, every served embedding kept, sums written at
        # every invocation, the monitor only when a test invokes it
        "MonitorWindowSeconds": str(MONITOR_WINDOW_SECONDS),
        "MonitorEmbeddingSample": "1.0",
        "MonitorFlushSeconds": "0",
        "MonitorEnabled": "false",
        # the bulk worker test (test_worker.py): a bulk queue, used only by submissions that ask for it (the
        # 1,000-item submissions of test_bulk.py stay on the batcher)
        "BulkQueueEnabled": "true",
        "BulkThresholdTexts": "1001",
        # the function URL front door beside the REST API (test_function_url.py)
        "FunctionUrls": "iam",
    }
    yield from deploy_app(localcloud, STACK_NAME, params, output)
