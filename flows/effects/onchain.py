"""Emergency transactions that land exactly once, across retries, crashes and resumes.

The order is fixed: simulate, take the signer's nonce lock, sign, journal the signed bytes
(fsync), broadcast, journal the broadcast. Whatever happens afterwards, the journal knows
every transaction that could land for an intent, all at one nonce, so at most one of them
ever can. A retry or resume never signs for a new nonce while a journaled one is still open:
it looks for receipts, re-broadcasts the same bytes, or replaces them at the same nonce with
higher fees (never above the inventory's cap).

The one exception is a nonce gap (``noncegap``): a transaction queued above the chain's nonce with
nothing known below it can never land. The journal then says it is superseded, a no-op
(a 0-value transfer to itself) replaces it at its nonce, and the intent is signed again at the
lowest missing nonce: whatever lands at the old nonce is that no-op, so the intent still lands once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from breakglass.flows.effects import chainkey, fixture, noncegap, signerlock
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.inventory import Fees
from breakglass.flows.run import failpoints, interrupt
from breakglass.flows.run.context import StepContext, endpoints
from breakglass.flows.run.journal import Journal, SignedEntry
from breakglass.flows.run.ports import FeeCapTooLow as FeeCapTooLow
from breakglass.flows.run.ports import Intent as Intent
from breakglass.flows.run.ports import Outcome as Outcome
from breakglass.flows.run.ports import TxRejected as TxRejected
from breakglass.integrations.chain.revert import RevertDecoder, revert_data
from breakglass.integrations.chain.rpc import JsonRpc, RpcError
from breakglass.integrations.chain.signers import Signer, SignerError

GWEI = 10**9
GAP_CONFIRM = 2.0  # seconds (at least two block times) a gap must persist before it is healed: a send may be in flight
_DECODER: RevertDecoder | None = None


def decoder() -> RevertDecoder:
    global _DECODER
    if _DECODER is None:
        _DECODER = RevertDecoder(fixture.artifact(p.stem)["abi"] for p in sorted(fixture.ARTIFACTS.glob("*.json")))
    return _DECODER


class ChainIO:
    """Reads through the chain's RPCs; broadcasts through its private submission endpoints if any."""

    def __init__(self, ctx: StepContext, chain: str) -> None:
        self.name = chain
        self.spec = ctx.inventory.chains[chain]
        self.rpc = ctx.rpc(chain)
        self.submit = JsonRpc(_submit_endpoints(ctx, chain), patience=self.rpc.patience,
                              cancel=ctx.cancel) if self.spec.submit else self.rpc
        self.poll = max(0.02, min(0.25, self.spec.block_time / 4))
        self.scope = chainkey.scope_of(ctx.mode, ctx.bindings)
        self.seen_block: int | None = None
        self._key: chainkey.ChainKey | None = None

    @property
    def key(self) -> chainkey.ChainKey:
        """This chain instance (chain id, genesis hash, drill scope): what its signer state is keyed by."""
        if self._key is None:
            self._key = chainkey.key(self.rpc, self.spec.chain_id, self.scope)
        return self._key

    @property
    def private(self) -> JsonRpc | None:
        return self.submit if self.spec.submit else None

    def call(self, sender: str, to: str, data: bytes, block: str = "latest", value: int = 0) -> bytes:
        try:
            answer = self.rpc.call("eth_call", [{"from": sender, "to": to, "data": "0x" + data.hex(), "value": hex(value)}, block])
        except RpcError as exc:
            raise TxRejected(f"{decoder().decode(revert_data(exc)) if revert_data(exc) else exc.rpc_message}") from None
        return bytes.fromhex(answer[2:])

    def block_number(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def base_fee(self) -> int:
        block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
        self.seen_block = int(block.get("number") or "0x0", 16)
        return int(block.get("baseFeePerGas") or "0x0", 16)

    def nonce(self, address: str, tag: str) -> int:
        return int(self.rpc.call("eth_getTransactionCount", [address, tag]), 16)

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self.rpc.call("eth_getTransactionReceipt", [tx_hash])

    def in_pool(self, tx_hash: str) -> bool:
        return self.rpc.call("eth_getTransactionByHash", [tx_hash]) is not None

    def broadcast(self, raw: str) -> None:
        try:
            self.submit.call("eth_sendRawTransaction", [raw])
        except RpcError as exc:
            text = exc.rpc_message.lower()
            if "already" in text or "known" in text:
                return  # the same signed bytes are already there: safe
            if "nonce" in text or "underpriced" in text or "fee" in text:
                return  # the wait loop sees what landed and decides
            if "insufficient funds" in text:
                raise BreakglassError(f"chain {self.name}: the signer cannot pay for the transaction ({exc.rpc_message})") from None
            raise


def _submit_endpoints(ctx: StepContext, chain: str) -> list[Any]:
    spec = ctx.inventory.chains[chain]
    fake = spec.model_copy(update={"rpc": spec.submit})
    inventory = ctx.inventory.model_copy(update={"chains": {**ctx.inventory.chains, chain: fake}})
    return [type(e)(e.label.replace("env:", "submit:env:"), e.url) for e in endpoints(inventory, chain, ctx.bindings)]


def _initial_fees(base: int, policy: Fees) -> tuple[int, int]:
    cap = int(policy.max_fee_gwei * GWEI)
    tip = min(int(policy.priority_fee_gwei * GWEI), _tip_cap(policy))
    return min(cap, 2 * base + tip), tip


def _tip_cap(policy: Fees) -> int:
    return int((policy.priority_cap_gwei or policy.max_fee_gwei) * GWEI)


def _bumped(entry: SignedEntry, base: int, policy: Fees) -> tuple[int, int] | None:
    """Fees for a replacement at the same nonce: both raised by at least ``bump_percent``, within the caps."""
    factor = 1 + policy.bump_percent / 100
    tip = max(math.ceil(entry.tip * factor), 1)
    max_fee = max(math.ceil(entry.max_fee * factor), 2 * base + tip)
    if tip > _tip_cap(policy) or max_fee > int(policy.max_fee_gwei * GWEI):
        return None
    return max_fee, tip


def send_once(ctx: StepContext, io: ChainIO, signer: Signer, intent: Intent, journal: Journal, *,
              skip: Callable[[], bool] | None = None) -> Outcome:
    if not journal.signed(intent.key):
        if skip is not None and skip():
            return Outcome("skipped")
        io.call(signer.address, intent.to, intent.data, value=intent.value)  # raises TxRejected with the reason
        with signerlock.hold(ctx.home, io.key, signer.address) as slot:
            if journal.signed(intent.key):  # another attempt of this step got here first
                return _wait(ctx, io, signer, intent, journal)
            nonce = _next_nonce(ctx, io, signer, slot, journal, intent)
            try:
                gas = int(io.rpc.call("eth_estimateGas", [{"from": signer.address, "to": intent.to,
                                                           "data": "0x" + intent.data.hex(), "value": hex(intent.value)}]), 16)
            except RpcError as exc:
                reason = decoder().decode(revert_data(exc)) if revert_data(exc) else exc.rpc_message
                raise TxRejected(f"{intent.label}: gas estimation failed: {reason}") from None
            base = io.base_fee()
            if base > io.spec.fees.max_fee_gwei * GWEI:
                raise FeeCapTooLow(f"{intent.label}: the base fee on {io.name} is {base / GWEI:g} gwei, above the fee cap of "
                                   f"{io.spec.fees.max_fee_gwei:g} gwei; raise chains.{io.name}.fees.max_fee_gwei to send now")
            max_fee, tip = _initial_fees(base, io.spec.fees)
            tx = {"type": 2, "chainId": io.spec.chain_id, "nonce": nonce, "to": intent.to, "value": intent.value,
                  "data": "0x" + intent.data.hex(), "gas": int(gas * 1.25) + 10_000, "maxFeePerGas": max_fee,
                  "maxPriorityFeePerGas": tip}
            with interrupt.critical():  # Ctrl-C waits for the journal line (an impersonated signer sends in _sign)
                signed = _sign(signer, tx)
                journal.append(intent.key, "signed", hash=signed.hash, raw="0x" + signed.raw.hex(), nonce=nonce,
                               max_fee=max_fee, tip=tip, gas=tx["gas"], chain_id=io.spec.chain_id, to=intent.to,
                               signer=signer.address, label=intent.label)
            slot.used(nonce, signed.hash, io.seen_block)
            failpoints.hit("tx.after_sign")
            if signed.raw:  # an impersonated fork-drill signer has sent it already
                io.broadcast("0x" + signed.raw.hex())
            journal.append(intent.key, "broadcast", hash=signed.hash, nonce=nonce, to=intent.to, signer=signer.address)
            failpoints.hit("tx.after_broadcast")
    else:
        journal.append(intent.key, "reconcile", reason="retry or resume found journaled transactions")
    return _wait(ctx, io, signer, intent, journal)


def _next_nonce(ctx: StepContext, io: ChainIO, signer: Signer, slot: signerlock.Slot, journal: Journal,
                intent: Intent) -> int:
    """The node's pending count, unless this process or another one used a later nonce whose transaction some node
    can still show (the chain, the public pool, or the private submit endpoint, which no public pool mirrors).
    A claim nobody can prove is stale: said in the log and the audit, and never signed above."""
    pending = io.nonce(signer.address, "pending")
    nonce, stale = noncegap.choose(io.rpc, io.private, signer.address, pending, slot.claims())
    for claim in stale:
        ctx.log.warning("signer %s on %s: the %s claims nonce %d is next, but its transaction %s is nowhere to be found; "
                        "stale, using the chain's nonce %d", signer.address, io.name, claim.source, claim.next,
                        claim.hash, pending)
        journal.append(intent.key, "stale_nonce_record", signer=signer.address, claimed_next=claim.next, hash=claim.hash,
                       source=claim.source, chain_nonce=pending, chain=io.key.describe())
    if stale and nonce == pending:
        slot.forget()
    return nonce


def _sign(signer: Signer, tx: dict[str, Any]) -> Any:
    try:
        return signer.sign(tx)
    except SignerError as exc:
        raise BreakglassError(str(exc)) from None


def _wait(ctx: StepContext, io: ChainIO, signer: Signer, intent: Intent, journal: Journal) -> Outcome:
    policy = io.spec.fees
    last_action = started = io.block_number()
    gap_since: float | None = None
    noted: tuple[int, bool] | None = None
    while True:
        entries = journal.signed(intent.key)
        hashes = [e.hash for e in entries]
        found = _find_receipt(io, entries)
        if found is not None:
            return _landed(io, signer, intent, journal, found, hashes)
        current = entries[-1]
        latest = io.nonce(signer.address, "latest")
        if latest > current.nonce:
            found = _find_receipt(io, entries)  # it may have landed between the two reads
            if found is not None:
                return _landed(io, signer, intent, journal, found, hashes)
            journal.append(intent.key, "nonce_consumed", nonce=current.nonce)
            return Outcome("nonce_consumed", nonce=current.nonce, hashes=hashes,
                           reason=f"nonce {current.nonce} was used by another transaction of {signer.address}")
        missing = _gap(ctx, io, signer, journal, current.nonce) if latest < current.nonce else None
        block, base = io.block_number(), io.base_fee()
        if (missing is not None or block - started > policy.bump_after_blocks) and noted != (latest, missing is not None):
            noted = (latest, missing is not None)  # for `status`: a pause that waits, and why
            journal.append(intent.key, "waiting", hash=current.hash, nonce=current.nonce, chain_nonce=latest,
                           blocks=block - started, behind_gap=missing is not None, signer=signer.address,
                           label=intent.label, chain=io.name)
        if missing is None:
            gap_since = None
        elif gap_since is None:
            gap_since = time.monotonic()
        elif time.monotonic() - gap_since >= max(GAP_CONFIRM, 2 * io.spec.block_time):
            _heal(ctx, io, signer, intent, journal, current)
            gap_since, last_action = None, block
            continue
        underpriced = current.max_fee < base
        if underpriced or block - last_action >= policy.bump_after_blocks:
            fees = _bumped(current, base, policy)
            if fees is not None:
                _replace(ctx.home, io, signer, intent, journal, current, fees)
            else:
                journal.append(intent.key, "rebroadcast", hash=current.hash, reason="fee cap reached")
                if len(current.raw) > 2:
                    io.broadcast(current.raw)
            last_action = block
        elif len(current.raw) > 2 and not io.in_pool(current.hash):
            io.broadcast(current.raw)  # evicted, or never sent before a crash: the same bytes again
            journal.append(intent.key, "rebroadcast", hash=current.hash)
        ctx.check_cancelled()
        time.sleep(io.poll)


def _gap(ctx: StepContext, io: ChainIO, signer: Signer, journal: Journal, nonce: int) -> int | None:
    """The lowest missing nonce below ``nonce`` if nothing is known there (the transaction waits behind a gap)."""
    lowest = io.nonce(signer.address, "pending")  # the public pool holds everything below it
    if lowest >= nonce:
        return None
    if noncegap.journaled_at(journal.entries(), signer.address, lowest):
        return None  # this run's own transaction there: its wait loop tends it
    record = signerlock.read_record(signerlock.record_path(ctx.home, io.key, signer.address))
    hashes = noncegap.recorded_hashes(record, lowest)
    return None if noncegap.known_at(io.rpc, io.private, signer.address, lowest, hashes) else lowest


def _heal(ctx: StepContext, io: ChainIO, signer: Signer, intent: Intent, journal: Journal, current: SignedEntry) -> None:
    """Supersede a transaction stuck behind a gap: a no-op takes its nonce, the intent is signed at the lowest missing one."""
    with signerlock.hold(ctx.home, io.key, signer.address) as slot:
        latest = io.nonce(signer.address, "latest")
        lowest = _gap(ctx, io, signer, journal, current.nonce) if latest < current.nonce else None
        if lowest is None:  # filled meanwhile (by another holder of the lock): nothing to heal
            return
        base = io.base_fee()
        reason = (f"nonce {current.nonce} is queued behind a gap: the chain's nonce is {latest} and nothing is known "
                  f"at nonce {lowest}; re-signed at {lowest}")
        ctx.log.warning("%s: %s", intent.label, reason)
        journal.append(intent.key, "superseded", hash=current.hash, nonce=current.nonce, by_nonce=lowest,
                       chain_nonce=latest, signer=signer.address, reason=reason)
        cancel_fees = _bumped(current, base, io.spec.fees)
        if cancel_fees is not None:  # whatever lands at the old nonce must not be the intent a second time
            noop = _sign(signer, {"type": 2, "chainId": io.spec.chain_id, "nonce": current.nonce, "to": signer.address,
                                  "value": 0, "data": "0x", "gas": 21_000, "maxFeePerGas": cancel_fees[0],
                                  "maxPriorityFeePerGas": cancel_fees[1]})
            journal.append(intent.key, "cancel", hash=noop.hash, raw="0x" + noop.raw.hex(), nonce=current.nonce,
                           max_fee=cancel_fees[0], tip=cancel_fees[1], replaces=current.hash)
            if noop.raw:
                io.broadcast("0x" + noop.raw.hex())
        else:
            journal.append(intent.key, "cancel_skipped", nonce=current.nonce,
                           reason="the fee cap leaves no room to replace it; it stays queued")
        first = next(e for e in journal.entries(intent.key) if e["event"] == "signed")
        max_fee, tip = _initial_fees(base, io.spec.fees)
        tx = {"type": 2, "chainId": io.spec.chain_id, "nonce": lowest, "to": intent.to, "value": intent.value,
              "data": "0x" + intent.data.hex(), "gas": first["gas"], "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}
        signed = _sign(signer, tx)
        journal.append(intent.key, "signed", hash=signed.hash, raw="0x" + signed.raw.hex(), nonce=lowest, max_fee=max_fee,
                       tip=tip, gas=first["gas"], chain_id=io.spec.chain_id, to=intent.to, signer=signer.address,
                       label=intent.label, heals=current.hash)
        slot.used(lowest, signed.hash, io.seen_block)
        if signed.raw:
            io.broadcast("0x" + signed.raw.hex())
        journal.append(intent.key, "broadcast", hash=signed.hash, nonce=lowest, to=intent.to, signer=signer.address)


def _replace(home: Path, io: ChainIO, signer: Signer, intent: Intent, journal: Journal, current: SignedEntry,
             fees: tuple[int, int]) -> None:
    with signerlock.hold(home, io.key, signer.address):
        first = next(e for e in journal.entries(intent.key) if e["event"] == "signed")
        tx = {"type": 2, "chainId": io.spec.chain_id, "nonce": current.nonce, "to": intent.to, "value": intent.value,
              "data": "0x" + intent.data.hex(), "gas": first["gas"], "maxFeePerGas": fees[0], "maxPriorityFeePerGas": fees[1]}
        signed = _sign(signer, tx)
        journal.append(intent.key, "replacement", hash=signed.hash, raw="0x" + signed.raw.hex(), nonce=current.nonce,
                       max_fee=fees[0], tip=fees[1], replaces=current.hash)
        if signed.raw:
            io.broadcast("0x" + signed.raw.hex())


def _find_receipt(io: ChainIO, entries: list[SignedEntry]) -> dict[str, Any] | None:
    for entry in reversed(entries):
        receipt = io.receipt(entry.hash)
        if receipt is not None:
            return receipt
    return None


def _landed(io: ChainIO, signer: Signer, intent: Intent, journal: Journal, receipt: dict[str, Any],
            hashes: list[str]) -> Outcome:
    number = int(receipt["blockNumber"], 16)
    ok = int(receipt["status"], 16) == 1
    reason = None
    if not ok:
        try:
            io.call(signer.address, intent.to, intent.data, block=hex(number), value=intent.value)
            reason = "reverted (no reason on replay)"
        except TxRejected as exc:
            reason = str(exc)
    journal.append(intent.key, "receipt", hash=receipt["transactionHash"], block=number, status=1 if ok else 0)
    failpoints.hit("tx.after_receipt")
    return Outcome("mined" if ok else "reverted", receipt["transactionHash"], number, int(receipt["gasUsed"], 16),
                   None, hashes, reason, io.submit.used.label)


def wait_confirmations(ctx: StepContext, io: ChainIO, block: int, confirmations: int) -> None:
    while io.block_number() < block + confirmations - 1:
        ctx.check_cancelled()
        time.sleep(io.poll)
