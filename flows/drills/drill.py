"""``breakglass drill``: rehearse a playbook on a throwaway anvil with the fixture protocol.

A drill refuses any inventory not marked ``mode: drill`` and any RPC other than the chain it
started: drill inventories may only say ``rpc: [{fixture: anvil}]``.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.effects import fixture, prepared
from breakglass.flows.effects import unlock as signers
from breakglass.flows.engine import entry
from breakglass.flows.errors import BreakglassError, Diagnostic, SpecError
from breakglass.flows.evidence import scorecard
from breakglass.flows.gates import voting
from breakglass.flows.gates.state import load_state
from breakglass.flows.language import templating, triggers
from breakglass.flows.language.callargs import coerce_args
from breakglass.flows.language.inventory import FIXTURE_RE, Inventory
from breakglass.flows.run import audit
from breakglass.flows.run.context import Bindings, endpoints, resolve_address
from breakglass.flows.run.home import check_id
from breakglass.flows.run.prefect_server import Api
from breakglass.flows.run.records import RunRecord
from breakglass.flows.run.runstore import Store, new_incident_id
from breakglass.flows.spec.drillspec import BUNDLED_INVENTORY, default_inventory
from breakglass.flows.spec.validate import load_playbook
from breakglass.flows.steps import REGISTRY
from breakglass.integrations.chain import anvil
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc, RpcError

if TYPE_CHECKING:
    from breakglass.flows.run.runstore import RunHandle
    from breakglass.flows.spec.drillspec import DrillSpec
    from breakglass.flows.spec.playbook import Playbook



def _placeholders(inventory: Inventory) -> set[str]:
    found = {c.address for c in inventory.contracts.values()} | {c.multicall3 for c in inventory.chains.values()}
    found |= {f"fixture:{s.account}" for s in inventory.signers.values() if s.kind == "fixture"}
    return {p for p in found if FIXTURE_RE.fullmatch(p)}


def run(*, playbook_path: Path, inventory_path: Path | None, given: dict[str, Any], incident: str | None,
        home: Path, api: Callable[[], Api], auto_approve: bool = False, keep_chain: bool = False,
        initiator: str | None = None, spec: DrillSpec | None = None, card: dict[str, Any] | None = None,
        fork: dict[str, Any] | None = None) -> RunRecord:
    """Rehearse; with a drill ``spec``, also score the run against its expectations into ``card``.

    ``fork`` ({url, block}, from ``forkdrill.prepare``): fork that chain instead of deploying the fixture."""
    defaulted = inventory_path is None
    inventory_path = inventory_path or default_inventory(playbook_path)
    try:
        playbook, inventory = load_playbook(playbook_path, inventory_path)
    except SpecError as exc:
        if not defaulted:
            raise
        raise SpecError([*exc.diagnostics, Diagnostic(
            str(playbook_path), 1, 1, "inventory", f"no --inventory was given, so the drill used {inventory_path}",
            "Pass --inventory FILE: a drill inventory (mode: drill) naming your playbook's contracts, signers and "
            f"contacts; start from a copy of {BUNDLED_INVENTORY}")]) from None
    assert inventory is not None
    if not inventory.is_drill:
        raise BreakglassError(
            f"{inventory_path} is a live inventory (it does not say 'mode: drill'); a drill never uses one. "
            "Pass a drill inventory, e.g. playbooks/inventories/drill.yaml."
        )
    unknown = sorted(p for p in _placeholders(inventory) if p.split(":", 1)[1] not in fixture.FIXTURE_NAMES)
    if unknown:
        raise BreakglassError(f"{inventory_path}: unknown fixture(s) {', '.join(unknown)}; "
                              f"known: {', '.join(fixture.FIXTURE_NAMES)}")
    if auto_approve:
        _check_auto_approve(playbook, inventory, initiator)
    chains = sorted(inventory.chains)
    if not chains:
        raise BreakglassError(f"{inventory_path}: a drill inventory needs at least one chain")
    nodes: list[anvil.Anvil] = []
    try:
        deployed: fixture.Deployed | None = None
        for name in chains:
            node = anvil.start(chain_id=inventory.chains[name].chain_id, log_dir=home / "anvil",
                               fork_url=fork["url"] if fork else None, fork_block=fork["block"] if fork else None,
                               die_with_parent=not keep_chain)  # a killed drill leaves no anvil behind
            nodes.append(node)
            if fork is None:
                with JsonRpc([Endpoint("fixture:anvil", node.url)]) as rpc:
                    here = fixture.deploy(rpc)  # the same addresses on every chain (same deployer, same nonces)
                deployed = deployed or here  # the first chain's attack transaction is the drill's attack_tx
        values = deployed.placeholder_values() if deployed is not None else {}
        # the drill's own signer-state scope: a fork answers with the live chain's id and genesis hash, and its
        # nonce records, locks and prepared pauses must never be the live ones (nor another drill's)
        bindings = Bindings(addresses=values, rpc={name: node.url for name, node in zip(chains, nodes, strict=True)},
                            scope=secrets.token_hex(6))
        drill_values = {} if fork else {name: _drill_value(spec.drill, values) for name, spec in playbook.inputs.items()
                                        if spec.drill is not None}
        if prepared.prepared_steps(playbook, gated=None):  # rehearse the fast path too: sign ahead, like `breakglass prepare`
            keys = signers.unlock(inventory, {s.with_.signer for s in prepared.prepared_steps(playbook, gated=None)}, bindings)
            prepared.build(playbook, inventory, keys, home, bindings)

        api = _once(api)
        approver = _AutoApprover(home, api, initiator) if auto_approve else None


        incident = check_id(incident) if incident else new_incident_id("drill")
        if Store(home).incident_mode(incident) == "live":  # never a word into a live incident's record
            raise BreakglassError(f"incident {incident} is a live incident; a drill cannot join it. Use another --incident.")
        attack_at = None
        if deployed is not None and deployed.attack_tx:
            with JsonRpc([Endpoint("fixture:anvil", nodes[0].url)]) as rpc:
                mined = rpc.call("eth_getTransactionReceipt", [deployed.attack_tx])
                block = rpc.call("eth_getBlockByNumber", [mined["blockNumber"], False]) if mined else None
                attack_at = int(block["timestamp"], 16) if block else None
        audit.append(home / "incidents" / incident, "drill.injected", chains=chains, attack_at=attack_at,
                     attack_tx=deployed.attack_tx if deployed else None,
                     fork={"chain": fork["chain"], "block": fork["block"]} if fork else None,
                     scenario=getattr(spec, "scenario", "") or ("fork of the live chain" if fork else
                                                                 "fixture attack: the admin key drains the vault"))

        # {{ fixture.NAME }} and {{ actions.ID.tx_hash }} in actions and alerts
        context: dict[str, Any] = {"fixture": {k.split(":", 1)[1]: v for k, v in values.items()}, "actions": {}}
        for action in spec.actions if spec is not None else []:  # the attack, actually executed on the chain
            done = _act(action, context, inventory, bindings, home / "incidents" / incident)
            if action.id:
                context["actions"][action.id] = done
        if spec is not None and spec.alert is not None:  # the monitor's alert, as it would arrive, fills the inputs
            given = {**_inject(spec.alert, context, home / "incidents" / incident), **given}

        def keep(handle: RunHandle) -> None:
            if approver is not None:
                approver.watch(handle)
            if keep_chain:
                kept = {name: {"url": node.url, "pid": node.process.pid} for name, node in zip(chains, nodes, strict=True)}
                (handle.dir / "kept-chains.json").write_text(json.dumps(kept, indent=2))

        try:
            record = entry.start(playbook_path=playbook_path, inventory_path=inventory_path, given=given,
                                 incident=incident, home=home, api=api, bindings=bindings, drill_values=drill_values,
                                 expect_mode="drill", on_created=keep, initiator=initiator, initiator_via="drill")
            if spec is not None and card is not None:  # scored while the chain still runs
                card.update(_score(spec, record, home, inventory, bindings, auto_approve, initiator))
            return record
        finally:
            if approver is not None:
                approver.stop()
    finally:
        for node in nodes:
            if not keep_chain:
                node.stop()


def _act(action: Any, context: dict[str, Any], inventory: Inventory, bindings: Bindings,
         incident_dir: Path) -> dict[str, Any]:
    from breakglass.integrations.chain import abi

    try:
        sender = str(templating.render(action.sender, context))
        to = str(templating.render(action.to, context))
        to = resolve_address(inventory, bindings, to) if to in inventory.contracts else to
        args = templating.render(action.args, context)
        if action.function:
            fn = abi.parse(action.function)
            data = "0x" + fn.encode(coerce_args(fn.inputs, args)).hex()
        else:
            data = "0x"
    except (templating.TemplateError, ValueError) as exc:
        raise BreakglassError(f"drill action from {action.sender} to {action.to}: {exc}") from None
    chain = inventory.contracts[action.to].chain if action.to in inventory.contracts else sorted(inventory.chains)[0]
    with JsonRpc([Endpoint("fixture:anvil", bindings.rpc[chain])]) as rpc:
        rpc.call("anvil_impersonateAccount", [sender])
        call = {"from": sender, "to": to, "data": data, "value": hex(action.value)}
        # headroom over the estimate: a write of block.timestamp estimated within the previous block's second
        # costs less than the same write mined a second later (an out-of-gas that fails one drill in four)
        try:
            call["gas"] = hex(int(int(rpc.call("eth_estimateGas", [call]), 16) * 1.5) + 20_000)
        except RpcError as exc:
            raise BreakglassError(f"drill action {action.function or 'transfer'} from {sender} to {to} would revert: "
                                  f"{exc.rpc_message}; fix the drill spec's actions") from None
        tx = rpc.call("eth_sendTransaction", [call])
        receipt = None
        for _ in range(500):
            receipt = rpc.call("eth_getTransactionReceipt", [tx])
            if receipt is not None:
                break
            time.sleep(0.01)
    ok = receipt is not None and int(receipt["status"], 16) == 1
    status = "mined" if ok else ("not mined within 5 s" if receipt is None else "reverted")
    audit.append(incident_dir, "drill.action", sender=sender, to=to, function=action.function, tx_hash=tx, status=status)
    if not ok:
        raise BreakglassError(f"drill action {action.function or 'transfer'} from {sender} to {to}: {status} "
                              f"(tx {tx}); fix the drill spec's actions")
    assert receipt is not None  # ok says so
    logs = [{"address": entry["address"], "topics": entry["topics"], "data": entry["data"]} for entry in receipt["logs"]]
    return {"tx_hash": tx, "block": int(receipt["blockNumber"], 16), "logs": logs}


def _inject(alert_spec: Any, context: dict[str, Any], incident_dir: Path) -> dict[str, Any]:
    from breakglass.integrations.alerts import ADAPTERS, AdapterError

    try:
        body = json.loads(templating.render(Path(alert_spec.file).read_text(), context))
        alert = ADAPTERS[alert_spec.kind].parse(body)[0]
    except (templating.TemplateError, ValueError, AdapterError) as exc:
        raise BreakglassError(f"drill alert {alert_spec.file}: {exc}") from None
    audit.append(incident_dir, "alert.received", source=f"drill:{alert_spec.kind}", how="injected", id=alert.id,
                 title=alert.title, severity=alert.severity, tx_hash=alert.tx_hash, addresses=alert.addresses[:20])
    return triggers.inputs_for(triggers.Trigger(source="drill", inputs=alert_spec.inputs), alert)


def _score(spec: DrillSpec, record: RunRecord, home: Path, inventory: Inventory, bindings: Bindings, auto_approve: bool,
           initiator: str | None) -> dict[str, Any]:
    incident_dir = home / "incidents" / record.incident
    paused: dict[str, bool] = {}
    for name in spec.expectations.paused:
        contract = inventory.contracts[name]
        with JsonRpc(endpoints(inventory, contract.chain, bindings)) as rpc:
            paused[name] = scorecard.read_paused(rpc, contract, resolve_address(inventory, bindings, name))
    voters = [e.get("name") for e in audit.entries(incident_dir) if e["event"] == "vote.counted"]
    people = sorted({p for p in [initiator, *voters] if p})
    card = scorecard.score(spec, record, incident_dir, paused, auto_approve, people)
    scorecard.write(card, home / "incidents" / record.incident / "runs" / record.run_id)
    return card


def _drill_value(value: Any, placeholders: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_drill_value(v, placeholders) for v in value]
    if isinstance(value, str) and FIXTURE_RE.fullmatch(value):
        if value not in placeholders:
            raise BreakglassError(f"drill input value {value!r} is not a known fixture; known: "
                                  + ", ".join(sorted(placeholders)))
        return placeholders[value]
    return value


def _once(api: Callable[[], Api]) -> Callable[[], Api]:
    box: list[Api] = []
    lock = threading.Lock()

    def get() -> Api:
        with lock:
            if not box:
                box.append(api())
            return box[0]

    return get


def _check_auto_approve(playbook: Playbook, inventory: Inventory, initiator: str | None) -> None:
    for step in playbook.steps:
        if not REGISTRY[step.kind].gate:
            continue
        p = step.with_
        people = [n for n in inventory.roster.groups.get(p.approvers, [])
                  if (inventory.roster.people[n].address or "").startswith("fixture:")
                  and not (p.exclude_initiator and n == initiator)]
        if len(people) < p.quorum:
            raise BreakglassError(f"--auto-approve: gate '{step.id}' needs {p.quorum} votes, but roster group "
                                  f"'{p.approvers}' has only {len(people)} people with fixture addresses who may vote")


class _AutoApprover:
    """``drill --auto-approve``: when a gate opens, sign quorum-many votes with drill roster keys and send
    them the way `approve` does (through Prefect), then wake the gate in this process."""

    def __init__(self, home: Path, api: Callable[[], Api], initiator: str | None) -> None:
        self.home, self.api, self.initiator = home, api, initiator
        self._stop = threading.Event()
        self._done: set[tuple[str, str]] = set()
        self._thread: threading.Thread | None = None

    def watch(self, handle: RunHandle) -> None:
        self._thread = threading.Thread(target=self._loop, args=(handle,), name="breakglass-auto-approve", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self, handle: RunHandle) -> None:
        from breakglass.flows.engine import runner

        incident = handle.dir.parent.parent.name
        while not self._stop.wait(0.05):
            for path in sorted((handle.dir / "gates").glob("*.json")):
                state = load_state(handle.dir, path.stem)
                if state is None or state.status != "waiting" or (state.step, state.digest) in self._done:
                    continue
                try:
                    gate = voting.locate(self.home, incident, state.step)
                    for vote in voting.auto_votes(gate, self.initiator):
                        voting.submit(self.api(), gate, vote)
                except BreakglassError as exc:
                    logging.getLogger("breakglass.drill").warning("auto-approve at %s: %s", state.step, exc)
                    continue
                self._done.add((state.step, state.digest))
                active = runner.active(handle.dir)
                if active is not None and active.gates is not None:
                    active.gates.wake.set()
