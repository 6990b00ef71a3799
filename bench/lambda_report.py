"""Lambda's REPORT line (Init Duration, Duration, Billed Duration, Memory Size, Max Memory Used), from a
synchronous invoke's tail log or from the function's log group.

Shared by the benchmarks and the end-to-end tests (tests/e2e/localcloud/conftest.py); stdlib only.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any


def parse_report(line: str) -> dict[str, float | None]:
    """The figures of one REPORT line (None for those it lacks: Init Duration is only on a cold start)."""

    def field(name: str) -> float | None:
        match = re.search(rf"(?:^|\t){name}: ([\d.]+) (?:ms|MB)", line)
        return float(match.group(1)) if match else None

    return {
        "duration_ms": field("Duration"),
        "billed_ms": field("Billed Duration"),
        "memory_size_mb": field("Memory Size"),
        "max_memory_mb": field("Max Memory Used"),
        "init_ms": field("Init Duration"),
    }


class Invocation:
    """A synchronous invoke's outcome, with the REPORT line of its tail log parsed."""

    def __init__(self, response: Mapping[str, Any], wall_ms: float | None = None) -> None:
        self.status = response["StatusCode"]
        self.function_error = response.get("FunctionError")
        self.payload = json.loads(response["Payload"].read() or b"null")
        self.log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
        match = re.search(r"^REPORT RequestId: .*$", self.log, re.MULTILINE)
        self.report = match.group(0) if match else ""
        self.wall_ms = wall_ms

    @property
    def init_duration_ms(self) -> float | None:
        match = re.search(r"Init Duration: ([\d.]+) ms", self.report)
        return float(match.group(1)) if match else None

    @property
    def duration_ms(self) -> float:
        match = re.search(r"\tDuration: ([\d.]+) ms", self.report)
        assert match, self.log
        return float(match.group(1))

    @property
    def max_memory_mb(self) -> float | None:
        return parse_report(self.report)["max_memory_mb"]

    @property
    def billed_ms(self) -> float | None:
        return parse_report(self.report)["billed_ms"]
