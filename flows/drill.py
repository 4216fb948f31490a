"""``breakglass drill``: rehearse a playbook on a throwaway anvil with the fixture protocol.

A drill refuses any inventory not marked ``mode: drill`` and any RPC other than the chain it
started: drill inventories may only say ``rpc: [{fixture: anvil}]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from breakglass.flows import entry, fixture, prepared, signers
from breakglass.flows.context import Bindings
from breakglass.flows.errors import BreakglassError
from breakglass.flows.inventory import FIXTURE_RE, Inventory
from breakglass.flows.records import RunRecord
from breakglass.flows.server import Api
from breakglass.flows.validate import load_playbook
from breakglass.integrations.chain import anvil
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc


def default_inventory(playbook_path: Path) -> Path:
    return playbook_path.resolve().parent / "inventories" / "drill.yaml"


def _placeholders(inventory: Inventory) -> set[str]:
    found = {c.address for c in inventory.contracts.values()} | {c.multicall3 for c in inventory.chains.values()}
    found |= {f"fixture:{s.account}" for s in inventory.signers.values() if s.kind == "fixture"}
    return {p for p in found if FIXTURE_RE.match(p)}


def run(*, playbook_path: Path, inventory_path: Path | None, given: dict[str, Any], incident: str | None,
        home: Path, api: Callable[[], Api], auto_approve: bool = False, keep_chain: bool = False) -> RunRecord:
    inventory_path = inventory_path or default_inventory(playbook_path)
    playbook, inventory = load_playbook(playbook_path, inventory_path)
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
    chains = sorted(inventory.chains)
    if not chains:
        raise BreakglassError(f"{inventory_path}: a drill inventory needs at least one chain")
    nodes: list[anvil.Anvil] = []
    try:
        deployed: fixture.Deployed | None = None
        for name in chains:
            node = anvil.start(chain_id=inventory.chains[name].chain_id, log_dir=home / "anvil")
            nodes.append(node)
            with JsonRpc([Endpoint("fixture:anvil", node.url)]) as rpc:
                deployed = fixture.deploy(rpc)
        assert deployed is not None
        values = deployed.placeholder_values()
        bindings = Bindings(addresses=values, rpc={name: node.url for name, node in zip(chains, nodes, strict=True)})
        drill_values = {name: _drill_value(spec.drill, values) for name, spec in playbook.inputs.items()
                        if spec.drill is not None}
        if prepared.prepared_steps(playbook):  # rehearse the fast path too: sign ahead, like `breakglass prepare`
            keys = signers.unlock(inventory, {s.with_.signer for s in prepared.prepared_steps(playbook)}, bindings)
            prepared.build(playbook, inventory, keys, home, bindings)

        def keep(handle: Any) -> None:
            if keep_chain:
                kept = {name: {"url": node.url, "pid": node.process.pid} for name, node in zip(chains, nodes, strict=True)}
                (handle.dir / "kept-chains.json").write_text(json.dumps(kept, indent=2))

        return entry.start(playbook_path=playbook_path, inventory_path=inventory_path, given=given, incident=incident,
                           home=home, api=api, bindings=bindings, drill_values=drill_values, expect_mode="drill",
                           on_created=keep)
    finally:
        for node in nodes:
            if not keep_chain:
                node.stop()


def _drill_value(value: Any, placeholders: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_drill_value(v, placeholders) for v in value]
    if isinstance(value, str) and FIXTURE_RE.match(value):
        if value not in placeholders:
            raise BreakglassError(f"drill input value {value!r} is not a known fixture; known: "
                                  + ", ".join(sorted(placeholders)))
        return placeholders[value]
    return value
