"""A small JSON-RPC client: endpoint failover, batches, and round-trip counting.

Batches follow one policy (``batching``): split to the chain's ``rpc_limits``, sent concurrently,
and halved when the endpoint refuses them. A refusal is never a reason to fail over.

Endpoints are known by a label such as ``env:ETH_RPC_URL#0``. The URL itself (which often
embeds an API key) never appears in a message, a log line or an exception.
"""

from __future__ import annotations

import collections
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from breakglass.integrations.chain import batching
from breakglass.integrations.http import client as shared_client


class RpcError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}")
        self.method, self.code, self.rpc_message, self.data = method, code, message, data


class RpcUnavailable(Exception):
    """No endpoint answered."""


class BatchRefused(RpcUnavailable, batching.Refused):
    """The endpoint is up and refused the body as too large (HTTP 413, or a 4xx that says so): split it, do not fail over."""


@dataclass(frozen=True)
class Endpoint:
    label: str
    url: str = field(repr=False)

    def __str__(self) -> str:
        return self.label


_RETRYABLE = (httpx.TimeoutException, httpx.TransportError)
_NOTHING = object()

class JsonRpc:
    """``patience``: seconds to keep going round the endpoints after every one has failed, backing off
    exponentially with full jitter (``backoff`` doubling up to ``max_backoff``), so that a step rides
    out an RPC outage within its time limit. ``cancel`` (set when the step's limit passes) ends the wait."""

    def __init__(self, endpoints: list[Endpoint], *, timeout: float = 10.0, attempts_per_endpoint: int = 2,
                 backoff: float = 0.2, patience: float = 0.0, max_backoff: float = 5.0,
                 cancel: threading.Event | None = None, limits: batching.Limits = batching.DEFAULT) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = endpoints
        self.attempts_per_endpoint = attempts_per_endpoint
        self.backoff = backoff
        self.patience, self.max_backoff, self.cancel = patience, max_backoff, cancel
        self.round_trips = 0
        self.limits = limits
        self.memory = batching.learned(tuple(endpoints))  # what these endpoints refused, for the whole run
        self._lock = threading.Lock()  # batches are sent from several threads
        self.used: Endpoint = endpoints[0]
        self._ids = itertools.count(1)
        self._timeout = timeout
        self._http = shared_client()

    def close(self) -> None:
        """Nothing to release: the connection pool is shared by the process."""

    def __enter__(self) -> JsonRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []})
        return _result(method, answer)

    def batch(self, calls: list[tuple[str, list[Any]]], *, record: list[dict[str, Any]] | None = None) -> list[Any]:
        """Send calls in as few HTTP requests as the limits allow. Each item is its result, or an RpcError.

        ``record`` gets one ``{requests, bytes}`` per HTTP request sent (``refused`` when it was).
        """
        if not calls:
            return []
        with self._lock:
            first = next(self._ids)
            self._ids = itertools.count(first + len(calls))
        ids = [first + i for i in range(len(calls))]
        requests = [orjson.dumps({"jsonrpc": "2.0", "id": n, "method": m, "params": p}) for n, (m, p) in zip(ids, calls, strict=True)]
        answers = batching.send(self._post, requests, ids, self.limits, self.memory, lambda: self.used.label, record)
        out: list[Any] = []
        for (method, _), item in zip(calls, answers, strict=True):
            if item is None:
                out.append(RpcError(method, -32603, "missing from batch answer"))
                continue
            try:
                out.append(_result(method, item))
            except RpcError as exc:
                out.append(exc)
        return out

    def _post(self, body: Any) -> Any:
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        problems: list[str] = []
        give_up = time.monotonic() + self.patience
        for round_ in itertools.count():
            answer = self._round(payload, problems)
            if answer is not _NOTHING:
                return answer
            pause = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (round_ + 1)))  # noqa: S311 - jitter
            if time.monotonic() + pause > give_up or (self.cancel is not None and self.cancel.wait(pause)):
                break
            if self.cancel is None:
                time.sleep(pause)
        counts = collections.Counter(problems)  # each endpoint's error once, with how often it happened
        listed = "; ".join(p if n == 1 else f"{p} ({n} times)" for p, n in counts.items())
        raise RpcUnavailable(f"no RPC endpoint answered ({listed})")

    def _round(self, payload: bytes, problems: list[str]) -> Any:
        for endpoint in self.endpoints:
            for attempt in range(self.attempts_per_endpoint):
                if attempt:
                    time.sleep(self.backoff * attempt)
                try:
                    with self._lock:
                        self.round_trips += 1
                    response = self._http.post(endpoint.url, content=payload, timeout=self._timeout,
                                                headers={"content-type": "application/json"})
                except _RETRYABLE as exc:
                    problems.append(f"{endpoint.label}: {type(exc).__name__}")
                    continue
                if response.status_code >= 500 or response.status_code == 429:
                    problems.append(f"{endpoint.label}: HTTP {response.status_code}")
                    continue
                if (why := batching.refusal(response.status_code, response.content)) is not None:
                    raise BatchRefused(f"{endpoint.label}: refused as too large ({why})", why)
                if response.status_code != 200:
                    problems.append(f"{endpoint.label}: HTTP {response.status_code}")
                    break
                try:
                    answer = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    problems.append(f"{endpoint.label}: answered with invalid JSON")
                    break
                self.used = endpoint
                return answer
        return _NOTHING


def _result(method: str, answer: Any) -> Any:
    if not isinstance(answer, dict):
        raise RpcError(method, -32603, f"malformed answer {_brief(answer)}")
    if "error" in answer and answer["error"] is not None:
        err = answer["error"]
        if isinstance(err, dict):
            raise RpcError(method, int(err.get("code", -32603)), str(err.get("message", "")), err.get("data"))
        raise RpcError(method, -32603, str(err))
    return answer.get("result")


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."
