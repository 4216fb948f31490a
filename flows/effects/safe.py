"""Guardian actions through a Safe multisig, exactly once.

1. Propose: read the Safe's nonce, threshold and owners; compute the ``safeTxHash`` and check it
   against the Safe's own ``getTransactionHash``; simulate the inner call from the Safe; journal
   the proposal, and log the hash and decoded call so that owners can verify on their devices.
2. Collect: owner signatures from the owner keys this process holds, and from ``breakglass
   sign`` (files under the incident). Every signature is recovered and must come from a current
   owner over this exact hash; anything else is refused and journaled, never counted. Owners
   excluded at proposal (an owner whose key is compromised, being removed by this very
   transaction) are never asked and never counted.
3. Execute: once the threshold is met, and only if owners, threshold and nonce are what they
   were at proposal, ``execTransaction`` goes through the same exactly-once engine as any
   transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from breakglass.flows.effects import onchain, safesign
from breakglass.flows.effects.notice import Notice
from breakglass.flows.effects.safepending import excluded_reason
from breakglass.flows.effects.unlock import SafeGuardian
from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.context import StepContext
from breakglass.flows.run.ports import SafeRefused as SafeRefused
from breakglass.integrations.chain import safe as safe_tx
from breakglass.integrations.chain.signers import LocalSigner


def signatures_dir(incident_dir: Path, safe_tx_hash: str) -> Path:
    return incident_dir / "safe-signatures" / safe_tx_hash


def _read(io: onchain.ChainIO, address: str) -> tuple[int, int, list[str]]:
    nonce = safe_tx.NONCE.decode(io.call(address, address, safe_tx.NONCE.encode()))[0]
    threshold = safe_tx.THRESHOLD.decode(io.call(address, address, safe_tx.THRESHOLD.encode()))[0]
    owners: list[str] = [to_checksum_address(o) for o in safe_tx.OWNERS.decode(io.call(address, address, safe_tx.OWNERS.encode()))[0]]
    return nonce, threshold, owners


def send(ctx: StepContext, io: onchain.ChainIO, guardian: SafeGuardian, intent: onchain.Intent, *,
         skip: Callable[[], bool] | None = None, wait_seconds: float = 3600,
         exclude: Collection[str] = ()) -> tuple[onchain.Outcome, dict[str, Any]]:
    journal = ctx.journal
    key = intent.key + "/safe"
    proposal = next((e for e in journal.entries(key) if e["event"] == "safe_proposed"), None)
    if proposal is None:
        if skip is not None and skip():
            return onchain.Outcome("skipped"), {}
        nonce, threshold, owners = _read(io, guardian.address)
        tx = safe_tx.SafeTx(guardian.address, io.spec.chain_id, intent.to, intent.value, intent.data, nonce)
        digest = tx.hash()
        on_chain = io.call(guardian.address, guardian.address, tx.hash_call())
        if on_chain[:32] != digest:
            raise SafeRefused(f"Safe {guardian.address}: its getTransactionHash disagrees with ours "
                                  f"(0x{on_chain[:32].hex()} vs 0x{digest.hex()}); refusing to collect signatures")
        excluded = sorted(set(exclude) & set(owners))
        if len(owners) - len(excluded) < threshold:
            raise SafeRefused(f"Safe {guardian.address}: {threshold} signatures are needed, but only "
                              f"{len(owners) - len(excluded)} owners may sign ({', '.join(excluded)} may not)")
        io.call(guardian.address, intent.to, intent.data, value=intent.value)  # the inner call, from the Safe
        journal.append(key, "safe_proposed", safe_tx_hash="0x" + digest.hex(), safe=guardian.address, nonce=nonce,
                       threshold=threshold, owners=owners, to=intent.to, data="0x" + intent.data.hex(), value=intent.value,
                       call=intent.label, **({"excluded": excluded} if excluded else {}))
        ctx.log.warning("Safe transaction 0x%s: %s on %s (Safe %s, nonce %d, %d of %d owners). Owners: verify this "
                        "safeTxHash on your own device before signing.", digest.hex(), intent.label, intent.to,
                        guardian.address, nonce, threshold, len(owners))
        if excluded:
            ctx.log.warning("Signatures of %s do not count for this Safe transaction.", ", ".join(excluded))
        proposal = next(e for e in journal.entries(key) if e["event"] == "safe_proposed")
        Notice(ctx.inventory, journal, ctx.run_key, ctx.incident, ctx.playbook).safe_pending(proposal)
    digest = bytes.fromhex(proposal["safe_tx_hash"][2:])
    tx = safe_tx.SafeTx(guardian.address, io.spec.chain_id, intent.to, intent.value, intent.data, proposal["nonce"])
    exec_intent = onchain.Intent(key=intent.key + "/exec", chain=intent.chain, to=guardian.address,
                                 data=b"", label=f"{intent.label} via Safe {guardian.address}")
    info = {"safe": guardian.address, "safe_tx_hash": proposal["safe_tx_hash"], "safe_nonce": proposal["nonce"],
            "threshold": proposal["threshold"], "decoded_call": proposal["call"]}
    if journal.signed(exec_intent.key):  # executed (or sent) before a crash: reconcile, never re-collect
        first = journal.entries(exec_intent.key)[0]
        exec_intent = onchain.Intent(exec_intent.key, intent.chain, guardian.address, bytes.fromhex(first["data"][2:]), exec_intent.label)
        outcome = onchain.send_once(ctx, io, guardian.executor, exec_intent, journal)
        return outcome, {**info, "owners_signed": first.get("owners_signed", [])}
    signatures = _collect(ctx, io, guardian, key, digest, proposal, wait_seconds)
    nonce, threshold, owners = _read(io, guardian.address)
    if threshold != proposal["threshold"] or sorted(owners) != sorted(proposal["owners"]):
        journal.append(key, "safe_refused", reason="owners or threshold changed since proposal")
        raise SafeRefused(f"Safe {guardian.address}: owners or threshold changed since the proposal "
                              f"({proposal['threshold']} of {proposal['owners']} -> {threshold} of {owners}); refusing to execute")
    if nonce != proposal["nonce"]:
        journal.append(key, "safe_refused", reason=f"Safe nonce moved from {proposal['nonce']} to {nonce}")
        raise SafeRefused(f"Safe {guardian.address}: its nonce moved from {proposal['nonce']} to {nonce} since the "
                              "proposal; another transaction executed first")
    data = tx.exec_call(signatures)
    exec_intent = onchain.Intent(exec_intent.key, intent.chain, guardian.address, data, exec_intent.label)
    journal.append(exec_intent.key, "safe_exec_prepared", owners_signed=sorted(signatures), data="0x" + data.hex())
    outcome = onchain.send_once(ctx, io, guardian.executor, exec_intent, journal)
    return outcome, {**info, "owners_signed": sorted(signatures)}


def _collect(ctx: StepContext, io: onchain.ChainIO, guardian: SafeGuardian, key: str, digest: bytes,
             proposal: dict[str, Any], wait_seconds: float) -> dict[str, bytes]:
    owners = set(proposal["owners"])
    excluded = set(proposal.get("excluded", []))  # fixed at proposal, so a resume excludes the same owners
    accepted: dict[str, bytes] = {}
    refused: set[str] = set()

    def consider(source: str, signature: bytes) -> None:
        owner: str | None
        reason: str | None
        try:
            owner = safe_tx.recover(digest, signature)
        except safe_tx.SafeSignatureError as exc:
            reason = str(exc)
            owner = None
        else:
            reason = None if owner in owners else f"{owner} is not an owner of the Safe (or signed another safeTxHash)"
            if owner in excluded:
                reason = f"{owner} is excluded from this Safe transaction ({excluded_reason(proposal)}); its signature does not count"
        if reason is None and owner is not None:
            if owner not in accepted:
                accepted[owner] = signature
                ctx.journal.append(key, "safe_signature", owner=owner, source=source)
        elif source not in refused:
            refused.add(source)
            ctx.journal.append(key, "safe_signature_refused", source=source, reason=reason)
            ctx.log.warning("refused a Safe signature from %s: %s", source, reason)

    for name, signer in guardian.owners.items():
        if isinstance(signer, LocalSigner) and signer.address not in excluded:  # an excluded key never signs
            consider(f"held owner {name}", signer.sign_digest(digest))
    folder = signatures_dir(ctx.artifacts_dir.parent.parent.parent, proposal["safe_tx_hash"])
    deadline = time.monotonic() + wait_seconds
    remote_seen: set[str] = set()
    checked_remote = 0.0
    while len(accepted) < proposal["threshold"]:
        if time.monotonic() - checked_remote > 0.5:  # `breakglass sign` from an owner's own machine, via Prefect
            checked_remote = time.monotonic()
            for source, signature in safesign.received(ctx.artifacts_dir.parent, proposal["safe_tx_hash"], remote_seen):
                consider(source, signature)
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            if f"breakglass sign {path.name}" in refused:
                continue
            try:
                submitted = json.loads(path.read_text())
                consider(f"breakglass sign {path.name}", bytes.fromhex(submitted["signature"][2:]))
            except (ValueError, KeyError):
                consider(f"breakglass sign {path.name}", b"")
        if len(accepted) >= proposal["threshold"]:
            break
        if time.monotonic() > deadline:
            raise BreakglassError(f"Safe {guardian.address}: {len(accepted)} of {proposal['threshold']} owner signatures "
                                  f"for {proposal['safe_tx_hash']} after {wait_seconds:g}s; owners sign with "
                                  f"`breakglass sign {ctx.incident} {proposal['safe_tx_hash']}`")
        ctx.check_cancelled()
        time.sleep(0.1)
    return dict(sorted(accepted.items())[: proposal["threshold"]])


def submit_signature(incident_dir: Path, safe_tx_hash: str, signature: bytes) -> str:
    """``breakglass sign``: verify against the proposal in this incident's journals, then file it."""
    proposal = None
    for journal in incident_dir.glob("runs/*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("event") == "safe_proposed" and entry.get("safe_tx_hash") == safe_tx_hash:
                proposal = entry
    if proposal is None:
        raise BreakglassError(f"no Safe transaction {safe_tx_hash} was proposed in incident {incident_dir.name}")
    try:
        owner = safe_tx.recover(bytes.fromhex(safe_tx_hash[2:]), signature)
    except safe_tx.SafeSignatureError as exc:
        raise BreakglassError(f"signature refused: {exc}") from None
    if owner not in proposal["owners"]:
        raise BreakglassError(f"signature refused: it recovers to {owner}, which is not an owner of Safe {proposal['safe']} "
                              f"(or it was made over another safeTxHash than {safe_tx_hash})")
    if owner in proposal.get("excluded", []):
        raise BreakglassError(f"signature refused: {owner} is excluded from {safe_tx_hash} ({excluded_reason(proposal)}); "
                              "another owner must sign")
    folder = signatures_dir(incident_dir, safe_tx_hash)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / f"{owner}.json").write_text(json.dumps({"owner": owner, "signature": "0x" + signature.hex()}))
    return owner
