"""One batching policy for every JSON-RPC batch: split by count and body size, send the parts
concurrently with a bound on how many are in flight, and treat a refusal as information.

Providers cap a batch by its number of requests (100 on Erigon's default, 1,000 on geth's and
Alchemy's), by the body's size (anvil refuses about 2 MB, geth 5 MB) and an ``eth_call`` by gas.
When an endpoint refuses a batch anyway (HTTP 413, a single error object instead of an array, or
errors saying "batch too large" or "Invalid request"), the refused part is split in half and sent
again, down to single requests. What was learned is kept in memory, per set of endpoints, for the
rest of the process (one run), and logged once: the next batch is planned under it from the start.

This module knows JSON only; ``rpc.JsonRpc.batch`` turns the answers into results and errors.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("breakglass.rpc")

# A balance read costs about 5,500 to 6,300 gas inside aggregate3 (measured on anvil, calldata
# included); four times that leaves room for views that do a little more work.
GAS_PER_CALL = 25_000
CHUNK_MAX = 500  # calls per aggregate3: past this, encoding and decoding cost more than the round trip
BYTES_PER_CALL = 600  # a balance read is about 450 characters of hex in the request body
BODY_FLOOR = 100_000  # no common provider refuses a body under 100 KB (nginx's default cap is 1 MB, geth's 5 MB)


@dataclass(frozen=True)
class Limits:
    """What one request to the endpoint may carry. The defaults are under every common provider's caps."""

    batch_max: int = 100
    body_max_bytes: int = 1_000_000
    call_gas_max: int = 25_000_000
    in_flight: int = 4

    def as_dict(self) -> dict[str, int]:
        return {"batch_max": self.batch_max, "body_max_bytes": self.body_max_bytes,
                "call_gas_max": self.call_gas_max, "in_flight": self.in_flight}


DEFAULT = Limits()


