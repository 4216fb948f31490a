"""Which chain *instance* a signer's nonce state belongs to.

A chain id alone does not say it: a fork keeps its upstream's chain id, and so does every anvil.
Per-signer records (the nonce record, lock files, leases, prepared pauses) are keyed by the chain
id, the genesis hash (block 0), and for drills a scope of the drill's own: a fork answers with its
upstream's genesis hash, so only the scope keeps a fork drill's records apart from the live ones.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from breakglass.flows.errors import BreakglassError
from breakglass.integrations.chain.rpc import JsonRpc

GENESIS_CALL: tuple[str, list[Any]] = ("eth_getBlockByNumber", ["0x0", False])
_GENESIS: dict[tuple[str, ...], str] = {}  # by endpoint URLs: block 0 of a chain never changes
_GUARD = threading.Lock()


@dataclass(frozen=True)
class ChainKey:
    chain_id: int
    genesis: str  # block 0's hash, 0x-prefixed
    scope: str = ""  # "" for live runs; a drill's own scope otherwise

    @property
    def stem(self) -> str:
        """The file-name stem (and lock name) of this chain instance: ``31337-1a2b...`` or ``drill-SCOPE-31337-1a2b...``."""
        base = f"{self.chain_id}-{self.genesis.lower().removeprefix('0x')[:16]}"
        return f"drill-{self.scope}-{base}" if self.scope else base

    def describe(self) -> str:
        where = f"drill scope {self.scope}" if self.scope else "live"
        return f"chain id {self.chain_id}, genesis {self.genesis[:18]}..., {where}"


def remember(rpc: JsonRpc, block0: Any) -> str:
    """Cache block 0 from an answer the caller already had (e.g. inside its own batch); returns its hash."""
    if isinstance(block0, Exception) or not isinstance(block0, dict) or not block0.get("hash"):
        raise BreakglassError(f"{rpc.used.label} does not answer block 0 (eth_getBlockByNumber 0x0); the chain "
                              "instance cannot be told apart from a fork, so no nonce state is used")
    genesis = str(block0["hash"]).lower()
    with _GUARD:
        _GENESIS[_urls(rpc)] = genesis
    return genesis


def cached(rpc: JsonRpc) -> str | None:
    with _GUARD:
        return _GENESIS.get(_urls(rpc))


def genesis(rpc: JsonRpc) -> str:
    """Block 0's hash: one RPC per endpoint set and process at most."""
    known = cached(rpc)
    if known is not None:
        return known
    return remember(rpc, rpc.call(*GENESIS_CALL))


def key(rpc: JsonRpc, chain_id: int, scope: str = "") -> ChainKey:
    return ChainKey(chain_id, genesis(rpc), scope)


def scope_of(mode: str, bindings: Any) -> str:
    """Live runs share one scope; a drill has its own (set when the drill started its chain), never the live one."""
    if mode == "live":
        return ""
    return getattr(bindings, "scope", "") or "unscoped"


def _urls(rpc: JsonRpc) -> tuple[str, ...]:
    return tuple(e.url for e in rpc.endpoints)
