"""Pre-signed emergency pauses: signed ahead of time, broadcast the moment a run starts.

``breakglass prepare`` signs, for every ``pause`` step marked ``prepared: true``, one pause per
contract at the signer's next nonces with the inventory's fee cap, and stores them encrypted
(AES-GCM, key in ``$BREAKGLASS_HOME/prepared/.key``, mode 0600). When a run starts, the run entry
point checks freshness in one round trip (chain id, genesis hash, the signer's pending nonce, the
base fee),
journals each transaction, and broadcasts it before Prefect is even imported. A stale
transaction (nonce used, fee cap below the base fee, another chain or chain instance) is never
sent: the step signs afresh, and the run directory's ``fastpath.json`` says why. A drill keeps its
prepared pauses under its own scope (``flows/effects/chainkey``), never beside the live ones.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from breakglass.flows.effects import chainkey
from breakglass.flows.effects.unlock import SafeGuardian
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import pausespec
from breakglass.flows.language.inventory import Inventory
from breakglass.flows.run import failpoints
from breakglass.flows.run.context import Bindings, endpoints, resolve_address
from breakglass.flows.run.home import write_private
from breakglass.flows.run.journal import Journal
from breakglass.flows.run.records import now
from breakglass.integrations.chain.rpc import JsonRpc, RpcError
from breakglass.integrations.chain.signers import Signer

if TYPE_CHECKING:
    from breakglass.flows.spec.playbook import Playbook

GWEI = 10**9


@dataclass(frozen=True)
class PreparedTx:
    contract: str
    chain: str
    chain_id: int
    signer: str
    to: str
    data: str
    nonce: int
    gas: int
    max_fee: int
    tip: int
    raw: str
    hash: str
    prepared_at: str
    suffix: str = "pause"  # the pause action's journal key: pause, pause.2, ... (several calls per contract)
    genesis: str = ""  # block 0 of the chain instance it was signed for (flows/effects/chainkey)


def prepared_steps(playbook: Playbook, *, gated: bool | None = False) -> list[Any]:
    """Prepared pauses; by default those broadcast at start (no gate). ``gated=True``: those behind gates; None: all."""
    return [s for s in playbook.steps if s.prepared_pause() and (gated is None or bool(s.needs) == gated)]


def _key(home: Path) -> bytes:
    path = home / "prepared" / ".key"
    if not path.exists():
        write_private(path, secrets.token_bytes(32))
    return path.read_bytes()


def _path(home: Path, inventory: Inventory, playbook: str, step: str, scope: str = "") -> Path:
    base = home / "prepared" / f"drill-{scope}" if scope else home / "prepared"
    return base / inventory.name / playbook / f"{step}.bin"


def save(home: Path, inventory: Inventory, playbook: str, step: str, txs: list[PreparedTx], scope: str = "") -> Path:
    nonce = secrets.token_bytes(12)
    blob = json.dumps([asdict(t) for t in txs]).encode()
    path = _path(home, inventory, playbook, step, scope)
    write_private(path, nonce + AESGCM(_key(home)).encrypt(nonce, blob, f"{inventory.name}/{playbook}/{step}".encode()))
    return path


def load(home: Path, inventory: Inventory, playbook: str, step: str, scope: str = "") -> list[PreparedTx]:
    path = _path(home, inventory, playbook, step, scope)
    if not path.exists():
        return []
    data = path.read_bytes()
    try:
        blob = AESGCM(_key(home)).decrypt(data[:12], data[12:], f"{inventory.name}/{playbook}/{step}".encode())
    except Exception:  # noqa: BLE001 - tampered or from another home: never use it
        return []
    return [PreparedTx(**t) for t in json.loads(blob)]


def build(playbook: Playbook, inventory: Inventory, signers: dict[str, Signer | SafeGuardian], home: Path,
          bindings: Bindings | None = None) -> list[dict[str, Any]]:
    """Sign and store fresh prepared pauses for every prepared step; returns a summary per step."""
    bindings = bindings or Bindings()
    summary = []
    next_nonce: dict[tuple[str, str], int] = {}  # several prepared steps of one signer get consecutive nonces
    for step in prepared_steps(playbook, gated=None):
        signer = signers[step.with_.signer]
        if isinstance(signer, SafeGuardian):  # validate refuses this (steps/pause): a Safe's owners sign at run time
            raise BreakglassError(f"step '{step.id}': signer '{step.with_.signer}' is a Safe; a Safe pause cannot be prepared")
        if getattr(signer, "sends_itself", False):  # fork drills: nothing can be signed ahead without a key
            summary.append({"step": step.id, "prepared": [], "skipped": ["impersonated signer: sent by the step"]})
            continue
        txs: list[PreparedTx] = []
        skipped: list[str] = []
        by_chain: dict[str, list[str]] = {}
        for name in step.with_.contracts:
            by_chain.setdefault(inventory.contracts[name].chain, []).append(name)
        for chain, names in by_chain.items():
            spec = inventory.chains[chain]
            with JsonRpc(endpoints(inventory, chain, bindings)) as rpc:
                if int(rpc.call("eth_chainId"), 16) != spec.chain_id:
                    raise BreakglassError(f"chain '{chain}': the RPC answers another chain id than {spec.chain_id}")
                genesis = chainkey.genesis(rpc)
                nonce = next_nonce.get((signer.address, chain)) or int(
                    rpc.call("eth_getTransactionCount", [signer.address, "pending"]), 16)
                for name in names:
                    contract = inventory.contracts[name]
                    to = resolve_address(inventory, bindings, name)
                    if rpc.call("eth_getCode", [to, "latest"]) in ("0x", "0x0", None):
                        skipped.append(f"{name}: no contract code at {to} on {chain}; not prepared. Fix its address in the inventory")
                        continue
                    for action in pausespec.actions(contract):
                        data = action.data
                        call = {"from": signer.address, "to": to, "data": "0x" + data.hex()}
                        try:
                            gas = int(rpc.call("eth_estimateGas", [call]), 16)
                        except RpcError as exc:
                            skipped.append(f"{name}: {action.label} would revert now ({exc.rpc_message}); not prepared")
                            continue
                        max_fee, tip = int(spec.fees.max_fee_gwei * GWEI), int(spec.fees.priority_fee_gwei * GWEI)
                        tx: dict[str, Any] = {"type": 2, "chainId": spec.chain_id, "nonce": nonce, "to": to, "value": 0, "data": "0x" + data.hex(),
                              "gas": int(gas * 1.25) + 10_000, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}
                        signed = signer.sign(tx)
                        txs.append(PreparedTx(name, chain, spec.chain_id, signer.address, to, "0x" + data.hex(), nonce,
                                              tx["gas"], max_fee, tip, "0x" + signed.raw.hex(), signed.hash, now(), action.suffix, genesis))
                        nonce += 1
                next_nonce[(signer.address, chain)] = nonce
        save(home, inventory, playbook.name, step.id, txs, bindings.scope)
        summary.append({"step": step.id, "prepared": [(t.contract, t.nonce) for t in txs], "skipped": skipped})
    return summary


def broadcast(run_dir: Path, run_key: str, playbook: Playbook, inventory: Inventory, home: Path,
              bindings: Bindings | None = None, *, only: list[str] | None = None,
              journal: Journal | None = None) -> dict[str, Any]:
    """The fast path: journal and broadcast fresh prepared pauses. Never raises for a stale one.

    At start it sends the ungated prepared pauses; ``only`` names gated ones whose gates just passed.
    """
    bindings = bindings or Bindings()
    report: dict[str, Any] = {"started_at": now(), "sent": [], "stale": []}
    started = time.perf_counter()
    journal = journal or Journal(run_dir / "journal.jsonl")
    steps = prepared_steps(playbook) if only is None else [s for s in prepared_steps(playbook, gated=None) if s.id in only]
    for step in steps:
        txs = load(home, inventory, playbook.name, step.id, bindings.scope)
        if not txs:
            report["stale"].append({"step": step.id, "reason": "nothing prepared: run `breakglass prepare`"})
            continue
        for chain in sorted({t.chain for t in txs}):
            group = [t for t in txs if t.chain == chain]
            try:
                rpc = JsonRpc(endpoints(inventory, chain, bindings), timeout=5,
                              limits=inventory.chains[chain].rpc_limits.runtime())
                targets = sorted({t.to for t in group})
                reads: list[tuple[str, list[Any]]] = [
                    ("eth_chainId", []), ("eth_getTransactionCount", [group[0].signer, "pending"]),
                    ("eth_getBlockByNumber", ["latest", False]), chainkey.GENESIS_CALL]
                chain_id, pending, block, block0, *codes = rpc.batch(reads + [("eth_getCode", [to, "latest"]) for to in targets])
                no_code = _no_code(dict(zip(targets, codes, strict=True)))
                reasons = {_id(t): no_code or _stale(t, group, chain_id, pending, block, block0, inventory) for t in group}
            except Exception as exc:  # noqa: BLE001 - the normal path takes over; the reason is kept
                reasons = {_id(t): f"freshness check failed: {type(exc).__name__}" for t in group}
            if any(reasons.values()):  # one stale pause leaves its successors' nonces unfilled: none is sent
                report["stale"] += [{"step": step.id, "contract": t.contract, "reason": reasons[_id(t)] or
                                     f"not sent: the prepared pause of {_first_stale(group, reasons)} in the same batch is stale"}
                                    for t in group]
                continue
            submit = JsonRpc(endpoints(_submit_view(inventory, chain), chain, bindings)) if inventory.chains[chain].submit else rpc
            for t in group:
                key = f"{run_key}/{step.id}/{t.chain}/{t.contract}/{t.suffix}"
                if any(e.get("event") == "broadcast" for e in journal.entries(key)):
                    continue  # sent before a crash; the step reconciles it
                journal.append(key, "signed", hash=t.hash, raw=t.raw, nonce=t.nonce, max_fee=t.max_fee, tip=t.tip, gas=t.gas,
                               chain_id=t.chain_id, to=t.to, signer=t.signer, label=f"{t.contract}.{t.suffix}", source="prepared")
                try:
                    submit.call("eth_sendRawTransaction", [t.raw])
                except Exception as exc:  # noqa: BLE001 - journaled: the step reconciles and re-sends
                    report["stale"].append({"step": step.id, "contract": t.contract, "reason": f"broadcast failed: {exc}"})
                    continue
                journal.append(key, "broadcast", hash=t.hash, nonce=t.nonce, to=t.to, signer=t.signer, source="prepared")
                failpoints.hit("fastpath.after_broadcast")
                report["sent"].append({"step": step.id, "contract": t.contract, "hash": t.hash, "nonce": t.nonce,
                                       "ms_from_start": round((time.perf_counter() - started) * 1000, 2),
                                       "when": "before Prefect started" if only is None else "the moment its gate passed"})
    path = run_dir / "fastpath.json"
    if path.exists():  # gates add to what the start wrote
        earlier = json.loads(path.read_text())
        report = {**earlier, "sent": earlier.get("sent", []) + report["sent"], "stale": earlier.get("stale", []) + report["stale"]}
    write_private(path, json.dumps(report, indent=2).encode())
    return report


def _stale(t: PreparedTx, group: list[PreparedTx], chain_id: Any, pending: Any, block: Any, block0: Any,
           inventory: Inventory) -> str | None:
    """Why ``t`` (one of ``group``, consecutive nonces of one signer on one chain) must not be sent, or None.
    Every reason quotes ``t``'s own nonce and fees."""
    if any(isinstance(x, Exception) for x in (chain_id, pending, block, block0)):
        return "freshness check failed: the RPC answered with an error"
    if int(chain_id, 16) != t.chain_id or inventory.chains[t.chain].chain_id != t.chain_id:
        return f"prepared for chain id {t.chain_id}, the RPC answers {int(chain_id, 16)}"
    genesis = str((block0 or {}).get("hash") or "").lower()
    if not t.genesis or genesis != t.genesis:
        return (f"prepared for another instance of chain {t.chain_id} (genesis {t.genesis[:18] or 'unrecorded'}, the RPC's "
                f"is {genesis[:18]}): signed afresh")
    expected = int(pending, 16) + sorted(x.nonce for x in group).index(t.nonce)
    if t.nonce != expected:
        return f"nonce {t.nonce} is no longer next (the signer's next nonce is {int(pending, 16)}): signed afresh"
    base = int(block.get("baseFeePerGas") or "0x0", 16)
    if t.max_fee < base:
        return f"fee cap {t.max_fee / GWEI:g} gwei is below the base fee {base / GWEI:g} gwei: signed afresh"
    return None


