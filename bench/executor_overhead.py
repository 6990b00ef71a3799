"""Measure the local-process executor: cold start vs warm invoke, interleaved, against a running local cloud.

    python3 -m infra.localstack.localcloud up
    .venv/bin/python -m bench.executor_overhead [--rounds 7] [--warm 5] [--out results.json]

Each round forces a cold start (a configuration update makes LocalStack replace the environment), then
invokes the warm environment a few times; cold and warm samples thus alternate in one run, so machine
drift hits both alike. Reported per kind: client round trip (boto3 -> LocalStack -> init -> awslambdaric
-> back), the REPORT line's Duration / Init Duration, and round trip minus Duration (platform overhead:
LocalStack's invoke path plus the executor's).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
import uuid
import zipfile
from typing import TYPE_CHECKING, Literal, TypedDict

from bench.lambda_report import Invocation
from infra.localstack.localcloud.clients import client
from topicserve_ops.lambda_config import update_environment

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_lambda import LambdaClient

HANDLER = "def handler(event, context):\n    return {'ok': True}\n"


class Sample(TypedDict):
    """One invocation: round trip as the client saw it, and the REPORT line's duration and init."""

    rtt_ms: float
    duration_ms: float | None
    init_ms: float | None


def _invoke(lam: LambdaClient, name: str) -> Sample:
    t0 = time.perf_counter()
    inv = Invocation(lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail"))
    rtt = (time.perf_counter() - t0) * 1000
    return {"rtt_ms": rtt, "duration_ms": inv.duration_ms, "init_ms": inv.init_duration_ms}


def _summary(samples: list[Sample]) -> dict[str, float]:
    def med(key: Literal["rtt_ms", "duration_ms", "init_ms"]) -> float:
        values = [value for s in samples if (value := s[key]) is not None]
        return round(statistics.median(values), 2) if values else float("nan")

    # an invocation without a REPORT line (no duration) has no overhead to measure
    overhead = [s["rtt_ms"] - duration for s in samples if (duration := s["duration_ms"]) is not None]
    return {
        "n": len(samples),
        "rtt_ms_median": med("rtt_ms"),
        "duration_ms_median": med("duration_ms"),
        "init_ms_median": med("init_ms"),
        "overhead_ms_median": round(statistics.median(overhead), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--runtime", default="python3.13")
    parser.add_argument("--out")
    args = parser.parse_args()
    lam = client("lambda")
    name = f"measure-executor-{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", HANDLER)
    lam.create_function(
        FunctionName=name,
        Runtime=args.runtime,
        Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/measure",
        Code={"ZipFile": buf.getvalue()},
        Timeout=10,
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    cold: list[Sample] = []
    warm: list[Sample] = []
    try:
        for i in range(args.rounds):
            update_environment(lam, name, {"ROUND": str(i)})
            cold.append(_invoke(lam, name))
            warm.extend(_invoke(lam, name) for _ in range(args.warm))
    finally:
        lam.delete_function(FunctionName=name)
    result = {
        "runtime": args.runtime,
        "rounds": args.rounds,
        "cold": _summary(cold),
        "warm": _summary(warm),
        "raw": {"cold": cold, "warm": warm},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
