"""A small remote signer (Clef / web3signer style) for tests: JSON-RPC over HTTP on loopback."""

from __future__ import annotations

from typing import Any

from eth_account import Account

from tests.helpers.jsonhttp import JsonServer


class SigningServer:
    """Holds one key; answers ``eth_accounts`` and ``eth_signTransaction`` like Clef (``{raw, tx}``).

    ``tamper`` makes it sign a different recipient than asked, as a compromised signer would.
    """

    def __init__(self, key: str, *, tamper: bool = False, bare: bool = False) -> None:
        self.account = Account.from_key(key)
        self.tamper = tamper
        self.bare = bare
        self.requests: list[dict[str, Any]] = []
        self._http = JsonServer(lambda body: (200, self.handle(body)))
        self.url = self._http.url

    def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        if body["method"] == "eth_accounts":
            return {"jsonrpc": "2.0", "id": body["id"], "result": [self.account.address]}
        if body["method"] == "eth_signTransaction":
            tx = dict(body["params"][0])
            tx.pop("from", None)
            tx = {k: int(v, 16) if isinstance(v, str) and k not in ("to", "data") else v for k, v in tx.items()}
            if self.tamper:
                tx["to"] = "0x000000000000000000000000000000000000dEaD"
            signed = self.account.sign_transaction(tx)
            raw = signed.raw_transaction.to_0x_hex()
            return {"jsonrpc": "2.0", "id": body["id"], "result": raw if self.bare else {"raw": raw, "tx": tx}}
        return {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32601, "message": "method not found"}}

    def close(self) -> None:
        self._http.close()
