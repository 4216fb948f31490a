"""Reads many view calls at one pinned block in a handful of round trips.

Multicall3 ``aggregate3`` where the chain has it (chunked under a gas budget, the chunks sent as
JSON-RPC batches under the chain's ``rpc_limits``), otherwise JSON-RPC batches of ``eth_call``s.
The ABI for ``aggregate3`` is encoded and decoded by hand: with 1,000 calls eth_abi's generic
codec costs more than the round trip itself.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from eth_utils import keccak

from breakglass.integrations.chain import batching
from breakglass.integrations.chain.rpc import JsonRpc, RpcError

AGGREGATE3 = keccak(text="aggregate3((address,bool,bytes)[])")[:4]
GET_ETH_BALANCE = keccak(text="getEthBalance(address)")[:4]
BALANCE_OF = keccak(text="balanceOf(address)")[:4]


class Call(NamedTuple):  # a tuple: 10,000 of them are built per large snapshot
    target: str  # 0x address
    data: bytes


class Result(NamedTuple):
    ok: bool
    data: bytes
    error: str = ""


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


_HEAD = _word(1) + _word(96)  # allowFailure, then the offset of callData inside the element
_PAD = bytes(32)


def encode_aggregate3(calls: list[Call]) -> bytes:
    heads: list[bytes] = []
    tails: list[bytes] = []
    targets: dict[str, bytes] = {}  # most chunks read one token: convert its address once
    offset = 32 * len(calls)
    for target, data in calls:
        word = targets.get(target)
        if word is None:
            word = targets[target] = bytes(12) + bytes.fromhex(target[2:])
        pad = -len(data) % 32
        heads.append(offset.to_bytes(32, "big"))
        tails += (word, _HEAD, len(data).to_bytes(32, "big"), data, _PAD[:pad])
        offset += 128 + len(data) + pad
    return b"".join((AGGREGATE3, _word(32), _word(len(calls)), *heads, *tails))


def decode_aggregate3(data: bytes) -> list[Result]:
    base = int.from_bytes(data[0:32], "big")
    count = int.from_bytes(data[base : base + 32], "big")
    start = base + 32
    out: list[Result] = []
    for i in range(count):
        element = start + int.from_bytes(data[start + 32 * i : start + 32 * i + 32], "big")
        at = element + int.from_bytes(data[element + 32 : element + 64], "big")
        length = int.from_bytes(data[at : at + 32], "big")
        ok = data[element + 31] == 1
        out.append(Result(ok, data[at + 32 : at + 32 + length], "" if ok else "reverted"))
    return out


def read(rpc: JsonRpc, calls: list[Call], block: int, multicall: str | None,
         record: dict[str, Any] | None = None) -> list[Result]:
    """Run ``calls`` at ``block`` in as few round trips as the chain's ``rpc_limits`` allow.

    Calls go into Multicall3 chunks sized under the ``eth_call`` gas and body budgets; a chunk the
    node refuses (out of gas, too large, timed out) is halved and read again, down to one call.
    ``record`` gets ``calls_per_chunk`` and ``batches`` (one ``{requests, bytes}`` per HTTP request).
    """
    tag = hex(block)
    batches: list[dict[str, Any]] = [] if record is None else record.setdefault("batches", [])
    if not multicall:
        answers = rpc.batch([("eth_call", [{"to": c.target, "data": "0x" + c.data.hex()}, tag]) for c in calls], record=batches)
        return [
            Result(False, b"", str(a)) if isinstance(a, RpcError) else Result(True, bytes.fromhex(a[2:]))
            for a in answers
        ]
    size = batching.chunk_size(rpc.limits, rpc.memory)
    out: list[Result | None] = [None] * len(calls)
    todo = [range(i, min(i + size, len(calls))) for i in range(0, len(calls), size)]
    sizes: list[int] = []
    refused = 0
    while todo:
        answers = rpc.batch(
            [("eth_call", [{"to": multicall, "data": "0x" + encode_aggregate3([calls[i] for i in r]).hex()}, tag]) for r in todo],
            record=batches,
        )
        again: list[range] = []
        for part, answer in zip(todo, answers, strict=True):
            if isinstance(answer, RpcError) and len(part) > 1 and batching.says_too_much_work(answer.rpc_message):
                batching.learn_chunk(rpc.memory, len(part))
                refused = max(refused, len(part))
                half = len(part) // 2
                again += [part[:half], part[half:]]
                continue
            sizes.append(len(part))
            results = ([Result(False, b"", str(answer))] * len(part) if isinstance(answer, RpcError)
                       else decode_aggregate3(bytes.fromhex(answer[2:])))
            for i, result in zip(part, results, strict=True):
                out[i] = result
        todo = again
    if refused:
        batching.report(rpc.memory, rpc.limits, rpc.used.label, f"refused an eth_call of {refused} Multicall3 calls")
    if record is not None:
        record["calls_per_chunk"] = sizes
    return [r for r in out if r is not None]


def native_balance_call(multicall: str, account: str) -> Call:
    return Call(multicall, GET_ETH_BALANCE + bytes(12) + bytes.fromhex(account[2:]))


def balance_of_call(token: str, account: str) -> Call:
    """ERC-20 ``balanceOf(account)``, encoded directly: the generic encoder costs more than the read."""
    return Call(token, BALANCE_OF + bytes(12) + bytes.fromhex(account[2:]))
