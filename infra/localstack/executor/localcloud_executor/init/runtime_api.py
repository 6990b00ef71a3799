"""The Lambda Runtime API (``/2018-06-01/runtime/...``), as far as awslambdaric uses it, for one runtime."""

from __future__ import annotations

import http.server
import socketserver
import time
from typing import TYPE_CHECKING

from quiet_http import QuietHandler

if TYPE_CHECKING:
    from runtime import Runtime

RUNTIME_API_PREFIX = "/2018-06-01/runtime"


class RuntimeApiHandler(QuietHandler):
    """``GET /invocation/next`` hands out the next invocation (its first call ends the init phase);
    ``POST /invocation/<id>/response|error`` and ``/init/error`` hand results back."""

    server: RuntimeApiServer

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        rt = self.server.runtime
        if self.path != f"{RUNTIME_API_PREFIX}/invocation/next":
            self._reply(404, b'{"errorMessage":"not found"}')
            return
        with rt.cond:
            if rt.init_done_at is None:
                rt.init_done_at = time.monotonic()
                rt.cond.notify_all()
        pending = rt.queue.get()
        if pending is None:  # runtime is being replaced
            self._reply(410, b'{"errorMessage":"environment shutting down"}')
            return
        payload = pending.payload
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": pending.request_id,
            "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": payload.get("invoked-function-arn", ""),
            "Lambda-Runtime-Trace-Id": payload.get("trace-id") or "",
        }
        if payload.get("client-context"):
            headers["Lambda-Runtime-Client-Context"] = payload["client-context"]
        with rt.cond:
            pending.delivered_at = time.monotonic()
        self._reply(200, payload.get("payload", "").encode("utf-8"), headers)

    def do_POST(self) -> None:
        rt = self.server.runtime
        body = self._body()
        path = self.path
        if path == f"{RUNTIME_API_PREFIX}/init/error":
            with rt.cond:
                rt.init_error = body
                rt.cond.notify_all()
            self._reply(202, b'{"status":"OK"}')
            return
        prefix = f"{RUNTIME_API_PREFIX}/invocation/"
        if path.startswith(prefix) and path.endswith(("/response", "/error")):
            request_id, kind = path[len(prefix) :].rsplit("/", 1)
            with rt.cond:
                current = rt.current
                if current is None or current.request_id != request_id:
                    self._reply(400, b'{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}')
                    return
                current.result = body
                current.is_error = kind == "error"
                rt.cond.notify_all()
            self._reply(202, b'{"status":"OK"}')
            return
        self._reply(404, b'{"errorMessage":"not found"}')


class RuntimeApiServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], runtime: Runtime) -> None:
        self.runtime = runtime
        super().__init__(address, RuntimeApiHandler)
