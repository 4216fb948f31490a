"""Safe multisig transactions: the EIP-712 ``safeTxHash``, owner signatures, ``execTransaction``.

Owners must be able to check on their own devices what they sign, so the hash is computed
here *and* read back from the Safe's own ``getTransactionHash``; a mismatch is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from breakglass.integrations.chain import abi

ZERO = "0x0000000000000000000000000000000000000000"
SAFE_TX_TYPEHASH = keccak(text="SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,"
                               "uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)")
DOMAIN_TYPEHASH = keccak(text="EIP712Domain(uint256 chainId,address verifyingContract)")
NONCE = abi.parse("nonce()(uint256)")
THRESHOLD = abi.parse("getThreshold()(uint256)")
OWNERS = abi.parse("getOwners()(address[])")
GET_TX_HASH = abi.parse("getTransactionHash(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,uint256)(bytes32)")
EXEC = abi.parse("execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)(bool)")


class SafeSignatureError(ValueError):
    pass


@dataclass(frozen=True)
class SafeTx:
    safe: str
    chain_id: int
    to: str
    value: int
    data: bytes
    nonce: int
    operation: int = 0  # CALL; breakglass never proposes DELEGATECALL

    def hash(self) -> bytes:
        domain = keccak(abi_encode(["bytes32", "uint256", "address"], [DOMAIN_TYPEHASH, self.chain_id, self.safe]))
        struct = keccak(abi_encode(
            ["bytes32", "address", "uint256", "bytes32", "uint8", "uint256", "uint256", "uint256", "address", "address", "uint256"],
            [SAFE_TX_TYPEHASH, self.to, self.value, keccak(self.data), self.operation, 0, 0, 0, ZERO, ZERO, self.nonce]))
        return keccak(b"\x19\x01" + domain + struct)

    def hash_call(self) -> bytes:
        """Calldata for the Safe's own ``getTransactionHash``, to cross-check ``hash()``."""
        return GET_TX_HASH.encode([self.to, self.value, self.data, self.operation, 0, 0, 0, ZERO, ZERO, self.nonce])

    def exec_call(self, signatures: dict[str, bytes]) -> bytes:
        return EXEC.encode([self.to, self.value, self.data, self.operation, 0, 0, 0, ZERO, ZERO, encode_signatures(signatures)])


def recover(safe_tx_hash: bytes, signature: bytes) -> str:
    """The owner who produced an ECDSA signature over the hash (v 27/28), or over its eth_sign form (v 31/32)."""
    if len(signature) != 65:
        raise SafeSignatureError("a Safe owner signature is 65 bytes (r, s, v)")
    r, s, v = signature[:32], signature[32:64], signature[64]
    digest = safe_tx_hash
    if v > 30:
        v -= 4
        digest = keccak(b"\x19Ethereum Signed Message:\n32" + safe_tx_hash)
    if v not in (27, 28):
        raise SafeSignatureError(f"unsupported signature type v={signature[64]} (contract and approved-hash signatures are not accepted here)")
    try:
        key = keys.Signature(r + s + bytes([v - 27])).recover_public_key_from_msg_hash(digest)
    except Exception as exc:  # noqa: BLE001
        raise SafeSignatureError(f"not a valid signature: {exc}") from None
    return to_checksum_address(key.to_canonical_address())


def encode_signatures(signatures: dict[str, bytes]) -> bytes:
    """Owner signatures ordered by owner address, as the Safe requires."""
    return b"".join(sig for _, sig in sorted(signatures.items(), key=lambda item: int(item[0], 16)))
