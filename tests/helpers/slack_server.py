"""A local HTTP server that speaks enough of Slack's Web API for slack-sdk, pointed at it through
``base_url``: chat.postMessage (with message metadata), chat.update, conversations.history,
auth.test. Scripted per channel: 429 with Retry-After, ``ok: false`` errors, 500s and delays."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class SlackServer:
    def __init__(self, token: str = "xoxb-test-token", latency: float = 0.0, app_token: str = "xapp-test-token") -> None:
        self.token = token
        self.app_token = app_token
        self.socket_url: str | None = None  # what apps.connections.open answers (Socket Mode)
        self.latency = latency
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.script: dict[str, list[str]] = defaultdict(list)  # channel -> actions for the next posts
        self.calls: list[tuple[str, str | None, float]] = []
        self.uploads: dict[str, bytes] = {}
        self._file_ids = itertools.count(1)  # unique even for two URLs asked for in the same millisecond
        self.files: dict[str, list[dict[str, Any]]] = defaultdict(list)  # channel -> shared files
        self._lock = threading.Lock()
        self._ts = 1767225590.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _params(self) -> dict[str, Any]:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                if raw and "json" in (self.headers.get("content-type") or ""):
                    params.update(json.loads(raw))
                elif raw:
                    params.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
                return params

            def do_GET(self) -> None:  # noqa: N802
                self.do_POST()

            def do_POST(self) -> None:  # noqa: N802
                if urlparse(self.path).path.startswith("/upload/"):  # step 2 of files.uploadV2: the raw bytes
                    file_id = urlparse(self.path).path.rsplit("/", 1)[-1]
                    outer.uploads[file_id] = self.rfile.read(int(self.headers.get("content-length") or 0))
                    data = b"OK - uploaded"
                    self.send_response(200)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                method = urlparse(self.path).path.rsplit("/", 1)[-1]
                params = self._params()
                if outer.latency:
                    time.sleep(outer.latency)
                if method == "apps.connections.open":
                    if self.headers.get("authorization") != f"Bearer {outer.app_token}" or not outer.socket_url:
                        return self._answer(200, {"ok": False, "error": "invalid_auth"})
                    return self._answer(200, {"ok": True, "url": outer.socket_url})
                if self.headers.get("authorization") != f"Bearer {outer.token}":
                    return self._answer(200, {"ok": False, "error": "invalid_auth"})
                status, body, headers = outer.handle(method, params)
                self._answer(status, body, headers)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/api/"

    def handle(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        channel = params.get("channel")
        with self._lock:
            self.calls.append((method, channel, time.monotonic()))
            if method == "auth.test":
                return 200, {"ok": True, "team_id": "T0TEST", "user_id": "U0BOT"}, {}
            if method == "chat.postMessage":
                action = self.script[channel].pop(0) if self.script.get(channel) else "ok"
                if action == "429":
                    return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
                if action == "500":
                    return 500, {"ok": False, "error": "internal_error"}, {}
                if action.startswith("error:"):
                    return 200, {"ok": False, "error": action[6:]}, {}
                if action == "land-then-500":  # the post lands, the answer is lost
                    self._store(channel, params)
                    return 500, {"ok": False, "error": "internal_error"}, {}
                message = self._store(channel, params)
                return 200, {"ok": True, "channel": channel, "ts": message["ts"], "message": message}, {}
            if method == "files.getUploadURLExternal":
                file_id = f"F{next(self._file_ids):08d}"
                return 200, {"ok": True, "upload_url": f"{self.base_url.removesuffix('/api/')}/upload/{file_id}",
                             "file_id": file_id}, {}
            if method == "files.completeUploadExternal":
                files = params.get("files")
                files = json.loads(files) if isinstance(files, str) else files
                for item in files:
                    self.files[params.get("channel_id")].append({"id": item["id"], "title": item.get("title"),
                                                                 "content": self.uploads.get(item["id"]),
                                                                 "thread_ts": params.get("thread_ts")})
                return 200, {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}, {}
            if method == "conversations.history":
                messages = list(reversed(self.messages.get(channel, [])))
                return 200, {"ok": True, "messages": messages, "has_more": False}, {}
            if method == "chat.update":
                for message in self.messages.get(channel, []):
                    if message["ts"] == params.get("ts"):
                        blocks = params.get("blocks")
                        message.update(text=params.get("text"), blocks=json.loads(blocks) if isinstance(blocks, str) else blocks,
                                       updates=message.get("updates", 0) + 1)
                        return 200, {"ok": True, "channel": channel, "ts": message["ts"]}, {}
                return 200, {"ok": False, "error": "message_not_found"}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def _store(self, channel: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ts += 0.0001
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        blocks = params.get("blocks")
        message = {"type": "message", "ts": f"{self._ts:.6f}", "text": params.get("text"),
                   "blocks": json.loads(blocks) if isinstance(blocks, str) else blocks, "metadata": metadata}
        self.messages[channel].append(message)
        return message

    def keys(self, channel: str) -> list[str]:
        return [(m.get("metadata") or {}).get("event_payload", {}).get("key") for m in self.messages.get(channel, [])]

    def close(self) -> None:
        self.server.shutdown()
