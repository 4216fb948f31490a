"""Step kind ``rotate``: swap a compromised owner of a Safe for a backup, through the Safe itself.

The Safe keeps its owners as a linked list, so ``swapOwner(prevOwner, oldOwner, newOwner)``
needs the owner before the old one in ``getOwners()`` order (the sentinel ``0x…01`` for the
first). The swap is a Safe self-call proposed, signed and executed like any Safe guardian
action, except that the owner being removed cannot sign it: its key is the compromised one.
An optional ``changeThreshold`` follows as a second intent. Owners and threshold are read
again at the end, and that reading is what the step reports.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from eth_utils import to_checksum_address
from pydantic import Field

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.inventory import SafeSigner
from breakglass.flows.language.types import AccountRef, AddressExpr, Model, Name, is_template
from breakglass.flows.run.ports import ChainReader, Intent, SafeGuardian, TxRejected
from breakglass.flows.steps.base import KindBase, Ref, StepBase
from breakglass.flows.steps.txintent import fees, signer_ref
from breakglass.integrations.chain import abi
from breakglass.integrations.chain import safe as safe_tx
from breakglass.integrations.chain.rpc import RpcUnavailable

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext

SENTINEL = "0x0000000000000000000000000000000000000001"
SWAP_OWNER = abi.parse("swapOwner(address,address,address)")
CHANGE_THRESHOLD = abi.parse("changeThreshold(uint256)")


class RotateParams(Model):
    safe: Name = Field(description="the Safe, as a signer of kind safe")
    remove: AddressExpr = Field(description="the owner to remove: an address or a template such as '{{ inputs.compromised_signer }}'")
    add: AccountRef = Field(description="the owner to add in its place: an address, a signer name, or a template")
    threshold: int | None = Field(None, ge=1, description="a new threshold, set after the swap (default: unchanged)")
    confirmations: int = Field(1, ge=1, le=64, description="blocks to wait after inclusion before reading the owners again")


class RotateStep(StepBase):
    kind: Literal["rotate"]
    with_: RotateParams = Field(alias="with")


class RotateOutputs(Model):
    safe: str
    chain: str
    removed: str
    added: str
    status: Literal["rotated", "already_rotated", "failed"]
    owners_before: list[str]
    owners_after: list[str]
    threshold_before: int
    threshold: int = Field(description="the threshold read after the step")
    tx_hash: str | None = Field(None, description="the swapOwner execTransaction (none if already rotated)")
    safe_tx_hash: str | None = None
    safe_owners_signed: list[str] = Field(default_factory=list, description="owners whose signatures executed the swap")
    excluded_owner: str = Field(description="the owner whose signature was never counted (the one removed)")
    threshold_tx_hash: str | None = None
    threshold_safe_tx_hash: str | None = None
    transactions: list[str] = Field(default_factory=list, description="every transaction hash signed (replacements included)")
    note: str | None = None


class RotateFailed(BreakglassError):
    def __init__(self, message: str, outputs: RotateOutputs) -> None:
        super().__init__(message)
        self.outputs = outputs


def read_safe(io: ChainReader, address: str) -> tuple[list[str], int]:
    """The Safe's owners in linked-list order, and its threshold."""
    try:
        owners = safe_tx.OWNERS.decode(io.call(address, address, safe_tx.OWNERS.encode()))[0]
        threshold = safe_tx.THRESHOLD.decode(io.call(address, address, safe_tx.THRESHOLD.encode()))[0]
    except (TxRejected, RpcUnavailable) as exc:
        raise BreakglassError(f"cannot read the owners of Safe {address} on {io.name}: {exc}") from None
    return [to_checksum_address(o) for o in owners], threshold


def prev_owner(owners: list[str], owner: str) -> str:
    i = owners.index(owner)
    return SENTINEL if i == 0 else owners[i - 1]


def swap_key(ctx: StepContext, chain: str, safe_address: str, remove: str, add: str) -> str:
    return f"{ctx.run_key}/{ctx.step_id}/{chain}/{safe_address}/swapOwner/{remove}/{add}"


def threshold_key(ctx: StepContext, chain: str, safe_address: str, threshold: int) -> str:
    return f"{ctx.run_key}/{ctx.step_id}/{chain}/{safe_address}/changeThreshold/{threshold}"


def proposal(ctx: StepContext, key: str) -> dict[str, Any] | None:
    """The Safe transaction an earlier attempt proposed for this intent: its calldata is what owners signed."""
    return next((e for e in ctx.journal.entries(key + "/safe") if e["event"] == "safe_proposed"), None)


