"""The "init" of one local Lambda execution environment (what LocalStack's Go init is inside a container).

Started by the executor as ``<python> -I -S <this folder> <config.json>``. Python runs a folder by its
``__main__.py`` with the folder itself first on ``sys.path`` (even in isolated mode), so the modules here
import each other by their plain names; ``-I -S`` leaves nothing else importable but the standard library
(nothing of LocalStack's venv). Stdlib only, one job per module:

* ``invoke_api`` answers LocalStack's executor protocol: ``POST /invoke`` on a loopback socket LocalStack
  opened for it (passed as an inherited file descriptor, so there is no port race); ``callbacks`` reports
  back to LocalStack's executor endpoint: ``/status/<id>/ready`` once the init phase is over, then per
  invocation ``/invocations/<req>/logs`` followed by ``/invocations/<req>/response`` or ``/error``;
* ``runtime_api`` serves the Lambda Runtime API (``/2018-06-01/runtime/...``) on 127.0.0.1 to one runtime
  process (``runtime``), which runs the real ``awslambdaric`` under the interpreter the function's Runtime
  names;
* ``environment`` runs each invocation: it measures the init phase (spawn -> first ``/next``), duration and
  peak RSS, and enforces the function timeout by killing the runtime's process group; the next invocation
  then starts a fresh runtime (a cold start, with ``Init Duration``), as AWS resets a timed-out sandbox;
* ``reports`` writes the START / END / REPORT lines and error payloads AWS writes.

It runs as a separate process (not threads inside LocalStack) so that a crashing or hanging function
can never take LocalStack down, and so that the process tree mirrors Lambda's (init -> runtime).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

from environment import Environment
from invoke_api import InvokeServer


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
    server = InvokeServer(sock, env)
    threading.Thread(target=server.serve_forever, name="invoke-api", daemon=True).start()
    rt = env.spawn()
    rt.wait_init(None)  # LocalStack's own startup timer bounds this
    env.report_ready()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
