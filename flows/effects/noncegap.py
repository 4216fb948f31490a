"""Nonce claims that must be proven, and gaps that must be seen.

A signer's next nonce comes from the node's pending count. A claim above it (this process's last
send, or the shared signer record) is believed only while the transaction it names can be found,
at the claimed nonce, from this signer: by hash on the chain, in the public pool, or at the chain's
private ``submit`` endpoint. Anything else is stale, and signing above the chain on its word would
leave the transaction queued behind a gap that no same-nonce replacement can fill.

A transaction waits *behind a gap* when the chain's nonce is below it and nothing is known at the
lowest missing nonce: no open transaction of this run's journal there, and nothing found there by
the signer record's hash. ``onchain`` then re-signs the intent at that nonce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from breakglass.integrations.chain.rpc import JsonRpc, RpcError, RpcUnavailable


@dataclass(frozen=True)
class Claim:
    next: int
    hash: str
    source: str


def find_tx(rpc: JsonRpc, submit: JsonRpc | None, tx_hash: str) -> dict[str, Any] | None:
    """The transaction by hash from the read RPC (chain or public pool), else from the private submit endpoint."""
    for endpoint in (rpc, submit):
        if endpoint is None:
            continue
        try:
            found = endpoint.call("eth_getTransactionByHash", [tx_hash])
        except (RpcError, RpcUnavailable):
            continue  # a relay that cannot be asked proves nothing
        if isinstance(found, dict):
            return found
    return None


def proven(rpc: JsonRpc, submit: JsonRpc | None, address: str, claim: Claim) -> bool:
    """The claimed transaction exists, is this signer's, and sits at the nonce just below the claim."""
    if not claim.hash:
        return False
    tx = find_tx(rpc, submit, claim.hash)
    return (tx is not None and str(tx.get("from", "")).lower() == address.lower()
            and int(str(tx.get("nonce", "0x0")), 16) == claim.next - 1)


def choose(rpc: JsonRpc, submit: JsonRpc | None, address: str, pending: int,
           claims: list[dict[str, Any]]) -> tuple[int, list[Claim]]:
    """The next nonce, and the claims above ``pending`` found stale on the way (highest first)."""
    stale: list[Claim] = []
    for raw in claims:
        claim = Claim(int(raw["next"]), str(raw.get("hash") or ""), str(raw.get("source", "")))
        if claim.next <= pending:
            break
        if proven(rpc, submit, address, claim):
            return claim.next, stale
        stale.append(claim)
    return pending, stale


def known_at(rpc: JsonRpc, submit: JsonRpc | None, address: str, nonce: int, hashes: list[str]) -> str | None:
    """A hash of a transaction of ``address`` at ``nonce`` that some node can still show, or None."""
    for tx_hash in dict.fromkeys(hashes):
        tx = find_tx(rpc, submit, tx_hash)
        if tx is not None and str(tx.get("from", "")).lower() == address.lower() \
                and int(str(tx.get("nonce", "0x0")), 16) == nonce:
            return tx_hash
    return None


def journaled_at(entries: list[dict[str, Any]], address: str, nonce: int) -> bool:
    """Whether this run's journal has an open transaction of ``address`` at ``nonce`` (its own wait loop tends it,
    even where no node shows it, as with a relay that cannot be asked)."""
    signer_of = {e["intent"]: str(e.get("signer", "")).lower() for e in entries if e.get("event") == "signed"}
    superseded = {(e["intent"], e.get("nonce")) for e in entries if e.get("event") == "superseded"}
    return any(e.get("nonce") == nonce and e.get("event") in ("signed", "replacement", "cancel")
               and signer_of.get(e["intent"]) == address.lower()
               and (e.get("event") == "cancel" or (e["intent"], nonce) not in superseded) for e in entries)


def recorded_hashes(record: dict[str, Any] | None, nonce: int) -> list[str]:
    """The signer record's transaction, if the record says it was sent at ``nonce``."""
    if record and record.get("next") == nonce + 1 and record.get("hash"):
        return [str(record["hash"])]
    return []


def queued(rpc: JsonRpc, address: str, whole: dict[str, Any] | None = None) -> dict[str, list[int]] | None:
    """The node's pool for ``address``: {"pending": nonces, "queued": nonces}; None where the node has no txpool API.

    ``txpool_contentFrom`` (geth) answers for one sender; elsewhere (anvil) the whole ``txpool_content`` is read,
    once per chain when the caller passes a ``whole`` dict to keep it in."""
    try:
        mine = rpc.call("txpool_contentFrom", [address])
        if isinstance(mine, dict):
            return {part: sorted(int(n) for n in (mine.get(part) or {})) for part in ("pending", "queued")}
    except (RpcError, RpcUnavailable):
        pass
    cache = whole if whole is not None else {}
    if "content" not in cache:
        try:
            cache["content"] = rpc.call("txpool_content")
        except (RpcError, RpcUnavailable):
            cache["content"] = None
    content = cache["content"]
    if not isinstance(content, dict):
        return None
    out: dict[str, list[int]] = {}
    for part in ("pending", "queued"):
        by_sender = {k.lower(): v for k, v in (content.get(part) or {}).items()}
        out[part] = sorted(int(n) for n in (by_sender.get(address.lower()) or {}))
    return out


def waiting(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The journal's transactions still waiting (for `status`): each intent's last "waiting" note, unless a
    receipt, a consumed nonce or a new signature came after it."""
    last: dict[str, dict[str, Any] | None] = {}
    for entry in entries:
        event = entry.get("event")
        if event == "waiting":
            last[entry["intent"]] = entry
        elif event in ("receipt", "nonce_consumed", "superseded", "signed"):
            last[entry["intent"]] = None
    return [e for e in last.values() if e is not None]


def waiting_line(entry: dict[str, Any]) -> str:
    what = f"{entry.get('label', 'transaction')} on {entry.get('chain', '?')}"
    text = (f"WAITING: {what}, nonce {entry['nonce']}, has waited {entry.get('blocks', 0)} block(s); "
            f"the chain's nonce is {entry['chain_nonce']}")
    if entry.get("behind_gap"):
        text += (f": QUEUED BEHIND A GAP (nothing known at nonce {entry['chain_nonce']}); the run re-signs it there, "
                 "or `breakglass check` shows what is queued")
    return text