def _no_code(codes: dict[str, Any]) -> str | None:
    """The fast path never broadcasts to an address with no code (a wrong address in the inventory burns nonces)."""
    for to, code in codes.items():
        if isinstance(code, Exception):
            return "freshness check failed: the RPC answered with an error"
        if code in ("0x", "0x0", None):
            return f"no contract code at {to}: not sent. Fix the address in the inventory"
    return None


def _first_stale(group: list[PreparedTx], reasons: dict[str, str | None]) -> str:
    first = next(t for t in sorted(group, key=lambda t: t.nonce) if reasons[_id(t)])
    return f"{first.contract} at nonce {first.nonce}"


def _id(t: PreparedTx) -> str:
    return f"{t.contract}/{t.suffix}"


def _submit_view(inventory: Inventory, chain: str) -> Inventory:
    spec = inventory.chains[chain]
    return inventory.model_copy(update={"chains": {**inventory.chains, chain: spec.model_copy(update={"rpc": spec.submit})}})


def fastpath_note(run_dir: Path, step: str, contract: str) -> str | None:
    path = run_dir / "fastpath.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    for item in report.get("sent", []):
        if item["step"] == step and item["contract"] == contract:
            return (f"sent from the prepared transaction, {item['ms_from_start']} ms into the fast path, "
                    f"{item.get('when', 'before Prefect started')}")
    for item in report.get("stale", []):
        if item["step"] == step and item.get("contract") in (None, contract):
            return f"prepared transaction not used: {item['reason']}"
    return None

