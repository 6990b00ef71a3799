"""Fuzz the deployed API with schemathesis, from the published OpenAPI description (docs/openapi.yaml).

Positive cases (valid by the schema) and negative ones (schemathesis breaks the schema on purpose: wrong
types, missing fields, bad path parameters, no API key) go over real HTTP through LocalStack's API Gateway
to the real functions. The properties: no 5xx at all, every non-2xx carries a clear message, and no
execution environment crashed (no Runtime.ExitError / timeout in any function's REPORT lines).

FUZZ_REQUESTS (default 1000) sets how many requests are generated in all.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.e2e.conftest import LocalCloud
from tests.e2e.reliability.conftest import crashes
from topicserve.warming import warm_event

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]


def stack_functions(stack: dict[str, Any]) -> list[str]:
    functions = stack["functions"]
    return [*functions["predict"].values(), functions["batcher"]] + (
        [functions["api"]] if "api" in functions else []
    )


def run_each_function_once(stack: dict[str, Any], client: Any, localcloud: LocalCloud) -> None:
    """One invocation of every function the crash scan reads, so that each has run in the scanned window
    (its log group exists and holds a REPORT line) whichever routes the generated requests reach: the
    predict functions and the batcher answer a warm-up event, the api function a read of a batch that
    does not exist."""
    lam = localcloud.client("lambda")
    functions = stack["functions"]
    for function in [*functions["predict"].values(), functions["batcher"]]:
        answer = lam.invoke(FunctionName=function, Payload=json.dumps(warm_event(1, 1)))
        assert "FunctionError" not in answer, f"{function}: {answer['Payload'].read()[:300]!r}"
    if "api" in functions:
        status, body = client.results(f"crash-scan-probe-{time.time_ns()}")
        assert status < 500, (status, body)


def test_fuzzed_requests_never_get_a_5xx(
    rel_stack: dict[str, Any], rel_client: Any, localcloud: LocalCloud
) -> None:
    import requests
    import schemathesis

    total = int(os.environ.get("FUZZ_REQUESTS", "1000"))
    schema = schemathesis.openapi.from_path(REPO / "docs" / "openapi.yaml")
    operations = [result.ok() for result in schema.get_all_operations()]
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    per_run = math.ceil(total / (len(operations) * len(modes)))
    session = requests.Session()
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    unclear: list[str] = []
    since_ms = int(time.time() * 1000) - 1000
    started = time.monotonic()
    run_each_function_once(rel_stack, rel_client, localcloud)

    for operation in operations:
        for mode in modes:

            @settings(
                max_examples=per_run,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected, not raised
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                headers = {"x-api-key": rel_stack["api_key"]}
                response = case.call(
                    base_url=rel_stack["api_url"], session=session, headers=headers, timeout=120
                )
                statuses[response.status_code] += 1
                status, sent = response.status_code, str(case.body)[:300]
                what = f"{case.method} {case.formatted_path} {sent!r} -> {status}: {response.text[:200]}"
                if response.status_code >= 500:
                    server_errors.append(what)
                elif response.status_code >= 400 and response.status_code not in (403, 429):
                    body = response.json() if response.text.startswith("{") else {}
                    if not body.get("error", {}).get("message"):
                        unclear.append(what)

            run()

    elapsed = time.monotonic() - started
    sent = sum(statuses.values())
    print(f"\nfuzz: {sent} requests in {elapsed:.0f} s, statuses {dict(sorted(statuses.items()))}")
    time.sleep(2)  # the last REPORT lines reach CloudWatch Logs
    crashed = crashes(localcloud, stack_functions(rel_stack), since_ms)
    assert sent >= total, f"only {sent} requests generated"
    assert not server_errors, f"{len(server_errors)} 5xx:\n" + "\n".join(server_errors[:20])
    assert not unclear, "4xx without a message:\n" + "\n".join(unclear[:20])
    assert not crashed, "crashed environments:\n" + "\n".join(crashed[:20])
