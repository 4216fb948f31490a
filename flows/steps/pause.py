"""Step kind ``pause``: pause named contracts through a guardian signer, exactly once.

Each contract's pause state is read first: an already-paused contract gets no transaction.
Contracts on different chains are paused in parallel; one signer's transactions on one chain
are serialized by its nonce lock. After inclusion (and the configured confirmations) the
state is read again, and that reading is what the step reports.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import pausespec
from breakglass.flows.language.types import Model, Name
from breakglass.flows.run.ports import ChainReader, FeeCapTooLow, Intent, SafeGuardian, SafeRefused, TxRejected
from breakglass.flows.steps.base import KindBase, Problem, Ref, StepBase
from breakglass.flows.steps.txintent import fees, signer_ref
from breakglass.integrations.chain import abi

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Contract, Inventory
    from breakglass.flows.run.context import StepContext
    from breakglass.flows.spec.playbook import Playbook


class PauseParams(Model):
    contracts: list[Name] = Field(min_length=1, description="contracts to pause, on any chains")
    signer: Name = Field(description="the guardian signer")
    confirmations: int = Field(1, ge=1, le=64, description="blocks to wait after inclusion before reading the state again")
    prepared: bool = Field(False, description="broadcast a pre-signed transaction (from `breakglass prepare`) before the run starts")


class PauseStep(StepBase):
    kind: Literal["pause"]
    with_: PauseParams = Field(alias="with")

    @model_validator(mode="after")
    def _prepared_runs_first(self) -> PauseStep:
        if self.with_.prepared and self.if_ is not None:
            raise ValueError("a prepared pause is broadcast before the run starts (or when its gates pass), so it cannot have 'if'")
        return self

    def prepared_pause(self) -> bool:
        return self.with_.prepared


class ContractResult(Model):
    contract: str
    chain: str
    address: str
    status: Literal["paused", "already_paused", "failed"]
    paused: bool
    tx_hash: str | None = None
    block_number: int | None = None
    gas_used: int | None = None
    transactions: list[str] = Field(default_factory=list, description="every hash signed for this intent (replacements)")
    submitted_via: str | None = Field(None, description="the broadcast endpoint, by env var name and index")
    fast_path: str | None = Field(None, description="whether a prepared transaction was used, and if not, why")
    safe_tx_hash: str | None = Field(None, description="for a Safe guardian: the hash its owners signed")
    safe_owners_signed: list[str] = Field(default_factory=list)
    note: str | None = None


class PauseOutputs(Model):
    results: list[ContractResult]
    paused: dict[str, bool]
    all_paused: bool
    tx_hashes: list[str]


def read_paused(io: ChainReader, address: str, contract: Contract, block: str = "latest") -> bool:
    """Every ``paused`` view of the contract says paused. Raises TxRejected when a view cannot be read as declared."""
    def call(to: str, data: bytes) -> bytes:
        return io.call(to, to, data, block=block)
    try:
        return pausespec.is_paused(contract, call, address)
    except (ValueError, abi.SignatureError) as exc:  # empty answer (no code), or not the declared shape
        raise TxRejected(str(exc)) from None


class Pause(KindBase):
    kind: ClassVar[str] = "pause"
    default_timeout: ClassVar[float] = 600.0  # seconds without `timeout:` (sign, send, mine; a Safe's owners sign within it)
    spec: ClassVar[type[StepBase]] = PauseStep
    outputs: ClassVar[type[Model]] = PauseOutputs
    protective: ClassVar[bool] = True
    pauses: ClassVar[bool] = True

    def references(self, step: PauseStep) -> list[Ref]:
        p = step.with_
        return [Ref("signer", p.signer, ("with", "signer"))] + [
            Ref("contract", c, ("with", "contracts", i)) for i, c in enumerate(p.contracts)]

    def check(self, step: PauseStep, inventory: Inventory | None, playbook_dir: Any) -> list[tuple[tuple[Any, ...], str, str]]:
        spec = inventory.signers.get(step.with_.signer) if inventory is not None else None
        if step.with_.prepared and spec is not None and spec.kind == "safe":
            return [(("with", "prepared"), f"signer '{step.with_.signer}' is a Safe: a Safe transaction needs its owners' "
                     "signatures at the time, so it cannot be pre-signed", "Use a key signer for the prepared pause.")]
        return []

    def targets(self, step: PauseStep, inventory: Inventory) -> list[str]:
        out = []
        for name in step.with_.contracts:
            c = inventory.contracts.get(name)
            out.append(f"{pausespec.describe(c)} on {name} ({c.address}, chain {c.chain}) via signer {step.with_.signer}"
                       if c else name)
        return out

    def check_steps(self, step: PauseStep, playbook: Playbook) -> list[Problem]:
        kinds = {s.id: s.kind for s in playbook.steps}
        if step.with_.prepared and any(kinds.get(n) not in (None, "approval") for n in step.needs):
            return [(("needs",), "a prepared pause may wait only for approval gates",
                     "It is broadcast before the run starts, or the moment its gates pass.")]
        return []

    def intents(self, ctx: StepContext, step: PauseStep) -> list[dict[str, Any]]:
        out = []
        for name in step.with_.contracts:
            contract = ctx.inventory.contracts[name]
            actions = pausespec.actions(contract)
            for action in actions:
                out.append({"step": step.id, "item": name if len(actions) == 1 else f"{name}:{action.suffix}", "kind": "pause",
                            **fees(ctx, contract.chain), "target": ctx.address(name), "function": action.signature,
                            "selector": "0x" + action.fn.selector.hex(), "args": [str(a) for a in action.args],
                            **({"calldata_sha256": hashlib.sha256(action.data).hexdigest()} if action.args else {}),
                            "signer": signer_ref(ctx, step.with_.signer), "value": 0})
        return out

    def summary(self, outputs: dict[str, Any]) -> str:
        return ", ".join(f"{r.get('contract')} {r.get('status')}" + (f" ({r['tx_hash'][:12]}…)" if r.get("tx_hash") else "")
                         for r in outputs.get("results", []) if isinstance(r, dict))

    def transactions(self, outputs: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**r, "function": "pause()"} for r in outputs.get("results") or [] if isinstance(r, dict) and r.get("tx_hash")]

    def run(self, ctx: StepContext, step: PauseStep) -> PauseOutputs:
        p: PauseParams = step.with_
        signer = ctx.signer(p.signer)
        with ThreadPoolExecutor(max_workers=min(8, len(p.contracts)), thread_name_prefix="pause") as pool:
            results = list(pool.map(lambda name: _pause_one(ctx, signer, name, p), p.contracts))
        failed = [r for r in results if not r.paused]
        outputs = PauseOutputs(results=results, paused={r.contract: r.paused for r in results},
                               all_paused=not failed, tx_hashes=[r.tx_hash for r in results if r.tx_hash])
        if failed:
            detail = "; ".join(f"{r.contract}: {r.note or r.status}" for r in failed)
            raise PauseFailed(f"not paused: {detail}", outputs)
        return outputs


class PauseFailed(BreakglassError):
    def __init__(self, message: str, outputs: PauseOutputs) -> None:
        super().__init__(message)
        self.outputs = outputs


def _pause_one(ctx: StepContext, signer: Any, name: str, p: PauseParams) -> ContractResult:
    contract = ctx.inventory.contracts[name]
    io = ctx.tx.io(contract.chain)
    address = ctx.address(name)
    base = {"contract": name, "chain": contract.chain, "address": address,
            "fast_path": ctx.tx.fastpath_note(name) if p.prepared else None}
    views = pausespec.describe_views(contract)
    try:
        actions = pausespec.actions(contract)
        read_paused(io, address, contract)
    except abi.SignatureError as exc:
        return ContractResult(**base, status="failed", paused=False, note=f"the inventory's pause for {name} is wrong: {exc}")
    except TxRejected as exc:
        return ContractResult(**base, status="failed", paused=False,
                              note=f"cannot read {views} on {address} ({exc}): is it the right address, and does "
                              f"the contract have this view? Set 'paused:' (and 'pause:') for it in the inventory")
    results = [_send_action(ctx, io, signer, name, contract, address, action, p) for action in actions]
    if len(results) == 1:
        return ContractResult(**base, **results[0])
    paused = read_paused(io, address, contract)
    sent = [r for r in results if r.get("tx_hash")]
    status = "paused" if paused and sent else "already_paused" if paused else "failed"
    notes = [f"{a.label}: {r['note'] or r['status']}" for a, r in zip(actions, results, strict=True)]
    last = sent[-1] if sent else {}
    return ContractResult(**base, status=status, paused=paused, tx_hash=last.get("tx_hash"),
                          block_number=last.get("block_number"), gas_used=sum(r.get("gas_used") or 0 for r in sent) or None,
                          transactions=[h for r in results for h in r.get("transactions", [])],
                          submitted_via=last.get("submitted_via"), safe_tx_hash=last.get("safe_tx_hash"),
                          safe_owners_signed=last.get("safe_owners_signed", []),
                          note=None if status == "paused" and all(r["status"] == "paused" for r in results) else "; ".join(notes))


def _send_action(ctx: StepContext, io: ChainReader, signer: Any, name: str, contract: Contract, address: str,
                 action: pausespec.Action, p: PauseParams) -> dict[str, Any]:
    """One pause call, exactly once: skipped when the contract already reads paused."""
    intent = Intent(key=f"{ctx.run_key}/{ctx.step_id}/{contract.chain}/{name}/{action.suffix}", chain=contract.chain,
                            to=address, data=action.data, label=f"{name}.{action.label}")
    safe_info: dict[str, Any] = {}
    try:
        if isinstance(signer, SafeGuardian):
            outcome, safe_info = ctx.tx.send_safe(io, signer, intent, skip=lambda: read_paused(io, address, contract))
        else:
            outcome = ctx.tx.send_once(io, signer, intent, skip=lambda: read_paused(io, address, contract))
    except (FeeCapTooLow, SafeRefused) as exc:
        return {"status": "failed", "paused": read_paused(io, address, contract), "note": str(exc)}
    except TxRejected as exc:
        paused = read_paused(io, address, contract) or _pending_pause_lands(ctx, io, address, contract)
        return {"status": "already_paused" if paused else "failed", "paused": paused,
                "note": f"simulation of {action.label} from {signer.address} reverted: {exc}"
                + (" (another pause was already on its way)" if paused else "")}
    if outcome.status == "skipped":
        return {"status": "already_paused", "paused": True, "note": "was already paused; no transaction sent"}
    if outcome.block_number is not None:
        ctx.tx.wait_confirmations(io, outcome.block_number, p.confirmations)
    paused = read_paused(io, address, contract)
    common = {"paused": paused, "tx_hash": outcome.tx_hash, "block_number": outcome.block_number,
              "gas_used": outcome.gas_used, "transactions": outcome.hashes, "submitted_via": outcome.submitted_via,
              "safe_tx_hash": safe_info.get("safe_tx_hash"), "safe_owners_signed": safe_info.get("owners_signed", [])}
    if outcome.status == "mined":
        # With several actions the contract reads paused only after the last one; an earlier one is judged by its receipt.
        return {**common, "status": "paused" if paused or action.index < len(pausespec.actions(contract)) - 1 else "failed",
                "note": None if paused else "the transaction succeeded but the contract reads as not paused"}
    if outcome.status == "reverted":
        return {**common, "status": "already_paused" if paused else "failed",
                "note": f"transaction reverted: {outcome.reason}" + (" (someone else paused it first)" if paused else "")}
    return {**common, "status": "already_paused" if paused else "failed", "note": outcome.reason}


def _pending_pause_lands(ctx: StepContext, io: ChainReader, address: str, contract: Contract) -> bool:
    """Someone else's pause is in the mempool (our simulation saw it): wait for it instead of failing."""
    if not read_paused(io, address, contract, block="pending"):
        return False
    deadline = io.block_number() + 3 * max(1, io.spec.fees.bump_after_blocks)
    while io.block_number() <= deadline:
        if read_paused(io, address, contract):
            return True
        ctx.check_cancelled()
        time.sleep(io.poll)
    return read_paused(io, address, contract)


HANDLER = Pause()
