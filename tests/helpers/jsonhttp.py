"""Tiny HTTP servers on loopback for tests: one function decides each answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Any]  # (HTTP status, JSON body or None)
Handle = Callable[[str, dict[str, str], bytes], tuple[int, bytes]]  # (path, headers, raw body) -> (status, body)


class HttpServer:
    """POSTs on loopback, answered by ``handle`` from the path, the headers and the raw body."""

    def __init__(self, handle: Handle) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["content-length"]))
                status, data = handle(self.path, dict(self.headers), raw)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()


class JsonServer(HttpServer):
    """JSON in, JSON out: ``answer`` sees the decoded body."""

    def __init__(self, answer: Callable[[Any], Answer]) -> None:
        def handle(_path: str, _headers: dict[str, str], raw: bytes) -> tuple[int, bytes]:
            status, payload = answer(json.loads(raw))
            data = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
            return status, data

        super().__init__(handle)
