"""The execution environment: its config, the current runtime, and what one invocation goes through
(cold start inside the invocation, init errors, the timeout, the result and logs sent back)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import reports
from callbacks import post
from reports import Record
from runtime import Pending, Runtime


class Environment:
    """State of the execution environment: config, the current runtime, and the invocation protocol."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.endpoint = config["runtime_endpoint"]
        self.timeout_s = float(config["timeout"])
        self.lock = threading.Lock()  # LocalStack sends one invocation at a time; this makes sure
        self.runtime: Runtime | None = None

    def spawn(self) -> Runtime:
        self.runtime = Runtime(self)
        return self.runtime

    def report_ready(self) -> None:
        post(f"{self.endpoint}/status/{self.config['executor_id']}/ready", b"{}")

    def invoke(self, payload: dict[str, Any]) -> None:
        with self.lock:
            self._invoke(payload)

    def _invoke(self, payload: dict[str, Any]) -> None:
        """Run one invocation. `pre` is what precedes START (INIT_START and init output on a cold start),
        `during` what the handler printed; both come from the runtime's stdout+stderr pipe."""
        request_id = payload["invoke-id"]
        received = time.monotonic()
        deadline = received + self.timeout_s
        deadline_ms = int((time.time() + self.timeout_s) * 1000)
        rt = self.runtime
        pre = ""
        if rt is None or rt.dead:
            if rt is not None:
                pre += rt.take_output()
            rt = self.spawn()  # cold start inside the invocation, as after a timeout on AWS
            rt.wait_init(max(0.0, deadline - time.monotonic()))
        init_ms = None
        if not rt.init_reported:
            rt.init_reported = True
            init_ms = rt.init_duration_ms
            pre += f"INIT_START Runtime Version: {self.config['runtime_version']}\n"
        if rt.init_error is not None or (rt.dead and rt.init_done_at is None):
            # init failed: this invocation fails with the init error; the next one retries init (as AWS)
            with rt.cond:
                rt.cond.wait_for(lambda: rt.dead, 5)
            pre += rt.take_output()
            result = rt.init_error or reports.exit_error(request_id, rt.exit_code)
            init_ms = (time.monotonic() - rt.started_at) * 1000
            rt.kill()
            self.runtime = None
            self._finish(Record(request_id, pre, "", init_ms, 0.0, rt.max_memory_mb(), "error"), result, True)
            return
        pre += rt.take_output()
        if rt.init_done_at is None:  # init itself ran past the function timeout
            memory = rt.max_memory_mb()
            rt.kill()
            pre += rt.take_output()
            self.runtime = None
            self._timeout(Record(request_id, pre, "", init_ms, (time.monotonic() - received) * 1000, memory))
            return
        pending = Pending(payload, deadline_ms)
        with rt.cond:
            rt.current = pending
        rt.queue.put(pending)
        with rt.cond:
            rt.cond.wait_for(
                lambda: pending.result is not None or rt.dead, max(0.0, deadline - time.monotonic())
            )
            rt.current = None
        duration_ms = (time.monotonic() - (pending.delivered_at or received)) * 1000
        memory = rt.max_memory_mb()
        if pending.result is not None:
            during = rt.take_output()
            record = Record(request_id, pre, during, init_ms, duration_ms, memory)
            self._finish(record, pending.result, pending.is_error)
            return
        if rt.dead:  # the handler took the process down (os._exit, segfault, OOM kill)
            during = rt.take_output()
            self.runtime = None
            result = reports.exit_error(request_id, rt.exit_code)
            self._finish(Record(request_id, pre, during, init_ms, duration_ms, memory, "error"), result, True)
            return
        rt.kill()  # timeout: the handler's whole process group goes
        during = rt.take_output()
        self.runtime = None
        self._timeout(Record(request_id, pre, during, init_ms, duration_ms, memory))

    def _timeout(self, record: Record) -> None:
        record.during, result = reports.timed_out(record.request_id, self.timeout_s, record.during)
        record.status = "timeout"
        self._finish(record, result, True)

    def _finish(self, record: Record, result: bytes, is_error: bool) -> None:
        """Send the logs first (LocalStack attaches them to the result it awaits), then the result."""
        text = record.log(self.config["function_version"], self.config["memory_size"])
        base = f"{self.endpoint}/invocations/{record.request_id}"
        post(f"{base}/logs", json.dumps({"logs": text}).encode())
        post(f"{base}/{'error' if is_error else 'response'}", result)

    def shutdown(self) -> None:
        if self.runtime is not None:
            self.runtime.kill()
