"""The "init" of one local Lambda execution environment (what LocalStack's Go init is inside a container).

Started by the executor as ``<python> -I -S init.py <config.json>``; stdlib only. It

* answers LocalStack's executor protocol: ``POST /invoke`` on a loopback socket LocalStack opened for it
  (passed as an inherited file descriptor, so there is no port race), and reports back to LocalStack's
  executor endpoint: ``/status/<id>/ready`` once the init phase is over, then per invocation
  ``/invocations/<req>/logs`` followed by ``/invocations/<req>/response`` or ``/error``;
* serves the Lambda Runtime API (``/2018-06-01/runtime/...``) on 127.0.0.1 to one runtime process, which
  runs the real ``awslambdaric`` under the interpreter the function's Runtime names;
* measures the init phase (spawn -> first ``/next``), duration, peak RSS, and writes the START / END /
  REPORT lines AWS writes;
* enforces the function timeout by killing the runtime's process group; the next invocation then starts
  a fresh runtime (a cold start, with ``Init Duration``), as AWS resets a timed-out sandbox.

It runs as a separate process (not threads inside LocalStack) so that a crashing or hanging function
can never take LocalStack down, and so that the process tree mirrors Lambda's (init -> runtime).
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import json
import math
import os
import queue
import select
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

RUNTIME_API_PREFIX = "/2018-06-01/runtime"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _post(url: str, body: bytes, content_type: str = "application/json") -> None:
    """POST to LocalStack's executor endpoint, retrying briefly: losing a result would hang an invocation."""
    for attempt in range(5):
        try:
            req = urllib.request.Request(
                url, data=body, method="POST", headers={"Content-Type": content_type}
            )
            with _NO_PROXY.open(req, timeout=30) as resp:
                resp.read()
            return
        except OSError as exc:
            if attempt == 4:
                print(f"[localcloud-init] POST {url} failed: {exc}", file=sys.stderr, flush=True)
            time.sleep(0.1 * (attempt + 1))


class _Pending:
    """One invocation handed to the runtime: request data in, result (or death) out."""

    def __init__(self, payload: dict[str, Any], deadline_ms: int) -> None:
        self.request_id: str = payload["invoke-id"]
        self.payload = payload
        self.deadline_ms = deadline_ms
        self.delivered_at: float | None = None
        self.result: bytes | None = None
        self.is_error = False


class Runtime:
    """One runtime process (awslambdaric) with its own Runtime API server; replaced after a timeout/crash."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.cond = threading.Condition()
        self.queue: queue.Queue[_Pending | None] = queue.Queue()
        self.current: _Pending | None = None
        self.init_done_at: float | None = None
        self.init_error: bytes | None = None
        self.init_reported = False
        self.dead = False
        self.exit_code: int | None = None
        self.peak_kb = 0
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self.server = _RuntimeApiServer(("127.0.0.1", 0), self)
        threading.Thread(target=self.server.serve_forever, name="runtime-api", daemon=True).start()
        cfg = env.config
        proc_env = dict(cfg["env"])
        proc_env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self.server.server_address[1]}"
        proc_env["_LOCALCLOUD_PATH_FRONT"] = os.pathsep.join([cfg["task_root"], *cfg["layer_paths"]])
        proc_env["_LOCALCLOUD_PATH_BACK"] = cfg["runtime_dir"]
        self.started_at = time.monotonic()
        # -I: no user site, no PYTHON* env, no script dir; -S: not even the interpreter's own site-packages.
        # The bootstrap then builds sys.path as Lambda does: task root, layers, stdlib, runtime dir.
        self.proc = subprocess.Popen(
            [cfg["python"], "-I", "-S", "-u", cfg["bootstrap"], cfg["handler"]],
            cwd=cfg["task_root"],
            env=proc_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # its own group: a timeout kills the handler and anything it spawned
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        threading.Thread(target=self._read_output, name="runtime-output", daemon=True).start()
        threading.Thread(target=self._watch, name="runtime-watch", daemon=True).start()

    # -- output capture ---------------------------------------------------------------------------
    def _read_output(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._fd], [], [], 1.0)
            except (OSError, ValueError):
                return
            if ready and not self._read_available():
                return

    def _read_available(self) -> bool:
        """Read what the pipe holds now; False at EOF. Holding the lock lets drain() be a barrier."""
        with self._out_lock:
            while True:
                try:
                    chunk = os.read(self._fd, 65536)
                except BlockingIOError:
                    return True
                except OSError:
                    return False
                if not chunk:
                    return False
                self._out += chunk

    def take_output(self) -> str:
        """Everything the runtime printed so far and not yet taken. Reads the pipe first: whatever the
        handler wrote before posting its result is already in the pipe, so nothing of it is lost."""
        with contextlib.suppress(OSError, ValueError):
            self._read_available()
        with self._out_lock:
            data = bytes(self._out)
            self._out.clear()
        return data.decode("utf-8", errors="replace")

    # -- lifecycle --------------------------------------------------------------------------------
    def _watch(self) -> None:
        # reap with wait4 rather than Popen.wait: its rusage gives the peak RSS of a process that is gone
        _, status, usage = os.wait4(self.pid, 0)
        self.peak_kb = usage.ru_maxrss
        self.proc.returncode = self.exit_code = os.waitstatus_to_exitcode(status)
        with self.cond:
            self.dead = True
            self.cond.notify_all()
        self.queue.put(None)

    def wait_init(self, timeout: float | None) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: self.init_done_at is not None or self.init_error is not None or self.dead, timeout
            )

    @property
    def init_duration_ms(self) -> float | None:
        if self.init_done_at is None:
            return None
        return (self.init_done_at - self.started_at) * 1000

    def max_memory_mb(self) -> int:
        """Peak RSS (VmHWM) of the runtime process: what AWS reports as Max Memory Used."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return math.ceil(int(line.split()[1]) / 1024)
        except OSError:
            pass
        return math.ceil(self.peak_kb / 1024)  # the process is gone: its rusage, once reaped

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with self.cond:
            self.cond.wait_for(lambda: self.dead, 5)
        self.queue.put(None)
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 on loopback, no access log, no Nagle delay."""

    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RuntimeApiHandler(_QuietHandler):
    """The Lambda Runtime API, as far as awslambdaric uses it."""

    server: _RuntimeApiServer

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


class _RuntimeApiServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], runtime: Runtime) -> None:
        self.runtime = runtime
        super().__init__(address, _RuntimeApiHandler)


class _InvokeHandler(_QuietHandler):
    """LocalStack's side of the protocol: it POSTs /invoke and expects 202, results come back by callback."""

    server: _InvokeServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/invoke":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.loads(body)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        threading.Thread(
            target=self.server.env.invoke, args=(payload,), name="invocation", daemon=True
        ).start()