def swap_data(ctx: StepContext, io: ChainReader, safe_address: str, remove: str, add: str) -> bytes | None:
    """The swapOwner calldata: as proposed earlier in this run, else from the owners now (None: not an owner)."""
    earlier = proposal(ctx, swap_key(ctx, io.name, safe_address, remove, add))
    if earlier is not None:
        return bytes.fromhex(earlier["data"][2:])
    owners, _ = read_safe(io, safe_address)
    return SWAP_OWNER.encode([prev_owner(owners, remove), remove, add]) if remove in owners else None


class Rotate(KindBase):
    kind: ClassVar[str] = "rotate"
    default_timeout: ClassVar[float] = 1800.0  # seconds without `timeout:` (several transactions; a Safe's owners sign within it)
    spec: ClassVar[type[StepBase]] = RotateStep
    outputs: ClassVar[type[Model]] = RotateOutputs

    def references(self, step: RotateStep) -> list[Ref]:
        p = step.with_
        refs = [Ref("signer", p.safe, ("with", "safe"))]
        if not is_template(p.add) and not p.add.startswith("0x"):
            refs.append(Ref("account", p.add, ("with", "add")))  # an account, not a signer to unlock
        return refs

    def check(self, step: RotateStep, inventory: Inventory | None, playbook_dir: Any) -> list[tuple[tuple[Any, ...], str, str]]:
        p = step.with_
        out: list[tuple[tuple[Any, ...], str, str]] = []
        spec = inventory.signers.get(p.safe) if inventory is not None else None
        if spec is not None and spec.kind != "safe":
            out.append((("with", "safe"), f"signer '{p.safe}' is of kind {spec.kind}, not a Safe",
                        "rotate changes the owners of a Safe: name a signer of kind safe."))
        if not is_template(p.remove) and not is_template(p.add) and p.remove.lower() == p.add.lower():
            out.append((("with", "add"), "add is the owner being removed", "Name the backup owner to add."))
        return out

    def targets(self, step: RotateStep, inventory: Inventory) -> list[str]:
        p = step.with_
        spec = inventory.signers.get(p.safe)
        where = f"Safe {p.safe} ({spec.address}, chain {spec.chain})" if spec is not None and spec.kind == "safe" else p.safe
        extra = f", then changeThreshold({p.threshold})" if p.threshold else ""
        return [f"swapOwner({p.remove} -> {p.add}) on {where}{extra}, signed by owners other than {p.remove}"]

    def intents(self, ctx: StepContext, step: RotateStep) -> list[dict[str, Any]]:
        """The swapOwner self-call (prevOwner as proposed in this run, else read from the Safe now) and any changeThreshold."""
        p = step.with_
        spec = ctx.inventory.signers[p.safe]
        if not isinstance(spec, SafeSigner):  # check() refuses this at validate
            raise BreakglassError(f"signer '{p.safe}' is of kind {spec.kind}, not a Safe")
        safe_address, remove, add = ctx.address(p.safe), p.remove, ctx.address(p.add)
        base = {"step": step.id, "kind": "rotate", **fees(ctx, spec.chain), "target": safe_address,
                "signer": signer_ref(ctx, p.safe), "value": 0}
        data = swap_data(ctx, ctx.tx.io(spec.chain), safe_address, remove, add)
        args = [to_checksum_address(data[16:36]) if data else "(none)", remove, add]
        out = [{**base, "item": f"{p.safe}:swapOwner", "function": "swapOwner(address,address,address)",
                "selector": "0x" + SWAP_OWNER.selector.hex(), "args": args,
                "calldata_sha256": hashlib.sha256(data).hexdigest() if data else None,
                "condition": (f"signed by owners other than {remove}, whose signature does not count" if data
                              else f"not sent: {remove} is not an owner of the Safe")}]
        if p.threshold is not None:
            data = CHANGE_THRESHOLD.encode([p.threshold])
            out.append({**base, "item": f"{p.safe}:changeThreshold", "function": "changeThreshold(uint256)",
                        "selector": "0x" + CHANGE_THRESHOLD.selector.hex(), "args": [str(p.threshold)],
                        "calldata_sha256": hashlib.sha256(data).hexdigest(),
                        "condition": f"sent only if the threshold is not already {p.threshold}"})
        return out

    def summary(self, outputs: dict[str, Any]) -> str:
        return f"{outputs.get('status')}: {outputs.get('removed')} -> {outputs.get('added')}, threshold {outputs.get('threshold')}"

    def run(self, ctx: StepContext, step: RotateStep) -> RotateOutputs:
        p: RotateParams = step.with_
        guardian = ctx.signer(p.safe)
        if not isinstance(guardian, SafeGuardian):
            raise BreakglassError(f"with.safe: signer '{p.safe}' is not a Safe")
        remove, add = p.remove, ctx.address(p.add)
        if remove == add:
            raise BreakglassError(f"with.add: {add} is the owner being removed; name the backup owner")
        io = ctx.tx.io(guardian.chain)
        key = swap_key(ctx, io.name, guardian.address, remove, add)
        earlier = proposal(ctx, key)
        owners, threshold = read_safe(io, guardian.address)
        before = (list(earlier["owners"]), earlier["threshold"]) if earlier is not None else (owners, threshold)
        base = {"safe": guardian.address, "chain": io.name, "removed": remove, "added": add, "owners_before": before[0],
                "threshold_before": before[1], "excluded_owner": remove}
        transactions: list[str] = []
        swap: dict[str, Any] = {}
        in_flight = bool(ctx.journal.signed(key + "/exec"))
        if remove not in owners and not in_flight:
            if add not in owners:
                raise BreakglassError(f"Safe {guardian.address}: {remove} is not an owner, and {add} is not one either "
                                      f"(owners: {', '.join(owners)}); nothing to rotate. Check with.remove.")
            swap = {"status": "already_rotated", "note": f"{remove} was not an owner and {add} was: no swap sent"}
        elif not in_flight:
            if add in owners:
                raise BreakglassError(f"Safe {guardian.address}: {add} is already an owner, so swapping {remove} for it "
                                      "would revert (GS204); name another backup owner")
            if len(owners) - 1 < threshold:
                raise BreakglassError(f"Safe {guardian.address}: the threshold is {threshold} of {len(owners)} owners; without "
                                      f"{remove} only {len(owners) - 1} can sign, so the Safe cannot rotate it out")
        if remove == guardian.executor.address:
            ctx.log.warning("the Safe's executor %s is the owner being removed: its key is compromised", remove)
        problems: list[str] = []
        try:
            if not swap:
                data = swap_data(ctx, io, guardian.address, remove, add)
                assert data is not None
                intent = Intent(key=key, chain=io.name, to=guardian.address, data=data,
                                        label=f"Safe.swapOwner({remove} -> {add})")
                swap = {**_execute(ctx, io, guardian, intent, remove, p.confirmations, transactions), "status": "rotated"}
            if p.threshold is not None:
                swap.update(_threshold(ctx, io, guardian, p.threshold, remove, p.confirmations, transactions))
        except BreakglassError as exc:  # outputs still say what landed, and what the Safe reads now
            problems.append(str(exc))
            swap.setdefault("status", "failed")
        owners_after, threshold_after = read_safe(io, guardian.address)
        outputs = RotateOutputs(**base, **swap, owners_after=owners_after, threshold=threshold_after, transactions=transactions)
        problems += [f"{remove} is still an owner"] if remove in owners_after else []
        problems += [] if add in owners_after else [f"{add} is not an owner"]
        if p.threshold is not None and threshold_after != p.threshold:
            problems.append(f"the threshold reads {threshold_after}, not {p.threshold}")
        if problems:
            raise RotateFailed(f"Safe {guardian.address}: " + "; ".join(problems), outputs)
        return outputs


