"""LocalStack's side of the executor protocol: it POSTs ``/invoke`` and expects 202; results go back by
callback (``environment.py`` -> ``callbacks.py``)."""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import threading
from typing import TYPE_CHECKING

from quiet_http import QuietHandler

if TYPE_CHECKING:
    from environment import Environment


class InvokeHandler(QuietHandler):
    server: InvokeServer

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


class InvokeServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves on the loopback socket LocalStack opened and handed over as an inherited fd (no port race)."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, env: Environment) -> None:
        self.env = env
        super().__init__(sock.getsockname(), InvokeHandler, bind_and_activate=False)
        self.socket = sock
