"""Decode revert data into something a responder can act on: ``AccessControlUnauthorizedAccount(...)``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

ERROR_STRING = bytes.fromhex("08c379a0")
PANIC = bytes.fromhex("4e487b71")


def _signature(item: dict[str, Any]) -> str:
    def kind(param: dict[str, Any]) -> str:
        if param["type"].startswith("tuple"):
            return "(" + ",".join(kind(c) for c in param["components"]) + ")" + param["type"][5:]
        return param["type"]

    return f"{item['name']}({','.join(kind(p) for p in item.get('inputs', []))})"


class RevertDecoder:
    def __init__(self, abis: Iterable[list[dict[str, Any]]] = ()) -> None:
        self._errors: dict[bytes, tuple[str, list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") == "error":
                    sig = _signature(item)
                    self._errors[keccak(text=sig)[:4]] = (item["name"], [p["type"] for p in item.get("inputs", [])])

    def decode(self, data: bytes | str | None) -> str:
        if data is None:
            return "reverted without data"
        if isinstance(data, str):
            given = data
            text = data[2:] if data.startswith("0x") else data
            try:
                data = bytes.fromhex(text)
            except ValueError:
                return f"reverted: {given}"
        if not data:
            return "reverted without data"
        selector, body = data[:4], data[4:]
        try:
            if selector == ERROR_STRING:
                return f"reverted: {abi_decode(['string'], body)[0]}"
            if selector == PANIC:
                return f"panic 0x{abi_decode(['uint256'], body)[0]:02x}"
            if selector in self._errors:
                name, types = self._errors[selector]
                values = abi_decode(types, body) if types else ()
                shown = ", ".join(_show(t, v) for t, v in zip(types, values, strict=True))
                return f"{name}({shown})"
        except Exception:  # noqa: BLE001 - malformed revert data is still worth showing raw
            pass
        return f"reverted with unknown error 0x{data.hex()}"


def _show(kind: str, value: Any) -> str:
    if kind == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def revert_data(error: Any) -> str | None:
    """The revert bytes from a node's JSON-RPC error ``data`` (geth/anvil/erigon shapes)."""
    data = getattr(error, "data", None)
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        return data
    message = str(getattr(error, "rpc_message", "") or "")
    if "0x" in message:
        candidate = message[message.index("0x"):].split()[0].rstrip(",.;)")
        if all(c in "0123456789abcdefABCDEF" for c in candidate[2:]) and len(candidate) >= 10:
            return candidate
    return None