def _execute(ctx: StepContext, io: ChainReader, guardian: SafeGuardian, intent: Intent, remove: str,
             confirmations: int, transactions: list[str]) -> dict[str, Any]:
    """One Safe self-call, never counting the removed owner's signature."""
    outcome, info = ctx.tx.send_safe(io, guardian, intent, exclude=[remove])
    transactions += outcome.hashes
    if outcome.status != "mined":
        raise BreakglassError(f"{intent.label}: {outcome.status}: {outcome.reason or ''}".rstrip(": "))
    assert outcome.block_number is not None
    ctx.tx.wait_confirmations(io, outcome.block_number, confirmations)
    return {"tx_hash": outcome.tx_hash, "safe_tx_hash": info.get("safe_tx_hash"), "safe_owners_signed": info.get("owners_signed", [])}


def _threshold(ctx: StepContext, io: ChainReader, guardian: SafeGuardian, wanted: int, remove: str,
               confirmations: int, transactions: list[str]) -> dict[str, Any]:
    key = threshold_key(ctx, io.name, guardian.address, wanted)
    owners, current = read_safe(io, guardian.address)
    if current == wanted and not ctx.journal.signed(key + "/exec"):
        return {}
    if wanted > len(owners):
        raise BreakglassError(f"with.threshold: {wanted} is more than the Safe's {len(owners)} owners")
    intent = Intent(key=key, chain=io.name, to=guardian.address, data=CHANGE_THRESHOLD.encode([wanted]),
                            label=f"Safe.changeThreshold({wanted})")
    done = _execute(ctx, io, guardian, intent, remove, confirmations, transactions)
    return {"threshold_tx_hash": done["tx_hash"], "threshold_safe_tx_hash": done["safe_tx_hash"]}


HANDLER = Rotate()
