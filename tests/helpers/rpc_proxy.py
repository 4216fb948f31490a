"""A JSON-RPC proxy on loopback that records which methods went through it."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.helpers.jsonhttp import Answer, JsonServer


class RpcProxy(JsonServer):
    """``delays`` holds seconds per method: a broadcast that takes a while to reach the node, as on a real
    network, is how two senders that read the same pending nonce would both sign it."""

    def __init__(self, upstream: str, delays: dict[str, float] | None = None) -> None:
        self.methods: list[str] = []
        self.upstream = upstream
        self.delays = delays or {}
        super().__init__(self._forward)

    def _forward(self, body: Any) -> Answer:
        calls = [c["method"] for c in (body if isinstance(body, list) else [body])]
        self.methods += calls
        time.sleep(max([self.delays.get(m, 0.0) for m in calls] or [0.0]))
        return 200, httpx.post(self.upstream, json=body).content
