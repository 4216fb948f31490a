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

from breakglass.flows import onchain
from breakglass.flows.context import Bindings, endpoints, resolve_address
from breakglass.flows.errors import BreakglassError
from breakglass.flows.inventory import Inventory, SafeSigner
from breakglass.flows.signers import Prompt, unlock_one
from breakglass.flows.steps.pause import view_fn
from breakglass.integrations.chain import abi
from breakglass.integrations.chain.rpc import JsonRpc, RpcError, RpcUnavailable

STALE_CONTACT_DAYS = 90


@dataclass(frozen=True)
class Finding:
    subject: str
    check: str
    status: str  # ok | fail | warn
    detail: str


def run(inventory: Inventory, *, pauses: int = 3, prompt: Prompt | None = None, today: date | None = None,
        home: Path | None = None) -> list[Finding]:
    if inventory.is_drill:
        raise BreakglassError("`check` reads a live deployment; a drill inventory's placeholders exist only inside "
                              "`breakglass drill` (which checks the same things on every rehearsal)")
    out: list[Finding] = []
    rpcs: dict[str, JsonRpc] = {}
    for name, chain in inventory.chains.items():
        try:
            rpc = JsonRpc(endpoints(inventory, name, Bindings()), timeout=5)
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
        except BreakglassError as exc:
            out.append(Finding(f"signer {name}", "unlock", "fail", str(exc)))
            continue
        unlocked[name] = signer.address
        out.append(Finding(f"signer {name}", "unlock", "ok", f"unlocks as {signer.address}"))
    for name, contract in inventory.contracts.items():
        if contract.guardian is None:
            continue
        subject = f"contract {name}"
        rpc = rpcs.get(contract.chain)
        guardian = inventory.signers.get(contract.guardian)
        if rpc is None:
            out.append(Finding(subject, "pause path", "fail", f"chain {contract.chain} is not reachable"))
            continue
        if guardian is None:
            out.append(Finding(subject, "pause path", "fail", f"guardian '{contract.guardian}' is not a signer in this inventory"))
            continue
        address = resolve_address(inventory, Bindings(), name)
        sender = unlocked.get(contract.guardian) or getattr(guardian, "address", None)
        payer = (contract.guardian, sender)
        if isinstance(guardian, SafeSigner):  # the Safe calls pause(); its executor pays for execTransaction
            executor = inventory.signers.get(guardian.executor)
            payer = (guardian.executor, unlocked.get(guardian.executor) or getattr(executor, "address", sender))
        out += _contract(rpc, subject, address, contract.pause, contract.paused, sender, contract.guardian,
                         inventory.chains[contract.chain].fees.priority_fee_gwei, pauses, payer)
    for name, spec in inventory.signers.items():
        if isinstance(spec, SafeSigner) and spec.chain in rpcs:
            out += _safe(rpcs[spec.chain], name, spec)
    out += _nonces(inventory, rpcs, unlocked, home)
    today = today or date.today()
    for name, contact in inventory.contacts.items():
        age = (today - contact.last_verified).days
        if age > STALE_CONTACT_DAYS:
            out.append(Finding(f"contact {name}", "last_verified", "warn",
                               f"verified {age} days ago ({contact.last_verified}); review it quarterly"))
    return out


def _contract(rpc: JsonRpc, subject: str, address: str, pause_sig: str, paused_sig: str, sender: str, guardian: str,
              tip_gwei: float, pauses: int, payer: tuple[str, str]) -> list[Finding]:
    out: list[Finding] = []
    try:
        fn = view_fn(paused_sig)
        raw = rpc.call("eth_call", [{"to": address, "data": "0x" + fn.encode().hex()}, "latest"])
        is_paused = bool(fn.decode(bytes.fromhex(raw[2:]))[0])
        out.append(Finding(subject, "not paused", "fail" if is_paused else "ok",
                           "already paused" if is_paused else f"{paused_sig} is false"))
    except (RpcError, ValueError) as exc:
        out.append(Finding(subject, "not paused", "fail", f"{paused_sig} cannot be read: {exc}"))
    call = {"from": sender, "to": address, "data": "0x" + abi.parse(pause_sig).encode().hex()}
    try:
        gas = int(rpc.call("eth_estimateGas", [call]), 16)
        out.append(Finding(subject, "guardian can pause", "ok", f"{pause_sig} from {guardian} ({sender}) simulates fine"))
    except RpcError as exc:
        from breakglass.integrations.chain.revert import revert_data

        data = revert_data(exc)
        reason = onchain.decoder().decode(data) if data else exc.rpc_message
        out.append(Finding(subject, "guardian can pause", "fail", f"{pause_sig} from {guardian} ({sender}) reverts: {reason}"))
        return out
    block = rpc.call("eth_getBlockByNumber", ["latest", False])
    base = int(block.get("baseFeePerGas") or "0x0", 16)
    need = pauses * gas * (2 * base + int(tip_gwei * onchain.GWEI))
    if payer[1] != sender:
        need = need * 3  # execTransaction costs a multiple of the bare pause
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
    from breakglass.flows import signerhealth
    from breakglass.flows.home import home as default_home

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
    from breakglass.flows.validate import load_inventory

    return load_inventory(path)
