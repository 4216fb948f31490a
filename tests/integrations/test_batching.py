"""The batching policy against loopback servers that answer as real providers do when a batch is
too large: geth's one-element array, anvil's single object, HTTP 413."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson
import pytest

from breakglass.integrations.chain import batching
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc, RpcError, RpcUnavailable
from tests.helpers.jsonhttp import JsonServer


@pytest.fixture(autouse=True)
def cold() -> None:
    batching.forget()


class Provider:
    """Echoes each request's first param as its result; refuses batches over ``cap`` in the given ``style``,
    bodies over ``body_max`` with HTTP 413; answers 503 to everything when ``down``."""

    def __init__(self, cap: int = 10**9, style: str = "geth", body_max: int = 10**9, delay: float = 0.0,
                 down: bool = False) -> None:
        self.cap, self.style, self.body_max, self.delay, self.down = cap, style, body_max, delay, down
        self.posts: list[int] = []
        self.active = self.peak = 0
        self.lock = threading.Lock()
        self.server = JsonServer(self.answer)
        self.url = self.server.url

    def answer(self, body: Any) -> tuple[int, Any]:
        items = body if isinstance(body, list) else [body]
        with self.lock:
            self.posts.append(len(items))
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            if self.down:
                return 503, None
            if len(orjson.dumps(body)) > self.body_max:
                return 413, {"error": "request entity too large"}
            if isinstance(body, list) and len(body) > self.cap:
                error = {"code": -32600, "message": "batch too large"}
                if self.style == "geth":  # one element, carrying the first id; the rest missing
                    return 200, [{"jsonrpc": "2.0", "id": body[0]["id"], "error": error}]
                return 200, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid request"}}
            answers = [self._one(c) for c in items]
            return 200, answers if isinstance(body, list) else answers[0]
        finally:
            with self.lock:
                self.active -= 1

    @staticmethod
    def _one(call: dict[str, Any]) -> dict[str, Any]:
        if call["params"] and call["params"][0] == "revert":  # a revert whose reason mentions a batch
            return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": 3, "message": "execution reverted: batch closed"}}
        return {"jsonrpc": "2.0", "id": call["id"], "result": call["params"][0] if call["params"] else None}

    def close(self) -> None:
        self.server.close()


def _calls(n: int) -> list[tuple[str, list[Any]]]:
    return [("echo", [f"0x{i:x}"]) for i in range(n)]


def test_plan_splits_by_count_and_by_body_size() -> None:
    assert batching.plan([10] * 7, batch_max=3, body_max=10**6) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batching.plan([100] * 5, batch_max=100, body_max=250) == [[0, 1], [2, 3], [4]]
    assert batching.plan([500, 10, 10], batch_max=100, body_max=100) == [[0], [1, 2]]  # a lone request may exceed


def test_which_answers_are_size_refusals() -> None:
    assert batching.refusal(413, b"") == "HTTP 413"
    assert batching.refusal(400, b'{"error":{"code":-32600,"message":"batch size too large"}}') == "HTTP 400"
    assert batching.refusal(429, b"too many requests in this batch") is None  # rate limits are retried, not split
    assert batching.refusal(400, b'{"error":"invalid api key"}') is None
    assert batching.refusal(503, b"batch too large") is None  # the endpoint is down: that is failover's business


@pytest.mark.parametrize("style", ["geth", "anvil"])
def test_a_refused_batch_is_halved_until_it_fits_and_the_answers_are_complete(style: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="breakglass.rpc")
    provider = Provider(cap=30, style=style)
    try:
        with JsonRpc([Endpoint("env:A#0", provider.url + "/secret-key")], limits=batching.Limits(batch_max=100)) as rpc:
            record: list[dict[str, Any]] = []
            assert rpc.batch(_calls(100), record=record) == [f"0x{i:x}" for i in range(100)]
            assert [r["requests"] for r in record if r.get("refused")] == [100, 50, 50]
            assert all(r["requests"] == 25 for r in record if not r.get("refused"))
            assert rpc.memory.batch_max == 25
            assert rpc.round_trips == len(provider.posts) == 7

            provider.posts.clear()  # the next batch starts under what was learned: no refusal
            assert rpc.batch(_calls(100)) == [f"0x{i:x}" for i in range(100)]
            assert provider.posts == [25, 25, 25, 25]
            assert rpc.memory.body_max_bytes is None  # 6 KB is no provider's body cap: only the count is learned
    finally:
        provider.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "breakglass.rpc"]
    assert len(lines) == 1 and lines[0].startswith("env:A#0 refused a batch of 100 requests")
    assert "secret" not in lines[0]


def test_a_413_is_split_on_the_same_endpoint_never_a_failover() -> None:
    strict, spare = Provider(body_max=2000), Provider()
    try:
        with JsonRpc([Endpoint("env:A#0", strict.url), Endpoint("env:B#1", spare.url)]) as rpc:
            assert rpc.batch(_calls(200)) == [f"0x{i:x}" for i in range(200)]
            assert spare.posts == [] and rpc.used.label == "env:A#0"
            assert rpc.memory.body_max_bytes is not None and rpc.memory.batch_max is None  # 413 is about the body
    finally:
        strict.close()
        spare.close()


def test_a_single_request_refused_as_too_large_is_that_request_error_not_a_crash() -> None:
    provider = Provider(body_max=200)
    try:
        with JsonRpc([Endpoint("env:A#0", provider.url)]) as rpc:
            small, big = rpc.batch([("echo", ["0x1"]), ("echo", ["0x" + "ab" * 200])])
        assert small == "0x1"
        assert isinstance(big, RpcError) and "refused as too large" in str(big) and "HTTP 413" in str(big)
    finally:
        provider.close()


def test_a_revert_that_mentions_a_batch_is_an_answer_not_a_refusal() -> None:
    provider = Provider()
    try:
        with JsonRpc([Endpoint("env:A#0", provider.url)]) as rpc:
            answers = rpc.batch([("echo", ["revert"]), ("echo", ["0x1"])])
        assert isinstance(answers[0], RpcError) and answers[0].code == 3 and answers[1] == "0x1"
        assert provider.posts == [2]
    finally:
        provider.close()


def test_batches_go_out_concurrently_with_a_bound_on_how_many_are_in_flight() -> None:
    provider = Provider(delay=0.05)
    try:
        with JsonRpc([Endpoint("env:A#0", provider.url)], limits=batching.Limits(batch_max=10, in_flight=3)) as rpc:
            assert rpc.batch(_calls(120)) == [f"0x{i:x}" for i in range(120)]
        assert provider.posts == [10] * 12
        assert provider.peak == 3  # never more than the bound, and the bound is used
    finally:
        provider.close()


def test_multicall_chunks_follow_the_gas_budget() -> None:
    memory = batching.Learned()
    assert batching.chunk_size(batching.DEFAULT, memory) == 500
    assert batching.chunk_size(batching.Limits(call_gas_max=2_500_000), memory) == 100
    assert batching.chunk_size(batching.Limits(body_max_bytes=60_000), memory) == 100
    batching.learn_chunk(memory, 500)
    assert batching.chunk_size(batching.DEFAULT, memory) == 250


def test_when_the_endpoint_is_down_the_lanes_stop_and_the_error_is_the_caller_s() -> None:
    provider = Provider(down=True)
    try:
        with JsonRpc([Endpoint("env:A#0", provider.url)], attempts_per_endpoint=1,
                     limits=batching.Limits(batch_max=10, in_flight=3)) as rpc, pytest.raises(RpcUnavailable) as info:
            rpc.batch(_calls(120))
        assert "env:A#0: HTTP 503" in str(info.value)
        assert len(provider.posts) < 12  # the other lanes stopped instead of sending every part to a dead endpoint
    finally:
        provider.close()