class _InvokeServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, env: Environment) -> None:
        self.env = env
        super().__init__(sock.getsockname(), _InvokeHandler, bind_and_activate=False)
        self.socket = sock


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
        _post(f"{self.endpoint}/status/{self.config['executor_id']}/ready", b"{}")

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
            result = rt.init_error or self._exit_error(request_id, rt.exit_code)
            init_ms = (time.monotonic() - rt.started_at) * 1000
            rt.kill()
            self.runtime = None
            self._finish(request_id, pre, "", init_ms, 0.0, rt.max_memory_mb(), result, True, "error")
            return
        pre += rt.take_output()
        if rt.init_done_at is None:  # init itself ran past the function timeout
            memory = rt.max_memory_mb()
            rt.kill()
            pre += rt.take_output()
            self.runtime = None
            self._timeout(request_id, pre, "", init_ms, (time.monotonic() - received) * 1000, memory)
            return
        pending = _Pending(payload, deadline_ms)
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
            self._finish(
                request_id, pre, during, init_ms, duration_ms, memory, pending.result, pending.is_error
            )
            return
        if rt.dead:  # the handler took the process down (os._exit, segfault, OOM kill)
            during = rt.take_output()
            self.runtime = None
            result = self._exit_error(request_id, rt.exit_code)
            self._finish(request_id, pre, during, init_ms, duration_ms, memory, result, True, "error")
            return
        rt.kill()  # timeout: the handler's whole process group goes
        during = rt.take_output()
        self.runtime = None
        self._timeout(request_id, pre, during, init_ms, duration_ms, memory)

    @staticmethod
    def _exit_error(request_id: str, code: int | None) -> bytes:
        how = f"signal: {signal.Signals(-code).name.lower()}" if code and code < 0 else f"exit status {code}"
        return json.dumps(
            {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {how}",
            }
        ).encode()

    def _timeout(
        self, request_id: str, pre: str, during: str, init_ms: float | None, duration_ms: float, memory: int
    ) -> None:
        seconds = f"{self.timeout_s:.2f}"
        if during and not during.endswith("\n"):
            during += "\n"
        during += f"{_now_iso()} {request_id} Task timed out after {seconds} seconds\n"
        result = json.dumps(
            {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: Task timed out after {seconds} seconds",
            }
        ).encode()
        self._finish(request_id, pre, during, init_ms, duration_ms, memory, result, True, "timeout")

    def _finish(
        self,
        request_id: str,
        pre: str,
        during: str,
        init_ms: float | None,
        duration_ms: float,
        memory_mb: int,
        result: bytes,
        is_error: bool,
        status: str | None = None,
    ) -> None:
        """Send the logs first (LocalStack attaches them to the result it awaits), then the result."""
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms + (init_ms or 0.0))} ms\t"
            f"Memory Size: {self.config['memory_size']} MB\tMax Memory Used: {memory_mb} MB"
        )
        if init_ms is not None:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        if status:
            report += f"\tStatus: {status}"
        parts = [pre, f"START RequestId: {request_id} Version: {self.config['function_version']}\n", during]
        parts += [f"END RequestId: {request_id}\n", report + "\n"]
        text = "".join(p if p.endswith("\n") or not p else p + "\n" for p in parts)
        base = f"{self.endpoint}/invocations/{request_id}"
        _post(f"{base}/logs", json.dumps({"logs": text}).encode())
        _post(f"{base}/{'error' if is_error else 'response'}", result)

    def shutdown(self) -> None:
        if self.runtime is not None:
            self.runtime.kill()


def _watch_parent(env: Environment, parent: int) -> None:
    """If LocalStack dies without stopping us (SIGKILL), take the runtime down and exit."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            env.shutdown()
            os._exit(0)


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        config = json.load(f)
    env = Environment(config)

    def _terminate(signum: int, _frame: object) -> None:
        env.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    threading.Thread(target=_watch_parent, args=(env, config["parent_pid"]), daemon=True).start()
    sock = socket.socket(fileno=config["invoke_fd"])
    server = _InvokeServer(sock, env)
    threading.Thread(target=server.serve_forever, name="invoke-api", daemon=True).start()
    rt = env.spawn()
    rt.wait_init(None)  # LocalStack's own startup timer bounds this
    env.report_ready()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
