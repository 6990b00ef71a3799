"""What AWS writes for an invocation: the START / END / REPORT log lines and the error payloads of a
runtime that exited or timed out."""

from __future__ import annotations

import datetime
import json
import math
import signal
from dataclasses import dataclass


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def exit_error(request_id: str, code: int | None) -> bytes:
    """The result of an invocation whose runtime process died (os._exit, segfault, OOM kill)."""
    how = f"signal: {signal.Signals(-code).name.lower()}" if code and code < 0 else f"exit status {code}"
    return json.dumps(
        {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {how}",
        }
    ).encode()


def timed_out(request_id: str, timeout_s: float, during: str) -> tuple[str, bytes]:
    """The handler's output with the timeout line AWS appends, and the invocation's error result."""
    seconds = f"{timeout_s:.2f}"
    if during and not during.endswith("\n"):
        during += "\n"
    during += f"{_now_iso()} {request_id} Task timed out after {seconds} seconds\n"
    result = json.dumps(
        {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {request_id} Error: Task timed out after {seconds} seconds",
        }
    ).encode()
    return during, result


@dataclass
class Record:
    """What one invocation leaves in its function's log. ``pre``: what precedes START (INIT_START and the
    init output on a cold start); ``during``: what the handler printed."""

    request_id: str
    pre: str
    during: str
    init_ms: float | None
    duration_ms: float
    memory_mb: int
    status: str | None = None  # "error" / "timeout" in the REPORT line

    def log(self, function_version: str, memory_size: int) -> str:
        """``pre``, START, ``during``, END and REPORT, each part ending with a newline."""
        report = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(self.duration_ms + (self.init_ms or 0.0))} ms\t"
            f"Memory Size: {memory_size} MB\tMax Memory Used: {self.memory_mb} MB"
        )
        if self.init_ms is not None:
            report += f"\tInit Duration: {self.init_ms:.2f} ms"
        if self.status:
            report += f"\tStatus: {self.status}"
        parts = [self.pre, f"START RequestId: {self.request_id} Version: {function_version}\n", self.during]
        parts += [f"END RequestId: {self.request_id}\n", report + "\n"]
        return "".join(p if p.endswith("\n") or not p else p + "\n" for p in parts)
