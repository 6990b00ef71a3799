"""The request handler base of init's two HTTP servers (the Runtime API and LocalStack's ``/invoke``)."""

from __future__ import annotations

import http.server
from typing import Any


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 on loopback, no access log, no Nagle delay."""

    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass
