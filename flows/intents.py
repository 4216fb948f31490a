"""What a gate authorises: the intent of every step it guards, in a canonical form that is hashed.

For on-chain steps an intent is chain, target, function and selector, decoded arguments and
calldata, signer (or Safe), value and fee cap; fees re-priced within the cap are left out, so a
bump keeps the approval. For messages it is the template, the SHA-256 of each recipient's
rendered subject and text (with ``now`` fixed, since it is filled in at sending) and attachments,
and the recipients with their addresses. Other kinds are bound by their resolved parameters.

A guarded step whose parameters depend on outputs decided after the gate is bound by its
unresolved parameters and says so: the approver sees an expression, not a value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

from breakglass.flows import onchain, pausespec, planner, templating
from breakglass.flows.callargs import coerce_args
from breakglass.flows.errors import BreakglassError
from breakglass.flows.signers import SafeGuardian
from breakglass.flows.steps import notify as notify_kind
from breakglass.flows.steps import revoke as revoke_kind
from breakglass.flows.steps import rotate as rotate_kind
from breakglass.integrations.chain import abi

if TYPE_CHECKING:
    from breakglass.flows.context import StepContext
    from breakglass.flows.playbook import Playbook

NOW_AT_SENDING = "(filled in when sent)"


def guarded(playbook: Playbook, gate: str) -> list[str]:
    """Every step that cannot start before the gate passes (its dependents, transitively), in file order."""
    found: set[str] = set()
    frontier = {gate}
    while frontier:
        nxt = {s.id for s in playbook.steps if set(s.needs) & frontier} - found
        found |= nxt
        frontier = nxt
    return [s.id for s in playbook.steps if s.id in found]


def _signer(ctx: StepContext, name: str) -> str:
    try:
        signer = ctx.signer(name)
    except Exception:  # noqa: BLE001 - not unlocked (e.g. `status` outside the runner): bind by name
        return f"signer:{name}"
    return f"safe:{signer.address}" if isinstance(signer, SafeGuardian) else signer.address


def _fees(ctx: StepContext, chain: str) -> dict[str, Any]:
    spec = ctx.inventory.chains[chain]
    return {"chain": chain, "chain_id": spec.chain_id, "fee_cap_gwei": spec.fees.max_fee_gwei,
            "priority_cap_gwei": spec.fees.priority_cap_gwei}


def _pause(ctx: StepContext, step: Any) -> list[dict[str, Any]]:
    out = []
    for name in step.with_.contracts:
        contract = ctx.inventory.contracts[name]
        actions = pausespec.actions(contract)
        for action in actions:
            out.append({"step": step.id, "item": name if len(actions) == 1 else f"{name}:{action.suffix}", "kind": "pause",
                        **_fees(ctx, contract.chain), "target": ctx.address(name), "function": action.signature,
                        "selector": "0x" + action.fn.selector.hex(), "args": [str(a) for a in action.args],
                        **({"calldata_sha256": hashlib.sha256(action.data).hexdigest()} if action.args else {}),
                        "signer": _signer(ctx, step.with_.signer), "value": 0})
    return out


def _transact(ctx: StepContext, step: Any) -> list[dict[str, Any]]:
    p = step.with_
    contract = ctx.inventory.contracts[p.contract]
    fn = abi.parse(p.function)
    data = fn.encode(coerce_args(fn.inputs, p.args))
    return [{"step": step.id, "item": p.contract, "kind": "transact", **_fees(ctx, contract.chain),
             "target": ctx.address(p.contract), "function": p.function, "selector": "0x" + fn.selector.hex(),
             "args": [str(a) for a in p.args], "calldata_sha256": hashlib.sha256(data).hexdigest(),
             "signer": _signer(ctx, p.signer), "value": p.value}]


def _revoke(ctx: StepContext, step: Any) -> list[dict[str, Any]]:
    """Every revokeRole the step may send; at run time only those for roles the account holds are sent."""
    p = step.with_
    fn = revoke_kind.REVOKE_ROLE
    return [{"step": step.id, "item": f"{name}:{role}", "kind": "revoke", **_fees(ctx, ctx.inventory.contracts[name].chain),
             "target": ctx.address(name), "function": "revokeRole(bytes32,address)", "selector": "0x" + fn.selector.hex(),
             "args": [role, p.account], "calldata_sha256": revoke_kind.calldata_sha256(role, p.account),
             "signer": _signer(ctx, p.signer), "value": 0, "condition": f"sent only if hasRole({role}, {p.account}) reads true"}
            for name in dict.fromkeys(p.contracts) for role in dict.fromkeys(p.roles)]


def _rotate(ctx: StepContext, step: Any) -> list[dict[str, Any]]:
    """The swapOwner self-call (prevOwner as proposed in this run, else read from the Safe now) and any changeThreshold."""
    p = step.with_
    spec = ctx.inventory.signers[p.safe]
    safe_address, remove, add = ctx.address(p.safe), p.remove, ctx.address(p.add)
    base = {"step": step.id, "kind": "rotate", **_fees(ctx, spec.chain), "target": safe_address,
            "signer": _signer(ctx, p.safe), "value": 0}
    data = rotate_kind.swap_data(ctx, onchain.ChainIO(ctx, spec.chain), safe_address, remove, add)
    fn = rotate_kind.SWAP_OWNER
    args = [to_checksum_address(data[16:36]) if data else "(none)", remove, add]
    out = [{**base, "item": f"{p.safe}:swapOwner", "function": "swapOwner(address,address,address)", "selector": "0x" + fn.selector.hex(),
            "args": args, "calldata_sha256": hashlib.sha256(data).hexdigest() if data else None,
            "condition": (f"signed by owners other than {remove}, whose signature does not count" if data
                          else f"not sent: {remove} is not an owner of the Safe")}]
    if p.threshold is not None:
        data = rotate_kind.CHANGE_THRESHOLD.encode([p.threshold])
        out.append({**base, "item": f"{p.safe}:changeThreshold", "function": "changeThreshold(uint256)",
                    "selector": "0x" + rotate_kind.CHANGE_THRESHOLD.selector.hex(), "args": [str(p.threshold)],
                    "calldata_sha256": hashlib.sha256(data).hexdigest(),
                    "condition": f"sent only if the threshold is not already {p.threshold}"})
    return out


def _notify(ctx: StepContext, step: Any) -> list[dict[str, Any]]:
    out = []
    for name, message in notify_kind.compose(ctx, step.with_, NOW_AT_SENDING):
        text = f"{message.subject}\n{message.text}".encode()
        out.append({"step": step.id, "item": name, "kind": "notify", "template": step.with_.template,
                    "recipient_kind": ctx.inventory.contacts[name].kind,
                    "addresses": [f"{c.via}:{c.to}" if c.to else c.via for c in ctx.inventory.contacts[name].channels],
                    "text_sha256": hashlib.sha256(text).hexdigest(),
                    "attachments": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(message.attachments.items())}})
    return out


def _generic(ctx: StepContext, step: Any) -> list[dict[str, Any]]:
    return [{"step": step.id, "item": "", "kind": step.kind, "params": step.with_.model_dump(mode="json", by_alias=True)}]


INTENTS: dict[str, Callable[[Any, Any], list[dict[str, Any]]]] = {"pause": _pause, "transact": _transact, "notify": _notify,
                                                                   "revoke": _revoke, "rotate": _rotate}


def of_step(ctx: StepContext, step: Any, context: dict[str, Any]) -> list[dict[str, Any]]:
    """The step's intents resolved against ``context``; unresolved parameters are bound as written."""
    try:
        resolved = planner.resolve_step(step, context)
        return INTENTS.get(step.kind, _generic)(ctx, resolved)
    except (templating.TemplateError, KeyError, BreakglassError, abi.SignatureError) as exc:
        unresolved = _generic(ctx, step)[0]
        unresolved["unresolved"] = f"decided after the gate: {exc}"
        return [unresolved]


def describe(intent: dict[str, Any]) -> str:
    """One line for a human: what will happen if the gate passes."""
    kind = intent.get("kind")
    if intent.get("unresolved"):
        return f"{intent['step']} [{kind}]: parameters as written ({intent['unresolved']})"
    if kind in ("pause", "transact", "revoke", "rotate"):
        args = f"({', '.join(intent['args'])})" if intent.get("args") else ""
        return (f"{intent['step']}: {intent['function'].split('(')[0]}{args} on {intent['item']} {intent['target']} "
                f"(chain {intent['chain']}, id {intent['chain_id']}) selector {intent['selector']} "
                f"signed by {intent['signer']}, value {intent['value']}, fee cap {intent['fee_cap_gwei']:g} gwei"
                + (f"; {intent['condition']}" if intent.get("condition") else ""))
    if kind == "notify":
        return (f"{intent['step']}: template {intent['template']} to {intent['item']} ({intent['recipient_kind']}) "
                f"via {', '.join(intent['addresses'])}; text sha256 {intent['text_sha256'][:16]}…")
    return f"{intent['step']} [{kind}]"
