"""Signers: something that turns an unsigned transaction into signed bytes for one address.

Key material stays inside the signer object: it is never returned, logged, put into an
exception message or a repr. Three kinds: a local key (from an environment variable or an
eth-account keystore) and a remote signer over JSON-RPC ``eth_signTransaction`` (Clef or
web3signer style, the path for hardware and KMS keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from breakglass.integrations.chain.rpc import Endpoint, JsonRpc, RpcError, RpcUnavailable


class SignerError(Exception):
    """A signer that cannot be unlocked or refuses to sign; the message never holds key material."""


@dataclass(frozen=True)
class Signed:
    raw: bytes
    hash: str
    nonce: int


@runtime_checkable
class Signer(Protocol):
    address: str
    label: str

    def sign(self, tx: dict[str, Any]) -> Signed: ...


def _check_fields(raw: bytes, tx: dict[str, Any], address: str, label: str) -> Signed:
    """Decode what was signed and compare it with what was asked: a signer must not sign anything else."""
    try:
        sender = Account.recover_transaction(raw)
        decoded = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    except Exception:  # noqa: BLE001 - any garbage from a remote signer is a refusal
        raise SignerError(f"signer {label}: returned bytes that are not a signed typed transaction") from None
    if to_checksum_address(sender) != address:
        raise SignerError(f"signer {label}: signed with {to_checksum_address(sender)}, expected {address}")
    for key in ("nonce", "chainId", "value", "gas", "maxFeePerGas", "maxPriorityFeePerGas"):
        if key in tx and int(decoded.get(key, -1)) != int(tx[key]):
            raise SignerError(f"signer {label}: signed {key}={decoded.get(key)}, but {tx[key]} was asked")
    signed_to = to_checksum_address(decoded["to"]) if decoded.get("to") else None
    if "to" in tx and signed_to != to_checksum_address(tx["to"]):
        raise SignerError(f"signer {label}: signed a transaction to {signed_to}, but {tx['to']} was asked")
    if "data" in tx and bytes(HexBytes(decoded.get("data", b""))) != bytes(HexBytes(tx["data"])):
        raise SignerError(f"signer {label}: signed other calldata than was asked")
    from eth_utils import keccak

    return Signed(raw, "0x" + keccak(raw).hex(), int(decoded["nonce"]))


class LocalSigner:
    """A key held in this process."""

    def __init__(self, account: Any, label: str) -> None:
        self._account = account
        self.address: str = account.address
        self.label = label

    def __repr__(self) -> str:
        return f"LocalSigner({self.label}, {self.address})"

    __str__ = __repr__

    def sign_digest(self, digest: bytes) -> bytes:
        """A 65-byte (r, s, v=27/28) signature over a 32-byte digest, e.g. a Safe's safeTxHash."""
        signed = self._account.unsafe_sign_hash(digest)
        return signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])

    def sign(self, tx: dict[str, Any]) -> Signed:
        try:
            signed = self._account.sign_transaction(tx)
        except Exception as exc:  # noqa: BLE001 - eth-account messages never contain the key
            raise SignerError(f"signer {self.label}: cannot sign: {type(exc).__name__}: {exc}") from None
        raw = bytes(signed.raw_transaction)
        return Signed(raw, signed.hash.to_0x_hex(), int(tx["nonce"]))


def from_hex_key(value: str, label: str) -> LocalSigner:
    text = value.strip()
    body = text[2:] if text.startswith(("0x", "0X")) else text
    if len(body) != 64 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise SignerError(f"signer {label}: the value is not a hex private key (64 hex digits)")
    try:
        return LocalSigner(Account.from_key("0x" + body), label)
    except Exception:  # noqa: BLE001
        raise SignerError(f"signer {label}: the value is not a valid secp256k1 private key") from None


