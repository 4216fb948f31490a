"""A loopback JSON-RPC proxy as strict as a real provider: at most ``batch_max`` requests per batch
(more get one "batch too large" error object) and ``body_max`` bytes per body (more get HTTP 413).
It counts what arrived, so a benchmark can report round trips as the provider saw them."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson

TOO_MANY = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch too large"}})


class StrictProxy:
    def __init__(self, upstream: str, *, batch_max: int = 100, body_max: int = 1_000_000) -> None:
        self.posts = 0
        self.refused = 0
        lock = threading.Lock()
        http = httpx.Client(timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as providers do

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                status, answer = 200, b""
                if len(body) > body_max:
                    status, answer = 413, b'{"error":"request entity too large"}'
                elif body[:1] == b"[" and len(orjson.loads(body)) > batch_max:
                    answer = TOO_MANY
                else:
                    answer = http.post(upstream, content=body, headers={"content-type": "application/json"}).content
                with lock:
                    proxy.posts += 1
                    proxy.refused += answer is TOO_MANY or status == 413
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def reset(self) -> tuple[int, int]:
        seen, self.posts, self.refused = (self.posts, self.refused), 0, 0
        return seen

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
