"""``breakglass check INVENTORY``: is the pause path ready, on a calm Tuesday rather than during an exploit?

For every chain: the RPC answers with the expected chain id. For every signer: the key unlocks
and belongs to the declared address. For every contract with a ``guardian``: it is not paused,
a pause simulated *from* the guardian succeeds (so the role is still held), and the guardian
can pay for ``pauses`` pauses at twice the current base fee. For every key signer on every chain
(``signerhealth``): nothing queued behind a nonce gap, no unprovable signer record above the chain's
nonce, nothing pending longer than ``bump_after_blocks``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.effects import onchain
from breakglass.flows.effects.unlock import Prompt, unlock_one
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.inventory import Inventory, SafeSigner
from breakglass.flows.readiness import preflight, signerhealth
from breakglass.flows.readiness import rows as checkrows
from breakglass.flows.run.context import Bindings, endpoints, resolve_address
from breakglass.flows.run.home import home as default_home
from breakglass.flows.spec.validate import load_inventory
from breakglass.integrations.chain.rpc import JsonRpc, RpcError, RpcUnavailable

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Contract

STALE_CONTACT_DAYS = 90
BALANCE_MARGIN = 2.5  # a guardian holds 2.5x what its pauses cost (LI.FI's 2026 drill failed on an underfunded pauser)


@dataclass(frozen=True)
class Finding:
    subject: str
    check: str
    status: str  # ok | fail | warn
    detail: str


def run(inventory: Inventory, *, pauses: int = 3, prompt: Prompt | None = None, today: date | None = None,
        playbooks: dict[str, Any] | None = None, home: Path | None = None) -> list[Finding]:
    if inventory.is_drill:
        raise BreakglassError("`check` reads a live deployment; a drill inventory's placeholders exist only inside "
                              "`breakglass drill` (which checks the same things on every rehearsal)")
    out: list[Finding] = []
    missing = preflight.missing_env(inventory, playbooks or {"(every playbook)": None})
    for var, what, users in missing:
        out.append(Finding(f"env {var}", "set", "fail", f"not set: {what}; blocks {', '.join(users)}"))
    needed = {v for pb in (playbooks or {"": None}).values() for v in preflight.needed_env(inventory, pb)}
    if needed and not missing:
        out.append(Finding("environment", "set", "ok", f"all {len(needed)} variable(s) the playbooks read are set"))
    rpcs: dict[str, JsonRpc] = {}
    for name, chain in inventory.chains.items():
        try:  # an unset backup is its own row above: the endpoints that are set still get checked
            usable = [r for r in chain.rpc if not (r.env and preflight.unset(r.env))] or chain.rpc
            view = inventory.model_copy(update={"chains": {**inventory.chains, name: chain.model_copy(update={"rpc": usable})}})
            rpc = JsonRpc(endpoints(view, name, Bindings()), timeout=5)
            got = int(rpc.call("eth_chainId"), 16)
        except (BreakglassError, RpcUnavailable, RpcError) as exc:
            out.append(Finding(f"chain {name}", "rpc", "fail", str(exc)))
            continue
        if got != chain.chain_id:
            out.append(Finding(f"chain {name}", "rpc", "fail", f"{rpc.used.label} answers chain id {got}, expected {chain.chain_id}"))
            continue
        rpcs[name] = rpc
        out.append(Finding(f"chain {name}", "rpc", "ok", f"{rpc.used.label} answers chain id {got}"))
    unlocked: dict[str, str] = {}
    for name, spec in inventory.signers.items():
        if isinstance(spec, SafeSigner):
            continue
        try:
            signer = unlock_one(inventory, name, prompt=prompt)
        except Exception as exc:  # noqa: BLE001 - one signer's problem is its row
            out.append(Finding(f"signer {name}", "unlock", "fail", str(exc) if isinstance(exc, BreakglassError)
                               else f"{type(exc).__name__}: {exc}"))
            continue
        unlocked[name] = signer.address
        out.append(Finding(f"signer {name}", "unlock", "ok", f"unlocks as {signer.address}"))
    costs: dict[tuple[str, str], tuple[str, int]] = {}  # (payer, chain) -> (address, wei its pauses cost at 2x base fee)
    for name, contract in inventory.contracts.items():
        try:
            out += _contract(inventory, rpcs, unlocked, name, contract, pauses, costs)
        except Exception as exc:  # noqa: BLE001 - one contract's problem is its row; the others still run
            out.append(Finding(f"contract {name}", "check", "fail", f"could not be checked: {type(exc).__name__}: {exc}"))
    for (payer, chain_name), (address, cost) in costs.items():
        rpc = rpcs[chain_name]
        try:
            balance = int(rpc.call("eth_getBalance", [address, "latest"]), 16)
        except (RpcError, RpcUnavailable) as exc:
            out.append(Finding(f"signer {payer}", f"balance on {chain_name}", "fail", f"cannot read the balance of {address}: {exc}"))
            continue
        need = int(cost * BALANCE_MARGIN)
        out.append(Finding(f"signer {payer}", f"balance on {chain_name}", "ok" if balance >= need else "fail",
                           f"holds {balance / 1e18:.6f}; pausing everything it guards costs about {cost / 1e18:.6f} at 2x "
                           f"the base fee, and {BALANCE_MARGIN:g}x that is {need / 1e18:.6f}"))
    for name, spec in inventory.signers.items():
        if isinstance(spec, SafeSigner) and spec.chain in rpcs:
            try:
                out += _safe(rpcs[spec.chain], name, spec)
            except Exception as exc:  # noqa: BLE001 - one signer's problem is its row
                out.append(Finding(f"signer {name}", "safe", "fail", f"could not be checked: {type(exc).__name__}: {exc}"))
    try:
        out += _nonces(inventory, rpcs, unlocked, home)
    except Exception as exc:  # noqa: BLE001 - the nonce rows are rows too: one failure never hides the rest
        out.append(Finding("signers", "nonces", "fail", f"could not be checked: {type(exc).__name__}: {exc}"))
    today = today or date.today()
    for name, contact in inventory.contacts.items():
        age = (today - contact.last_verified).days
        if age > STALE_CONTACT_DAYS:
            out.append(Finding(f"contact {name}", "last_verified", "warn",
                               f"verified {age} days ago ({contact.last_verified}); review it quarterly"))
    return out


def _contract(inventory: Inventory, rpcs: dict[str, JsonRpc], unlocked: dict[str, str], name: str, contract: Contract,
              pauses: int, costs: dict[tuple[str, str], tuple[str, int]]) -> list[Finding]:
    subject = f"contract {name}"
    rpc = rpcs.get(contract.chain)
    if rpc is None:
        return [Finding(subject, "pause path" if contract.guardian else "code", "fail", f"chain {contract.chain} is not reachable")]
    guardian = inventory.signers.get(contract.guardian) if contract.guardian else None
    if contract.guardian is not None and guardian is None:
        return [Finding(subject, "pause path", "fail", f"guardian '{contract.guardian}' is not a signer in this inventory")]
    guardian_name = contract.guardian or ""  # the name, where there is a guardian
    address = resolve_address(inventory, Bindings(), name)
    block = rpc.call("eth_getBlockByNumber", ["latest", False])
    sender: str | None = None
    payer: tuple[str, str] | None = None
    if guardian is not None:
        sender = unlocked.get(guardian_name) or getattr(guardian, "address", None)
    if guardian is not None and sender is not None:
        payer = (guardian_name, sender)
        if isinstance(guardian, SafeSigner):  # the Safe calls pause(); its executor pays for execTransaction
            executor = inventory.signers.get(guardian.executor)
            payer = (guardian.executor, unlocked.get(guardian.executor) or getattr(executor, "address", None) or sender)
    rows, gas = checkrows.contract_rows(rpc, contract, address, contract.chain,
                                        (guardian_name, sender) if sender is not None else None,
                                        int(block["timestamp"], 16))
    out = [Finding(subject, r.check, r.status, r.detail) for r in rows]
    if guardian is not None and sender is None:  # a fixture key that did not unlock (its own row says why)
        out.append(Finding(subject, "guardian can pause", "fail", f"guardian '{contract.guardian}' did not unlock and "
                           "the inventory gives it no address: its pause cannot be simulated"))
    if gas is None or payer is None:
        return out
    base = int(block.get("baseFeePerGas") or "0x0", 16)
    cost = gas * (2 * base + int(inventory.chains[contract.chain].fees.priority_fee_gwei * onchain.GWEI))
    if payer[1] != sender:
        cost = cost * 3  # execTransaction costs a multiple of the bare pause
    need = pauses * cost
    key = (payer[0], contract.chain)
    costs[key] = (payer[1], costs.get(key, ("", 0))[1] + cost)
    balance = int(rpc.call("eth_getBalance", [payer[1], "latest"]), 16)
    out.append(Finding(subject, "guardian balance", "ok" if balance >= need else "fail",
                       f"{payer[0]} holds {balance / 1e18:.6f}, {pauses} pause(s) at 2x base fee need {need / 1e18:.6f}"))
    return out


def _safe(rpc: JsonRpc, name: str, spec: SafeSigner) -> list[Finding]:
    from breakglass.integrations.chain import safe as safe_tx

    subject = f"signer {name}"
    try:
        threshold = safe_tx.THRESHOLD.decode(bytes.fromhex(rpc.call("eth_call", [{"to": spec.address, "data": "0x" + safe_tx.THRESHOLD.encode().hex()}, "latest"])[2:]))[0]
        owners = safe_tx.OWNERS.decode(bytes.fromhex(rpc.call("eth_call", [{"to": spec.address, "data": "0x" + safe_tx.OWNERS.encode().hex()}, "latest"])[2:]))[0]
    except (RpcError, ValueError) as exc:
        return [Finding(subject, "safe", "fail", f"{spec.address} does not answer as a Safe: {exc}")]
    out = [Finding(subject, "safe", "ok", f"{threshold}-of-{len(owners)} Safe at {spec.address}")]
    if len(spec.owners) >= threshold:
        out.append(Finding(subject, "custody", "fail",
                           f"this installation holds {len(spec.owners)} owner key(s) of a {threshold}-of-{len(owners)} Safe: "
                           "the multisig is one host. Keep fewer than the threshold here; the rest sign with `breakglass sign`."))
    else:
        out.append(Finding(subject, "custody", "ok", f"holds {len(spec.owners)} of the {threshold} signatures needed"))
    return out


def _nonces(inventory: Inventory, rpcs: dict[str, JsonRpc], unlocked: dict[str, str], home: Path | None) -> list[Finding]:
    keyed = {name: unlocked.get(name) or getattr(spec, "address", None) for name, spec in inventory.signers.items()
             if not isinstance(spec, SafeSigner)}
    submits: dict[str, JsonRpc | None] = {}
    for name in rpcs:
        spec = inventory.chains[name]
        if spec.submit:
            view = inventory.model_copy(update={"chains": {**inventory.chains, name: spec.model_copy(update={"rpc": spec.submit})}})
            try:
                submits[name] = JsonRpc(endpoints(view, name, Bindings()), timeout=5)
            except BreakglassError:
                submits[name] = None
    rows = signerhealth.rows(home or default_home(), inventory, rpcs, submits,
                             {n: a for n, a in keyed.items() if isinstance(a, str) and a.startswith("0x")})
    return [Finding(*row) for row in rows]


def to_json(findings: list[Finding]) -> dict:
    return {"ok": not any(f.status == "fail" for f in findings), "findings": [asdict(f) for f in findings]}


def load(path: Path) -> Inventory:
    return load_inventory(path)
