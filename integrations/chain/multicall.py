"""Reads many view calls at one pinned block in a handful of round trips.

Multicall3 ``aggregate3`` where the chain has it (chunked, all chunks in one JSON-RPC batch),
otherwise a JSON-RPC batch of ``eth_call``s. The ABI for ``aggregate3`` is encoded and decoded
by hand: with 1,000 calls eth_abi's generic codec costs more than the round trip itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

from breakglass.integrations.chain.rpc import JsonRpc, RpcError

AGGREGATE3 = keccak(text="aggregate3((address,bool,bytes)[])")[:4]
GET_ETH_BALANCE = keccak(text="getEthBalance(address)")[:4]
CHUNK = 500


@dataclass(frozen=True)
class Call:
    target: str  # 0x address
    data: bytes


@dataclass(frozen=True)
class Result:
    ok: bool
    data: bytes
    error: str = ""


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def encode_aggregate3(calls: list[Call]) -> bytes:
    heads: list[bytes] = []
    tails: list[bytes] = []
    offset = 32 * len(calls)
    for call in calls:
        padded = call.data + b"\0" * (-len(call.data) % 32)
        element = (
            bytes(12) + bytes.fromhex(call.target[2:])
            + _word(1)  # allowFailure
            + _word(96)
            + _word(len(call.data))
            + padded
        )
        heads.append(_word(offset))
        tails.append(element)
        offset += len(element)
    return AGGREGATE3 + _word(32) + _word(len(calls)) + b"".join(heads) + b"".join(tails)


def decode_aggregate3(data: bytes) -> list[Result]:
    base = int.from_bytes(data[0:32], "big")
    count = int.from_bytes(data[base : base + 32], "big")
    start = base + 32
    out: list[Result] = []
    for i in range(count):
        element = start + int.from_bytes(data[start + 32 * i : start + 32 * i + 32], "big")
        ok = data[element + 31] == 1
        rel = int.from_bytes(data[element + 32 : element + 64], "big")
        length = int.from_bytes(data[element + rel : element + rel + 32], "big")
        body = data[element + rel + 32 : element + rel + 32 + length]
        out.append(Result(ok, body, "" if ok else "reverted"))
    return out


def read(rpc: JsonRpc, calls: list[Call], block: int, multicall: str | None) -> list[Result]:
    """Run ``calls`` at ``block``: one JSON-RPC batch, whatever the number of calls."""
    tag = hex(block)
    if multicall:
        chunks = [calls[i : i + CHUNK] for i in range(0, len(calls), CHUNK)]
        answers = rpc.batch(
            [("eth_call", [{"to": multicall, "data": "0x" + encode_aggregate3(c).hex()}, tag]) for c in chunks]
        )
        out: list[Result] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            if isinstance(answer, RpcError):
                out.extend(Result(False, b"", str(answer)) for _ in chunk)
            else:
                out.extend(decode_aggregate3(bytes.fromhex(answer[2:])))
        return out
    answers = rpc.batch([("eth_call", [{"to": c.target, "data": "0x" + c.data.hex()}, tag]) for c in calls])
    return [
        Result(False, b"", str(a)) if isinstance(a, RpcError) else Result(True, bytes.fromhex(a[2:]))
        for a in answers
    ]


def native_balance_call(multicall: str, account: str) -> Call:
    return Call(multicall, GET_ETH_BALANCE + bytes(12) + bytes.fromhex(account[2:]))
