"""A JSON-RPC node on loopback, in a thread: the part of Ethereum's wire that the tx engine
(``flows/effects/onchain``) speaks, and nothing more.

It decodes and checks what arrives (the sender recovered from the signature, the nonce, the chain
id), mines a broadcast at once into the next block, and answers receipts, nonces and lookups by
hash from that state; with ``automine`` off, broadcasts wait in a pool (a same-nonce replacement
with higher fees takes its place there) until the test calls ``mine``, and ``advance`` lets blocks
pass without them. It runs no EVM: a simulation (``eth_call``, ``eth_estimateGas``) either
succeeds with empty data or reverts with the bytes a test sets in ``revert``. Every method that
arrives is counted, so a test can say "nothing was broadcast" by looking at the other end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes

from tests.helpers.jsonhttp import Answer, JsonServer

GWEI = 10**9
GENESIS = "0x" + keccak(b"fakechain genesis").hex()


class FakeChain(JsonServer):
    def __init__(self, chain_id: int = 31337, base_fee: int = 10 * GWEI, *, automine: bool = True) -> None:
        self.chain_id = chain_id
        self.base_fee = base_fee
        self.automine = automine
        self.revert: str | None = None  # revert data (0x...) that every simulation answers with, when set
        self.on_broadcast: Callable[[str], None] | None = None  # sees the raw bytes before they are accepted
        self.code: dict[str, str] = {}  # address (any case) -> runtime code; everything else is an EOA ("0x")
        self.methods: list[str] = []
        self.sent: list[dict[str, Any]] = []  # every transaction accepted by eth_sendRawTransaction, decoded
        self.head = 1
        self._nonces: dict[str, int] = {}
        self._txs: dict[str, dict[str, Any]] = {}
        self._receipts: dict[str, dict[str, Any]] = {}
        self._pool: dict[tuple[str, int], dict[str, Any]] = {}  # (sender, nonce) -> the transaction waiting there
        self._lock = threading.Lock()
        super().__init__(self._answer)

    def count(self, method: str) -> int:
        return self.methods.count(method)

    def pooled(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._pool.values())

    def advance(self, blocks: int = 1) -> None:
        """Blocks pass and include nothing (the pool's transactions stay where they are)."""
        with self._lock:
            self.head += blocks

    def mine(self, tx_hash: str) -> None:
        """Include this pooled transaction in the next block; it leaves the pool, and nothing else at its nonce lands."""
        with self._lock:
            tx = next(t for t in self._pool.values() if t["hash"] == tx_hash)
            del self._pool[(tx["from"], tx["nonce"])]
            self._include(tx)

    def _answer(self, body: Any) -> Answer:
        if isinstance(body, list):
            return 200, [self._one(item) for item in body]
        return 200, self._one(body)

    def _one(self, request: dict[str, Any]) -> dict[str, Any]:
        method, params = request["method"], request.get("params") or []
        with self._lock:
            self.methods.append(method)
            handler = getattr(self, "_" + method, None)
            if handler is None:
                return {"jsonrpc": "2.0", "id": request.get("id"),
                        "error": {"code": -32601, "message": f"the fake chain does not speak {method}"}}
            try:
                result = handler(*params)
            except _Refused as exc:
                return {"jsonrpc": "2.0", "id": request.get("id"), "error": exc.error}
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": result}

    # --- reads -----------------------------------------------------------------------------------

    def _eth_chainId(self) -> str:  # noqa: N802 - JSON-RPC names
        return hex(self.chain_id)

    def _eth_blockNumber(self) -> str:  # noqa: N802
        return hex(self.head)

    def _eth_getBlockByNumber(self, tag: str, _full: bool = False) -> dict[str, Any]:  # noqa: N802
        number = 0 if tag in ("0x0", "earliest") else (self.head if tag in ("latest", "pending", "safe", "finalized")
                                                      else int(tag, 16))
        block_hash = GENESIS if number == 0 else "0x" + keccak(number.to_bytes(32, "big")).hex()
        return {"number": hex(number), "hash": block_hash, "baseFeePerGas": hex(self.base_fee)}

    def _eth_getTransactionCount(self, address: str, tag: str) -> str:  # noqa: N802
        sender = to_checksum_address(address)
        mined = self._nonces.get(sender, 0)
        if tag != "pending":
            return hex(mined)
        while (sender, mined) in self._pool:
            mined += 1
        return hex(mined)

    def _eth_getCode(self, address: str, _block: str = "latest") -> str:  # noqa: N802
        return next((c for a, c in self.code.items() if a.lower() == address.lower()), "0x")

    def _eth_getTransactionReceipt(self, tx_hash: str) -> dict[str, Any] | None:  # noqa: N802
        return self._receipts.get(tx_hash.lower())

    def _eth_getTransactionByHash(self, tx_hash: str) -> dict[str, Any] | None:  # noqa: N802
        tx = self._txs.get(tx_hash.lower()) or next((t for t in self._pool.values() if t["hash"] == tx_hash.lower()), None)
        return None if tx is None else {"hash": tx["hash"], "from": tx["from"], "nonce": hex(tx["nonce"])}

    def _eth_call(self, call: dict[str, Any], _block: str = "latest") -> str:  # noqa: N802
        self._simulate()
        return "0x"

    def _eth_estimateGas(self, call: dict[str, Any], _block: str = "latest") -> str:  # noqa: N802
        self._simulate()
        return hex(46_000)

    def _simulate(self) -> None:
        if self.revert is not None:
            raise _Refused({"code": 3, "message": "execution reverted", "data": self.revert})

    # --- the one write ---------------------------------------------------------------------------

    def _eth_sendRawTransaction(self, raw: str) -> str:  # noqa: N802
        if self.on_broadcast is not None:
            self.on_broadcast(raw)
        data = bytes(HexBytes(raw))
        tx_hash = "0x" + keccak(data).hex()
        if tx_hash in self._txs or any(t["hash"] == tx_hash for t in self._pool.values()):
            raise _Refused({"code": -32000, "message": "already known"})
        decoded = TypedTransaction.from_bytes(HexBytes(data)).as_dict()
        sender = to_checksum_address(Account.recover_transaction(data))
        if int(decoded["chainId"]) != self.chain_id:
            raise _Refused({"code": -32000, "message": "invalid chain id"})
        if int(decoded["nonce"]) < self._nonces.get(sender, 0):
            raise _Refused({"code": -32000, "message": "nonce too low"})
        if int(decoded["maxFeePerGas"]) < self.base_fee:
            raise _Refused({"code": -32000, "message": "max fee per gas less than block base fee"})
        tx = {**decoded, "hash": tx_hash, "from": sender, "nonce": int(decoded["nonce"]),
              "to": to_checksum_address(decoded["to"]), "data": "0x" + bytes(decoded["data"]).hex()}
        waiting = self._pool.get((sender, tx["nonce"]))
        if waiting is not None and (tx["maxFeePerGas"] <= waiting["maxFeePerGas"]
                                    or tx["maxPriorityFeePerGas"] <= waiting["maxPriorityFeePerGas"]):
            raise _Refused({"code": -32000, "message": "replacement transaction underpriced"})
        self.sent.append(tx)
        if self.automine and tx["nonce"] == self._nonces.get(sender, 0):
            self._include(tx)
        else:
            self._pool[(sender, tx["nonce"])] = tx
        return tx_hash

    def _include(self, tx: dict[str, Any]) -> None:
        tx_hash, sender = tx["hash"], tx["from"]
        self._txs[tx_hash] = tx
        self._nonces[sender] = tx["nonce"] + 1
        self.head += 1
        self._receipts[tx_hash] = {"transactionHash": tx_hash, "blockNumber": hex(self.head), "status": "0x1",
                                   "gasUsed": hex(21_000 + 25_000), "from": sender, "to": tx["to"]}


class _Refused(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error
