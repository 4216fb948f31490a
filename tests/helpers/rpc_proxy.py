"""A JSON-RPC proxy on loopback that records which methods went through it."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers.jsonhttp import Answer, JsonServer


class RpcProxy(JsonServer):
    def __init__(self, upstream: str) -> None:
        self.methods: list[str] = []
        self.upstream = upstream
        super().__init__(self._forward)

    def _forward(self, body: Any) -> Answer:
        self.methods += [c["method"] for c in (body if isinstance(body, list) else [body])]
        return 200, httpx.post(self.upstream, json=body).content