def from_keystore(path: Path, password: str, label: str) -> LocalSigner:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SignerError(f"signer {label}: cannot read keystore {path} ({exc.strerror})") from None
    except json.JSONDecodeError:
        raise SignerError(f"signer {label}: {path} is not a JSON keystore") from None
    try:
        key = Account.decrypt(data, password)
    except ValueError:
        raise SignerError(f"signer {label}: wrong password for keystore {path}") from None
    except Exception as exc:  # noqa: BLE001
        raise SignerError(f"signer {label}: cannot decrypt keystore {path} ({type(exc).__name__})") from None
    return LocalSigner(Account.from_key(key), label)


def from_mnemonic(mnemonic: str, index: int, label: str) -> LocalSigner:
    Account.enable_unaudited_hdwallet_features()
    return LocalSigner(Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}"), label)


class RemoteSigner:
    """``eth_signTransaction`` on a remote signer; what comes back is decoded and checked."""

    def __init__(self, url: str, address: str, label: str, timeout: float = 10.0) -> None:
        self._rpc = JsonRpc([Endpoint(label, url)], timeout=timeout, attempts_per_endpoint=1)
        self.address = address
        self.label = label

    def __repr__(self) -> str:
        return f"RemoteSigner({self.label}, {self.address})"

    def ping(self) -> None:
        try:
            accounts = self._rpc.call("eth_accounts")
        except (RpcError, RpcUnavailable) as exc:
            raise SignerError(f"signer {self.label}: remote signer does not answer: {exc}") from None
        if accounts is not None and self.address.lower() not in {str(a).lower() for a in accounts}:
            raise SignerError(f"signer {self.label}: the remote signer does not hold {self.address}")

    def sign(self, tx: dict[str, Any]) -> Signed:
        request = {"from": self.address, **{k: (hex(v) if isinstance(v, int) else v) for k, v in tx.items()}}
        try:
            answer = self._rpc.call("eth_signTransaction", [request])
        except (RpcError, RpcUnavailable) as exc:
            raise SignerError(f"signer {self.label}: remote signer refused: {exc}") from None
        raw_hex = answer.get("raw") if isinstance(answer, dict) else answer
        if not isinstance(raw_hex, str) or not raw_hex.startswith("0x"):
            raise SignerError(f"signer {self.label}: remote signer answered without a signed transaction")
        return _check_fields(bytes.fromhex(raw_hex[2:]), tx, self.address, self.label)


class ImpersonatedSigner:
    """Fork drills only: a live signer's *address*, impersonated on a local anvil fork
    (``anvil_impersonateAccount``), so that the real pause path of the real deployment is exercised
    without any key. ``sign`` sends the transaction itself (anvil signs nothing for an impersonated
    account), so ``Signed.raw`` is empty and the caller must not broadcast it again."""

    sends_itself = True

    def __init__(self, address: str, rpc_by_chain_id: dict[int, str], label: str) -> None:
        self.address: str = to_checksum_address(address)
        self.label = label
        self._rpc = rpc_by_chain_id
        self._impersonating: set[int] = set()

    def sign(self, tx: dict[str, Any]) -> Signed:
        import httpx

        chain_id = int(tx["chainId"])
        url = self._rpc.get(chain_id)
        if url is None:
            raise SignerError(f"signer {self.label}: no fork of chain {chain_id} to impersonate it on")

        def call(method: str, params: list[Any]) -> Any:
            answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30).json()
            if "error" in answer:
                raise SignerError(f"signer {self.label}: {method}: {answer['error'].get('message', answer['error'])}")
            return answer["result"]

        if chain_id not in self._impersonating:
            call("anvil_impersonateAccount", [self.address])
            self._impersonating.add(chain_id)
        fields = {"from": self.address, "to": tx["to"], "data": tx.get("data", "0x"), "value": hex(int(tx.get("value", 0))),
                  "nonce": hex(int(tx["nonce"])), "gas": hex(int(tx["gas"])), "maxFeePerGas": hex(int(tx["maxFeePerGas"])),
                  "maxPriorityFeePerGas": hex(int(tx["maxPriorityFeePerGas"]))}
        return Signed(b"", call("eth_sendTransaction", [fields]), int(tx["nonce"]))
