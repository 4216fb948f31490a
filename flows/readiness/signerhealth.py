"""`check`'s nonce rows: for each signer on each chain, what would make the next pause wait forever or late.

- transactions queued behind a gap (the node's ``txpool_contentFrom`` or ``txpool_content``, where it has
  one): they never land
  until something fills the missing nonces, and neither does anything signed after them;
- a signer record (``$BREAKGLASS_HOME/signers``) above the chain's nonce whose transaction no node
  can show: a stale claim (a run no longer signs above the chain on its word, but it is a sign of a
  poisoned or copied home);
- transactions pending longer than the chain's ``bump_after_blocks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breakglass.flows.effects import chainkey, noncegap, signerlock
from breakglass.flows.language.inventory import Inventory
from breakglass.integrations.chain.rpc import JsonRpc, RpcError, RpcUnavailable

Row = tuple[str, str, str, str]  # subject, check, status, detail


def rows(home: Path, inventory: Inventory, rpcs: dict[str, JsonRpc], submits: dict[str, JsonRpc | None],
         signers: dict[str, str]) -> list[Row]:
    """``signers``: name -> address of every key signer; ``rpcs``: the chains that answered."""
    out: list[Row] = []
    for chain, rpc in rpcs.items():
        spec = inventory.chains[chain]
        try:
            key = chainkey.key(rpc, spec.chain_id)
            block = int(rpc.call("eth_blockNumber"), 16)
        except Exception as exc:  # noqa: BLE001 - a node that cannot say block 0 gets one failed row, not a crash
            out.append((f"chain {chain}", "nonces", "fail", str(exc)))
            continue
        whole: dict[str, Any] = {}  # a node without txpool_contentFrom: its whole pool, read once per chain
        for name, address in signers.items():
            out += _one(home, key, rpc, submits.get(chain), chain, spec.fees.bump_after_blocks, block, name, address,
                        whole)
    return out


def _one(home: Path, key: chainkey.ChainKey, rpc: JsonRpc, submit: JsonRpc | None, chain: str, bump_after: int,
         block: int, name: str, address: str, whole: dict[str, Any]) -> list[Row]:
    subject, where = f"signer {name}", f"{address} on {chain}"
    try:
        latest, pending = (int(rpc.call("eth_getTransactionCount", [address, tag]), 16) for tag in ("latest", "pending"))
    except (RpcError, RpcUnavailable) as exc:
        return [(subject, "nonce", "fail", f"{where}: the nonce cannot be read: {exc}")]
    out: list[Row] = []
    pool = noncegap.queued(rpc, address, whole)
    if pool and pool["queued"]:
        nonces = ", ".join(str(n) for n in pool["queued"])
        out.append((subject, "queued behind a gap", "fail",
                    f"{where}: {len(pool['queued'])} transaction(s) at nonce {nonces} wait behind a gap: the chain's "
                    f"nonce is {latest} and nothing is pending at {pending}. They never land, and neither does a pause "
                    f"signed after them, until nonce {pending} is filled (send any transaction from {name} at nonce "
                    f"{pending}, or replace them)"))
    path = signerlock.record_path(home, key, address)
    record = signerlock.read_record(path)
    if record and isinstance(record.get("next"), int) and record["next"] > pending:
        claim = noncegap.Claim(record["next"], str(record.get("hash") or ""), path.name)
        if not noncegap.proven(rpc, submit, address, claim):
            out.append((subject, "signer record", "fail",
                        f"{where}: {path} claims nonce {claim.next} is next, above the chain's {pending}, and its "
                        f"transaction {claim.hash or '(none named)'} is nowhere to be found. Stale: a run uses the "
                        f"chain's nonce and replaces it; if this home was copied from another machine, find out why"))
    if pending > latest:
        since = record.get("block") if record else None
        age = block - since if isinstance(since, int) else None
        if age is not None and age > bump_after:
            out.append((subject, "pending too long", "fail",
                        f"{where}: nonce {latest}..{pending - 1} pending for {age} blocks (bump_after_blocks is "
                        f"{bump_after}); is a run still replacing it? `breakglass status` shows a waiting pause"))
    if not out:
        pool_note = "" if pool is not None else " (the node has no txpool API: queued transactions cannot be seen)"
        out.append((subject, "nonce", "ok", f"{where}: nonce {latest}, {pending - latest} pending, none behind a gap"
                                            f"{pool_note}"))
    return out
