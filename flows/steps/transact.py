"""Step kind ``transact``: any other emergency call (revoke a role, lower a rate limit, raise a
delay), with the same guarantees as ``pause``: simulated first, journaled before it is sent,
landed at most once."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.callargs import coerce_args, signature_problem
from breakglass.flows.language.types import Model, Name, is_template
from breakglass.flows.run.ports import Intent, SafeGuardian
from breakglass.flows.steps.base import KindBase, Ref, StepBase
from breakglass.flows.steps.txintent import fees, signer_ref
from breakglass.integrations.chain import abi

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext


class TransactParams(Model):
    contract: Name
    function: str = Field(description="e.g. 'setRateLimit(uint256)' or 'revokeRole(bytes32,address)'")
    args: list[Any] = Field(default_factory=list, description="arguments; templates allowed; a bytes32 may be a role name such as GUARDIAN_ROLE")
    signer: Name
    value: int = Field(0, ge=0, description="wei to send")
    confirmations: int = Field(1, ge=1, le=64)


class TransactStep(StepBase):
    kind: Literal["transact"]
    with_: TransactParams = Field(alias="with")


class TransactOutputs(Model):
    contract: str
    chain: str
    function: str
    status: Literal["mined"]
    tx_hash: str
    block_number: int
    gas_used: int
    transactions: list[str]
    submitted_via: str | None = None
    safe_tx_hash: str | None = None
    safe_owners_signed: list[str] = Field(default_factory=list)


class Transact(KindBase):
    kind: ClassVar[str] = "transact"
    default_timeout: ClassVar[float] = 1800.0  # seconds without `timeout:` (a Safe's owners sign within it)
    spec: ClassVar[type[StepBase]] = TransactStep
    outputs: ClassVar[type[Model]] = TransactOutputs
    signing: ClassVar[bool] = True

    def references(self, step: TransactStep) -> list[Ref]:
        return [Ref("contract", step.with_.contract, ("with", "contract")), Ref("signer", step.with_.signer, ("with", "signer"))]

    def check(self, step: TransactStep, inventory: Inventory | None, playbook_dir: Any) -> list[tuple[tuple[Any, ...], str, str]]:
        p = step.with_
        if is_template(p.function) or isinstance(p.args, str):
            return []
        problem = signature_problem(p.function, p.args)
        return [(("with", problem[0]), problem[1], "Arguments are typed by the signature, e.g. "
                 "function: 'setRateLimit(uint256)', args: [0].")] if problem else []

    def targets(self, step: TransactStep, inventory: Inventory) -> list[str]:
        p = step.with_
        c = inventory.contracts.get(p.contract)
        where = f"{p.contract} ({c.address}, chain {c.chain})" if c else p.contract
        return [f"{p.function} on {where} with args {p.args} via signer {p.signer}"]

    def intents(self, ctx: StepContext, step: TransactStep) -> list[dict[str, Any]]:
        p = step.with_
        contract = ctx.inventory.contracts[p.contract]
        fn = abi.parse(p.function)
        data = fn.encode(coerce_args(fn.inputs, p.args))
        return [{"step": step.id, "item": p.contract, "kind": "transact", **fees(ctx, contract.chain),
                 "target": ctx.address(p.contract), "function": p.function, "selector": "0x" + fn.selector.hex(),
                 "args": [str(a) for a in p.args], "calldata_sha256": hashlib.sha256(data).hexdigest(),
                 "signer": signer_ref(ctx, p.signer), "value": p.value}]

    def summary(self, outputs: dict[str, Any]) -> str:
        if not outputs.get("tx_hash"):
            return ""
        return f"{outputs.get('function', '')} tx {outputs['tx_hash']} in block {outputs.get('block_number')}"

    def run(self, ctx: StepContext, step: TransactStep) -> TransactOutputs:
        p: TransactParams = step.with_
        contract = ctx.inventory.contracts[p.contract]
        try:
            fn = abi.parse(p.function)
            data = fn.encode(coerce_args(fn.inputs, p.args))
        except (abi.SignatureError, ValueError, TypeError) as exc:
            raise BreakglassError(f"with.function/args: cannot encode {p.function} with {p.args}: {exc}") from None
        io = ctx.tx.io(contract.chain)
        digest = hashlib.sha256(json.dumps([p.function, p.args, p.value], sort_keys=True, default=str).encode()).hexdigest()[:16]
        intent = Intent(key=f"{ctx.run_key}/{ctx.step_id}/{contract.chain}/{p.contract}/{fn.name}/{digest}",
                                chain=contract.chain, to=ctx.address(p.contract), data=data, value=p.value,
                                label=f"{p.contract}.{p.function}")
        signer = ctx.signer(p.signer)
        safe_info: dict[str, Any] = {}
        if isinstance(signer, SafeGuardian):
            outcome, safe_info = ctx.tx.send_safe(io, signer, intent)
        else:
            outcome = ctx.tx.send_once(io, signer, intent)
        if outcome.status != "mined":
            raise BreakglassError(f"{intent.label}: {outcome.status}: {outcome.reason or ''}".rstrip(": "))
        assert outcome.block_number is not None and outcome.tx_hash is not None
        ctx.tx.wait_confirmations(io, outcome.block_number, p.confirmations)
        return TransactOutputs(contract=p.contract, chain=contract.chain, function=p.function, status="mined",
                               tx_hash=outcome.tx_hash, block_number=outcome.block_number,
                               gas_used=outcome.gas_used or 0, transactions=outcome.hashes,
                               submitted_via=outcome.submitted_via, safe_tx_hash=safe_info.get("safe_tx_hash"),
                               safe_owners_signed=safe_info.get("owners_signed", []))


HANDLER = Transact()
