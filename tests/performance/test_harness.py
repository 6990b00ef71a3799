"""The benchmark harness itself (bench/): its statistics, arrival processes, REPORT-line parsing, result
files and goal verdicts. Performance *targets* are measured by ``make bench``, interleaved and on the
machine of the day, never asserted by timed tests here; these tests make sure the numbers the
benchmarks report are computed right.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import common
from bench.cloud.arrivals import bursty_trace, poisson
from bench.lambda_report import Invocation
from bench.report.figures import held_up_to


def test_summary_reports_percentiles_and_keeps_empty_samples_visible() -> None:
    s = common.summary(list(range(1, 101)))
    assert s["n"] == 100 and s["p50"] == pytest.approx(50.5) and s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5)
    assert common.summary([]) == {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None}


def test_ratio_never_divides_by_nothing() -> None:
    assert common.ratio(3.0, 2.0) == 1.5
    assert (
        common.ratio(None, 2.0) is None and common.ratio(1.0, 0) is None and common.ratio(1.0, None) is None
    )


@pytest.mark.parametrize("rate", [0.5, 5.0, 50.0])
def test_poisson_arrivals_have_the_asked_rate(rate: float) -> None:
    duration = 2_000 / rate  # ~2,000 arrivals
    times = poisson(rate, duration, seed=7)
    assert times == sorted(times) and all(0 <= t < duration for t in times)
    assert abs(len(times) / duration - rate) / rate < 0.1
    assert poisson(rate, duration, seed=7) == times  # reproducible: the same seed, the same trace


def test_bursty_trace_has_idle_gaps_beyond_the_keepalive() -> None:
    keepalive = 10.0
    times = bursty_trace(3_600, keepalive, seed=3)
    gaps = np.diff(times)
    assert times == sorted(times)
    assert (gaps > keepalive).mean() > 0.2  # the cold starts the warmer benchmark is about
    assert np.std(gaps) / np.mean(gaps) > 1  # heavy-tailed, as in the Azure Functions trace


def invocation(log: str, status: int = 200) -> Invocation:
    return Invocation(
        {
            "StatusCode": status,
            "Payload": io.BytesIO(b'{"ok": true}'),
            "LogResult": base64.b64encode(log.encode()).decode(),
        }
    )


def test_report_lines_are_parsed() -> None:
    cold = invocation(
        "START RequestId: 1\nREPORT RequestId: 1\tDuration: 12.50 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 2048 MB\tMax Memory Used: 180 MB\tInit Duration: 642.31 ms\n"
    )
    assert (cold.init_duration_ms, cold.duration_ms, cold.max_memory_mb) == (642.31, 12.5, 180.0)
    warm = invocation(
        "REPORT RequestId: 2\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMax Memory Used: 181 MB\n"
    )
    assert warm.init_duration_ms is None and warm.duration_ms == 3.0 and warm.payload == {"ok": True}


def test_held_load_stops_at_the_first_point_that_breaks_the_slo() -> None:
    def point(fraction: float, p99: float | None, unfinished: float = 0.0) -> dict[str, Any]:
        return {"fraction": fraction, "latency_ms": {"p99": p99}, "error_rate": unfinished}

    points = [point(0.1, 900), point(0.5, 2_000), point(0.85, 4_900), point(1.0, 7_000), point(1.2, 3_000)]
    assert held_up_to(points, 5_000) == 0.85  # 1.2 is back under the SLO, but 1.0 broke it first
    assert held_up_to([point(0.1, 900, unfinished=0.02)], 5_000) == 0.0
    assert held_up_to([point(0.1, None)], 5_000) == 0.0


def test_results_keep_the_command_the_machine_and_numpy_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    path = common.save(
        "probe", {"x": np.float32(1.5), "v": np.arange(3), "nan": math.inf}, "make bench-probe"
    )
    data = json.loads(path.read_text())
    assert data["command"] == "make bench-probe" and data["name"] == "probe"
    assert data["x"] == 1.5 and data["v"] == [0, 1, 2]
    assert {"cores", "loadavg_at_start", "git", "utc"} <= set(data["machine"])


def test_the_committed_report_is_what_the_code_writes_from_the_committed_results(tmp_path: Path) -> None:
    """bench/REPORT.md is written, never edited: regenerated now from the raw results it names, by the
    report code as it stands, it comes out the same, so its figures are the results' and its words the
    code's (a change to either without regenerating the report fails here)."""
    from bench import report

    committed = report.REPORT.read_text()
    found = re.search(r"from \[`results/([\w.-]+)\.json`\]", committed)
    assert found, "REPORT.md does not name the results it was made from"
    results = tmp_path / "results"
    shutil.copytree(common.RESULTS, results)  # the report also writes its plots and summary there
    report.write(found.group(1), results=results, report=tmp_path / "REPORT.md")
    assert (tmp_path / "REPORT.md").read_text() == committed


def test_pooled_runs_sum_their_bills_and_join_their_batches_and_waits() -> None:
    from bench.cloud.sqs_path import pooled

    def run(batch_id: str, billed: float, waits: list[int], texts: int) -> dict[str, Any]:
        bill = {"invocations": 2, "billed_ms": billed, "init_ms": 0.0, "cold_starts": 0, "log_bytes": 100}
        return {
            "batch_id": batch_id,
            "texts": texts,
            "completed": texts,
            "message_bytes": [10] * texts,
            "latencies_ms": waits,
            "batcher_time": {"bill": bill | {"memory_mb": 1769.0}, "batches": [{"texts": texts}]},
        }

    p = pooled([run("a", 300.0, [1, 2, 3], 3), run("b", 500.0, [4, 5], 2)])
    assert p["batch_ids"] == ["a", "b"] and p["texts"] == p["completed"] == 5
    assert p["bill"]["billed_ms"] == 800.0 and p["bill"]["invocations"] == 4 and p["bill"]["log_bytes"] == 200
    assert p["bill"]["memory_mb"] == 1769.0 and p["bill"]["billed_ms_per_invocation"]["p50"] == 200.0
    assert p["latency_ms"]["n"] == 5 and p["latency_ms"]["p50"] == 3
    assert len(p["message_bytes"]) == 5 and p["batches"] == [{"texts": 3}, {"texts": 2}]
