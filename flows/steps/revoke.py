"""Step kind ``revoke``: take roles away from a compromised account, exactly once per role.

Every (contract, role) is read in one batch per chain; ``revokeRole`` is sent only for roles
the account holds, each as its own intent through the signer (a key, or a Safe whose owners
sign), with the journal and skip-if-done guarantees of ``pause``. Then every role is read
again: the step reports that reading, and fails if the account still holds any of them.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.callargs import role_id
from breakglass.flows.language.types import AddressExpr, Model, Name, RoleId, is_template
from breakglass.flows.run.ports import ChainReader, Intent, SafeGuardian
from breakglass.flows.steps.base import KindBase, Ref, StepBase
from breakglass.flows.steps.txintent import fees, signer_ref
from breakglass.integrations.chain import abi, multicall
from breakglass.integrations.chain.rpc import RpcError

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext

HAS_ROLE = abi.parse("hasRole(bytes32,address)(bool)")
REVOKE_ROLE = abi.parse("revokeRole(bytes32,address)")


class RevokeParams(Model):
    contracts: list[Name] = Field(min_length=1, description="contracts to revoke the roles on, on any chains")
    roles: list[RoleId] = Field(min_length=1, description="role names (keccak256 of the name; DEFAULT_ADMIN_ROLE is 0x00) or bytes32 ids")
    account: AddressExpr = Field(description="the compromised account: an address or a template such as '{{ inputs.compromised_signer }}'")
    signer: Name = Field(description="a signer holding the roles' admin role (DEFAULT_ADMIN_ROLE); typically a kind: safe signer")
    confirmations: int = Field(1, ge=1, le=64, description="blocks to wait after inclusion before reading the roles again")


class RevokeStep(StepBase):
    kind: Literal["revoke"]
    with_: RevokeParams = Field(alias="with")


class Revoked(Model):
    contract: str
    chain: str
    role: str
    tx_hash: str
    block_number: int | None = None
    safe_tx_hash: str | None = Field(None, description="for a Safe signer: the hash its owners signed")
    safe_owners_signed: list[str] = Field(default_factory=list)


class RoleState(Model):
    contract: str
    chain: str
    role: str
    note: str | None = None


class RevokeOutputs(Model):
    account: str
    revoked: list[Revoked] = Field(description="roles taken away by this step, one transaction each")
    not_held: list[RoleState] = Field(description="roles the account did not hold: nothing sent")
    failed: list[RoleState] = Field(default_factory=list, description="revocations that could not be sent or did not land")
    still_held: list[RoleState] = Field(default_factory=list, description="roles the account holds after the step")
    verified: bool = Field(description="every role read as not held after the step")
    transactions: list[str] = Field(description="every transaction hash signed (replacements included)")


class RevokeFailed(BreakglassError):
    def __init__(self, message: str, outputs: RevokeOutputs) -> None:
        super().__init__(message)
        self.outputs = outputs


def intent_key(ctx: StepContext, chain: str, contract: str, role: str, account: str) -> str:
    return f"{ctx.run_key}/{ctx.step_id}/{chain}/{contract}/revokeRole/0x{role_id(role).hex()}/{account}"


class Revoke(KindBase):
    kind: ClassVar[str] = "revoke"
    default_timeout: ClassVar[float] = 1800.0  # seconds without `timeout:` (several transactions; a Safe's owners sign within it)
    spec: ClassVar[type[StepBase]] = RevokeStep
    outputs: ClassVar[type[Model]] = RevokeOutputs

    def references(self, step: RevokeStep) -> list[Ref]:
        p = step.with_
        return [Ref("signer", p.signer, ("with", "signer"))] + [
            Ref("contract", c, ("with", "contracts", i)) for i, c in enumerate(p.contracts)]

    def check(self, step: RevokeStep, inventory: Inventory | None, playbook_dir: Any) -> list[tuple[tuple[Any, ...], str, str]]:
        p = step.with_
        spec = inventory.signers.get(p.signer) if inventory is not None else None
        if spec is None or inventory is None:
            return []
        out: list[tuple[tuple[Any, ...], str, str]] = []
        if spec.kind == "safe":
            for i, name in enumerate(p.contracts):
                contract = inventory.contracts.get(name)
                if contract is not None and contract.chain != spec.chain:
                    out.append((("with", "contracts", i), f"contract '{name}' is on chain {contract.chain}, but Safe "
                                f"signer '{p.signer}' is on chain {spec.chain}", "A Safe acts only on its own chain; "
                                "use one revoke step per chain, each with that chain's admin signer."))
        declared = getattr(spec, "address", None)
        if not is_template(p.account) and declared and declared.lower() == p.account.lower():
            out.append((("with", "account"), f"account is the address of signer '{p.signer}' itself",
                        "Revoking the signer's own roles would lock it out; name the compromised account."))
        return out

    def targets(self, step: RevokeStep, inventory: Inventory) -> list[str]:
        p = step.with_
        out = []
        for name in p.contracts:
            c = inventory.contracts.get(name)
            where = f"{name} ({c.address}, chain {c.chain})" if c else name
            out.append(f"revokeRole({', '.join(p.roles)}) from {p.account} on {where} via signer {p.signer}, where held")
        return out

    def intents(self, ctx: StepContext, step: RevokeStep) -> list[dict[str, Any]]:
        """Every revokeRole the step may send; at run time only those for roles the account holds are sent."""
        p = step.with_
        return [{"step": step.id, "item": f"{name}:{role}", "kind": "revoke", **fees(ctx, ctx.inventory.contracts[name].chain),
                 "target": ctx.address(name), "function": "revokeRole(bytes32,address)",
                 "selector": "0x" + REVOKE_ROLE.selector.hex(), "args": [role, p.account],
                 "calldata_sha256": calldata_sha256(role, p.account), "signer": signer_ref(ctx, p.signer), "value": 0,
                 "condition": f"sent only if hasRole({role}, {p.account}) reads true"}
                for name in dict.fromkeys(p.contracts) for role in dict.fromkeys(p.roles)]

    def summary(self, outputs: dict[str, Any]) -> str:
        revoked = ", ".join(f"{r.get('contract')}:{r.get('role')}" for r in outputs.get("revoked", []))
        return f"revoked {revoked or 'nothing'} from {outputs.get('account')}; {len(outputs.get('not_held', []))} not held" + (
            "" if outputs.get("verified") else "; NOT verified")

    def run(self, ctx: StepContext, step: RevokeStep) -> RevokeOutputs:
        p: RevokeParams = step.with_
        signer = ctx.signer(p.signer)
        account = p.account  # checked as an address when the templates were rendered
        if account.lower() == signer.address.lower():
            what = "the Safe itself" if isinstance(signer, SafeGuardian) else "the signer's own address"
            raise BreakglassError(f"with.account: {account} is {what} ('{p.signer}'); revoking its roles would lock "
                                  "breakglass out. Name the compromised account.")
        chains: dict[str, list[str]] = {}
        for name in dict.fromkeys(p.contracts):
            chains.setdefault(ctx.inventory.contracts[name].chain, []).append(name)
        with ThreadPoolExecutor(max_workers=min(8, len(chains)), thread_name_prefix="revoke") as pool:
            parts = list(pool.map(lambda item: _revoke_chain(ctx, signer, item[0], item[1], account, p), chains.items()))
        outputs = RevokeOutputs(
            account=account, revoked=[r for part in parts for r in part["revoked"]],
            not_held=[r for part in parts for r in part["not_held"]], failed=[r for part in parts for r in part["failed"]],
            still_held=[r for part in parts for r in part["still_held"]],
            verified=not any(part["still_held"] or part["failed"] for part in parts),
            transactions=[h for part in parts for h in part["transactions"]])
        if not outputs.verified:
            problems = [f"{r.contract} {r.role}: {r.note}" for r in outputs.failed]
            problems += [f"{r.contract} {r.role}: still held" for r in outputs.still_held if (r.contract, r.role)
                         not in {(f.contract, f.role) for f in outputs.failed}]
            raise RevokeFailed(f"{account} still holds roles: " + "; ".join(problems), outputs)
        return outputs


def read_roles(ctx: StepContext, io: ChainReader, pairs: list[tuple[str, str]], account: str) -> list[bool]:
    """``hasRole(role, account)`` for every (contract, role), at one block, in one batch."""
    mc = ctx.address(io.spec.multicall3)
    head = io.rpc.batch([("eth_blockNumber", []), ("eth_getCode", [mc, "latest"])])
    if isinstance(head[0], RpcError):
        raise BreakglassError(f"chain '{io.name}' ({io.rpc.used.label}): {head[0]}")
    has_multicall = not isinstance(head[1], RpcError) and head[1] not in (None, "0x", "0x0")
    calls = [multicall.Call(ctx.address(c), HAS_ROLE.encode([role_id(r), account])) for c, r in pairs]
    out = []
    for (contract, role), result in zip(pairs, multicall.read(io.rpc, calls, int(head[0], 16), mc if has_multicall else None),
                                        strict=True):
        if not result.ok or len(result.data) < 32:
            raise BreakglassError(f"cannot read hasRole({role}, {account}) on {contract} ({ctx.address(contract)}): "
                                  f"{result.error or 'empty answer'}; does the contract use AccessControl roles?")
        out.append(bool(HAS_ROLE.decode(result.data)[0]))
    return out


def _in_flight(ctx: StepContext, key: str) -> bool:
    """A transaction for this intent was signed in an earlier attempt: reconcile it, whatever the roles read now."""
    return bool(ctx.journal.signed(key) or ctx.journal.signed(key + "/exec"))


def _revoke_chain(ctx: StepContext, signer: Any, chain: str, contracts: list[str], account: str,
                  p: RevokeParams) -> dict[str, list[Any]]:
    io = ctx.tx.io(chain)
    pairs = [(c, r) for c in contracts for r in dict.fromkeys(p.roles)]
    held = read_roles(ctx, io, pairs, account)
    out: dict[str, list[Any]] = {"revoked": [], "not_held": [], "failed": [], "still_held": [], "transactions": []}
    last_block = None
    for (contract, role), has in zip(pairs, held, strict=True):
        key = intent_key(ctx, chain, contract, role, account)
        if not has and not _in_flight(ctx, key):
            out["not_held"].append(RoleState(contract=contract, chain=chain, role=role))
            continue
        address = ctx.address(contract)
        intent = Intent(key=key, chain=chain, to=address, data=REVOKE_ROLE.encode([role_id(role), account]),
                                label=f"{contract}.revokeRole({role}, {account})")

        def gone(c: str = contract, r: str = role) -> bool:
            return not read_roles(ctx, io, [(c, r)], account)[0]

        safe_info: dict[str, Any] = {}
        try:
            if isinstance(signer, SafeGuardian):
                outcome, safe_info = ctx.tx.send_safe(io, signer, intent, skip=gone, exclude=[account])  # never its own revocation
            else:
                outcome = ctx.tx.send_once(io, signer, intent, skip=gone)
        except BreakglassError as exc:  # a revert in simulation, a changed Safe, the fee cap: this role only
            out["failed"].append(RoleState(contract=contract, chain=chain, role=role, note=str(exc)))
            continue
        out["transactions"] += outcome.hashes
        if outcome.status == "skipped":
            out["not_held"].append(RoleState(contract=contract, chain=chain, role=role, note="revoked by someone else first"))
        elif outcome.status == "mined" and outcome.tx_hash is not None:
            last_block = max(last_block or 0, outcome.block_number or 0)
            out["revoked"].append(Revoked(contract=contract, chain=chain, role=role, tx_hash=outcome.tx_hash,
                                          block_number=outcome.block_number, safe_tx_hash=safe_info.get("safe_tx_hash"),
                                          safe_owners_signed=safe_info.get("owners_signed", [])))
        else:
            out["failed"].append(RoleState(contract=contract, chain=chain, role=role,
                                           note=f"{outcome.status}: {outcome.reason or ''}".rstrip(": ")))
    if last_block is not None:
        ctx.tx.wait_confirmations(io, last_block, p.confirmations)
    for (contract, role), has in zip(pairs, read_roles(ctx, io, pairs, account), strict=True):
        if has:
            out["still_held"].append(RoleState(contract=contract, chain=chain, role=role))
    return out


def calldata_sha256(role: str, account: str) -> str:
    return hashlib.sha256(REVOKE_ROLE.encode([role_id(role), account])).hexdigest()


HANDLER = Revoke()