class Refused(Exception):
    """The endpoint is up and refused the request as too large: split it, do not fail over."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


_TOO_LARGE = re.compile(r"batch|too large|too big|entity|payload|body|invalid request|request size|response size", re.I)
_BATCH_ITEM = re.compile(r"batch|too large|too big", re.I)
_ABOUT_BODY = re.compile(r"\b413\b|entity|payload|body|content.length", re.I)
_ABOUT_COUNT = re.compile(r"batch", re.I)
# What an aggregate3 eth_call answers when a chunk asks too much of the node: halve the chunk.
_TOO_MUCH_WORK = re.compile(r"gas|too large|too big|timeout|timed out|exceed|entity|invalid request", re.I)


def says_too_large(message: str) -> bool:
    return bool(_TOO_LARGE.search(message))


def says_too_much_work(message: str) -> bool:
    return bool(_TOO_MUCH_WORK.search(message))


def refusal(status: int, content: bytes) -> str | None:
    """Why a non-200 answer is a size refusal (HTTP 413, or a 4xx that says so), or None."""
    if status == 413:
        return "HTTP 413"
    if 400 <= status < 500 and status != 429 and says_too_large(content[:2000].decode("utf-8", "replace")):
        return f"HTTP {status}"
    return None


@dataclass
class Learned:
    """What an endpoint set refused, as caps for the rest of the run."""

    batch_max: int | None = None
    body_max_bytes: int | None = None
    chunk_max: int | None = None
    accepted: tuple[int, int] = (0, 0)  # the largest batch answered (requests, bytes): proof, not a guess
    reported: tuple[int | None, int | None, int | None] = (None, None, None)

    def applied(self, limits: Limits) -> dict[str, int]:
        """The limits in force: the configured ones, tightened by what was learned."""
        batch_max, body_max = self.caps(limits)
        return {**limits.as_dict(), "batch_max": batch_max, "body_max_bytes": body_max,
                "calls_per_chunk_max": chunk_size(limits, self)}

    def caps(self, limits: Limits) -> tuple[int, int]:
        """Half of what was refused, but never under what the endpoint has answered (a refusal names no cause)."""
        count = limits.batch_max if self.batch_max is None else max(self.batch_max, self.accepted[0])
        body = limits.body_max_bytes if self.body_max_bytes is None else max(self.body_max_bytes, self.accepted[1])
        return min(limits.batch_max, count), min(limits.body_max_bytes, body)


_LEARNED: dict[Hashable, Learned] = {}
_LOCK = threading.Lock()
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="rpc-batch")


def learned(key: Hashable) -> Learned:
    with _LOCK:
        return _LEARNED.setdefault(key, Learned())


def forget() -> None:
    """Drop everything learned, as a new process would (for tests that compare a cold start)."""
    with _LOCK:
        _LEARNED.clear()


def chunk_size(limits: Limits, memory: Learned) -> int:
    """Calls per Multicall3 ``aggregate3``: under the gas budget, the body budget and what was learned."""
    size = min(CHUNK_MAX, limits.call_gas_max // GAS_PER_CALL, memory.caps(limits)[1] // BYTES_PER_CALL)
    return max(1, min(size, memory.chunk_max or size))


def learn_chunk(memory: Learned, refused: int) -> None:
    """An ``aggregate3`` of ``refused`` calls was too much for the node: half of it from now on."""
    with _LOCK:
        memory.chunk_max = max(1, min(memory.chunk_max or refused, refused // 2))


def report(memory: Learned, limits: Limits, label: str, what: str) -> None:
    """Log what was learned, once: nothing when it is what was already logged."""
    with _LOCK:
        now = (memory.batch_max, memory.body_max_bytes, memory.chunk_max)
        if now == memory.reported:
            return
        memory.reported = now
    batch_max, body_max = memory.caps(limits)
    caps = [f"{batch_max} requests per batch" if memory.batch_max else "",
            f"{body_max:,} bytes per body" if memory.body_max_bytes else "",
            f"{chunk_size(limits, memory)} calls per Multicall3 eth_call" if memory.chunk_max else ""]
    log.warning("%s %s: using at most %s for the rest of this run (set the chain's rpc_limits to start there)",
                label, what, ", ".join(c for c in caps if c))


@dataclass
class Sent:
    """One HTTP request of a batch: how many requests it carried, its size, and whether it was refused."""

    first: int
    requests: int
    bytes: int
    refused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "bytes": self.bytes, **({"refused": True} if self.refused else {})}


@dataclass
class _Batch:
    post: Callable[[bytes], Any]
    requests: list[bytes]  # each one encoded JSON-RPC request object
    ids: list[int]
    memory: Learned
    answers: list[Any] = field(init=False)
    sent: list[Sent] = field(default_factory=list)
    refused: str = ""

    def __post_init__(self) -> None:
        self.answers = [None] * len(self.requests)

    def deliver(self, part: list[int]) -> None:
        if len(part) == 1:
            self._single(part[0])
            return
        body = b"[" + b",".join(self.requests[i] for i in part) + b"]"
        try:
            answer = self.post(body)
        except Refused as exc:
            answer, why = None, exc.reason
        else:
            why = "" if isinstance(answer, list) else f"answered with a single object ({_message(answer)})"
        pending = part
        if isinstance(answer, list):
            position = {self.ids[i]: i for i in part}
            for item in answer:
                if isinstance(item, dict) and item.get("id") in position:
                    self.answers[position[item["id"]]] = item
            pending = [i for i in part if _unanswered(self.answers[i])]
            errors = [_message(self.answers[i]) for i in pending if self.answers[i] is not None]
            why = f"answered {errors[0]}" if errors else "left requests out of its answer"
        self._record(Sent(part[0], len(part), len(body), refused=bool(pending)))
        if not pending:
            with _LOCK:
                m = self.memory
                m.accepted = (max(m.accepted[0], len(part)), max(m.accepted[1], len(body)))
            return
        self._learn(len(part), len(body), why)
        half = len(pending) // 2
        for piece in (pending[:half], pending[half:]):
            if piece:
                self.deliver(piece)

    def _single(self, i: int) -> None:
        try:
            answer = self.post(self.requests[i])
        except Refused as exc:
            answer = {"id": self.ids[i], "error": {"code": -32600, "message": str(exc)}}
        self._record(Sent(i, 1, len(self.requests[i])))
        self.answers[i] = answer[0] if isinstance(answer, list) and answer else answer

    def _learn(self, count: int, size: int, why: str) -> None:
        """Halve what the refusal was about: the body (HTTP 413), the count ("batch too large"), or, when it
        does not say, both; but a body too small for any provider to refuse is not held against the body."""
        body = bool(_ABOUT_BODY.search(why))
        with _LOCK:
            m = self.memory
            if not body:
                m.batch_max = max(1, min(m.batch_max or count, count // 2))
            if body or (not _ABOUT_COUNT.search(why) and size // 2 >= BODY_FLOOR):
                m.body_max_bytes = max(BODY_FLOOR if not body else 10_000, min(m.body_max_bytes or size, size // 2))
            self.refused = self.refused or f"refused a batch of {count} requests ({size:,} bytes: {why})"

    def _record(self, sent: Sent) -> None:
        with _LOCK:
            self.sent.append(sent)


def _message(item: Any) -> str:
    error = item.get("error") if isinstance(item, dict) else None
    text = str(error.get("message", "")) if isinstance(error, dict) else str(error or item)
    return text if len(text) < 100 else text[:97] + "..."


def _unanswered(item: Any) -> bool:
    """Missing, or an error about the batch rather than this request (a revert reason never counts)."""
    if not isinstance(item, dict):
        return True
    error = item.get("error")
    if not isinstance(error, dict) or error.get("code") == 3 or "revert" in str(error.get("message", "")):
        return False
    return error.get("code") == -32600 or bool(_BATCH_ITEM.search(str(error.get("message", ""))))


def plan(sizes: list[int], batch_max: int, body_max: int) -> list[list[int]]:
    """Consecutive parts, each at most ``batch_max`` requests and ``body_max`` bytes (a lone request may exceed it)."""
    parts: list[list[int]] = []
    current: list[int] = []
    total = 2
    for i, size in enumerate(sizes):
        if current and (len(current) >= batch_max or total + size + 1 > body_max):
            parts.append(current)
            current, total = [], 2
        current.append(i)
        total += size + 1
    if current:
        parts.append(current)
    return parts


def send(post: Callable[[bytes], Any], requests: list[bytes], ids: list[int], limits: Limits, memory: Learned,
         label: Callable[[], str], record: list[dict[str, Any]] | None = None) -> list[Any]:
    """Each request's answer object (None when the endpoint left it out), in order.

    ``post`` sends one body and returns the decoded answer, or raises ``Refused``. Parts are sent by
    ``limits.in_flight`` lanes at most; the caller's thread is one of them.
    """
    batch_max, body_max = memory.caps(limits)
    parts = plan([len(r) for r in requests], batch_max, body_max)
    batch = _Batch(post, requests, ids, memory)
    queue = iter(parts)
    take = threading.Lock()
    failed = threading.Event()  # one lane's failure (every endpoint down) stops the others taking more

    def lane() -> None:
        while not failed.is_set():
            with take:
                part = next(queue, None)
            if part is None:
                return
            try:
                batch.deliver(part)
            except BaseException:
                failed.set()
                raise

    helpers = [_POOL.submit(lane) for _ in range(min(limits.in_flight, len(parts)) - 1)]
    try:
        lane()
    finally:
        errors = [h.exception() for h in helpers]  # waits: no lane outlives the call
    if first := next((e for e in errors if e is not None), None):
        raise first
    if batch.refused:
        report(memory, limits, label(), batch.refused)
    if record is not None:
        record.extend(s.as_dict() for s in sorted(batch.sent, key=lambda s: (s.first, -s.requests)))
    return batch.answers
