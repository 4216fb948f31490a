"""A JSON-RPC proxy on loopback that records which methods went through it, and can be as strict
as a real provider about batch sizes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from tests.helpers.jsonhttp import Answer, JsonServer


class RpcProxy(JsonServer):
    """``delays`` holds seconds per method: a broadcast that takes a while to reach the node, as on a real
    network, is how two senders that read the same pending nonce would both sign it.

    Provider caps, each off unless given: ``batch_max`` requests per batch (more get one error object, as
    anvil and many providers answer), ``body_max`` bytes per body (more get HTTP 413), and
    ``call_data_max`` bytes of ``eth_call`` data (more get geth's out-of-gas error for that call).
    """

    def __init__(self, upstream: str, delays: dict[str, float] | None = None, *, batch_max: int | None = None,
                 body_max: int | None = None, call_data_max: int | None = None) -> None:
        self.methods: list[str] = []
        self.upstream = upstream
        self.delays = delays or {}
        self.batch_max, self.body_max, self.call_data_max = batch_max, body_max, call_data_max
        self.posts: list[tuple[int, int]] = []  # (requests, bytes) of every body that arrived
        self.refused: list[str] = []
        super().__init__(self._forward)

    def _forward(self, body: Any) -> Answer:
        items = body if isinstance(body, list) else [body]
        size = len(orjson.dumps(body))  # the client sends compact JSON: the same bytes
        self.posts.append((len(items), size))
        if self.body_max is not None and size > self.body_max:
            self.refused.append("body")
            return 413, {"error": "request entity too large"}
        if isinstance(body, list) and self.batch_max is not None and len(body) > self.batch_max:
            self.refused.append("batch")
            return 200, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid request"}}
        calls = [c["method"] for c in items]
        self.methods += calls
        time.sleep(max([self.delays.get(m, 0.0) for m in calls] or [0.0]))
        if self.call_data_max is not None and any(self._too_much_gas(c) for c in items):
            return 200, self._with_gas_errors(body)
        return 200, httpx.post(self.upstream, json=body).content

    def _too_much_gas(self, call: dict[str, Any]) -> bool:
        assert self.call_data_max is not None
        return call["method"] == "eth_call" and len(call["params"][0].get("data", "")) // 2 > self.call_data_max

    def _with_gas_errors(self, body: Any) -> Any:
        items = body if isinstance(body, list) else [body]
        fine = [c for c in items if not self._too_much_gas(c)]
        answers = {a["id"]: a for a in httpx.post(self.upstream, json=fine).json()} if fine else {}
        out = [answers.get(c["id"]) or {"jsonrpc": "2.0", "id": c["id"],
                                        "error": {"code": -32000, "message": "gas required exceeds allowance (1000000)"}}
               for c in items]
        self.refused += ["gas" for c in items if self._too_much_gas(c)]
        return out if isinstance(body, list) else out[0]
