"""Pre-flight: what a run would fail on at 3 a.m., found before anything is signed or sent.

``needed_env`` lists every environment variable a run of a playbook reads (RPCs and their backups,
submission endpoints, signers, the channels of every contact it may tell, the Slack app and paging
behind its gates, the alert sources of its triggers). ``check`` reports the missing ones for every
playbook at once; ``run``, ``drill --inventory LIVE``, ``prepare`` and ``serve`` refuse to start
while any is missing, naming them all. ``code_problems`` reads ``eth_getCode`` for every contract a
run touches, in the same batch as the run's other start-up reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.errors import BreakglassError, SpecError
from breakglass.flows.language.inventory import Inventory, SafeSigner
from breakglass.flows.run.context import endpoints, resolve_address
from breakglass.flows.spec.validate import load_playbook
from breakglass.flows.steps import REGISTRY

if TYPE_CHECKING:
    from breakglass.flows.spec.playbook import Playbook


def _refs(playbook: Playbook, category: str) -> set[str]:
    return {r.name for s in playbook.steps for r in REGISTRY[s.kind].references(s) if r.category == category}


def touched_contracts(playbook: Playbook, inventory: Inventory) -> list[str]:
    return sorted(n for n in _refs(playbook, "contract") | _refs(playbook, "account") if n in inventory.contracts)


def _signers(inventory: Inventory, names: set[str]) -> set[str]:
    out = set()
    for name in names:
        spec = inventory.signers.get(name)
        out.add(name)
        if isinstance(spec, SafeSigner):
            out |= set(spec.owners) | {spec.executor}
    return out


def needed_env(inventory: Inventory, playbook: Playbook | None = None, *, service: bool = True) -> dict[str, str]:
    """Variable -> what it is for. Without a playbook: everything the inventory names.

    ``service=False`` leaves out what only `serve` reads (alert sources' credentials, the Slack app's
    signing secret and Socket Mode token): a run started by hand at 3 a.m. must not be refused for them."""
    need: dict[str, str] = {}

    def add(var: str | None, what: str) -> None:
        if var:
            need.setdefault(var, what)

    if playbook is None:
        chains, signers, contacts = set(inventory.chains), set(inventory.signers), set(inventory.contacts)
        gates, sources = True, set(inventory.alert_sources)
    else:
        contracts = touched_contracts(playbook, inventory)
        signers = _signers(inventory, _refs(playbook, "signer"))
        chains = {inventory.contracts[c].chain for c in contracts} | (_refs(playbook, "chain") & set(inventory.chains))
        chains |= {s.chain for n in signers if isinstance(s := inventory.signers.get(n), SafeSigner)}
        contacts = set()
        for name in _refs(playbook, "contact"):
            contacts |= {m for m in inventory.groups.get(name, [name]) if m in inventory.contacts}
        gates = any(REGISTRY[s.kind].gate for s in playbook.steps)
        sources = {t.source for t in playbook.triggers}
    for name in sorted(chains & set(inventory.chains)):
        spec = inventory.chains[name]
        for i, rpc in enumerate(spec.rpc):
            add(rpc.env, f"chain {name} RPC" + (f" (backup {i})" if i else ""))
        for rpc in spec.submit:
            add(rpc.env, f"chain {name} submission endpoint")
    for name in sorted(signers & set(inventory.signers)):
        signer = inventory.signers[name]
        add(getattr(signer, "env", None) if signer.kind == "env" else None, f"signer {name} key")
        add(getattr(signer, "password_env", None), f"signer {name} keystore password")
        add(getattr(signer, "url_env", None), f"signer {name} remote signer URL")
    vias = {c.via for n in sorted(contacts) for c in inventory.contacts[n].channels}
    if gates and inventory.slack_app is not None:
        vias.add(inventory.slack_app.channel)
        if service:
            add(inventory.slack_app.signing_secret_env, "Slack app signing secret")
            add(inventory.slack_app.app_token_env, "Slack app Socket Mode token")
    for via in sorted(vias & set(inventory.channels)):
        ch = inventory.channels[via]
        for field in ("token_env", "url_env", "secret_env", "username_env", "password_env"):
            add(getattr(ch, field), f"channel {via} ({ch.kind}) {field.removesuffix('_env')}")
    if gates and inventory.paging is not None:
        add(inventory.paging.routing_key_env, "paging routing key")
        add(inventory.paging.backup_routing_key_env, "paging backup routing key")
    for name in sorted(sources & set(inventory.alert_sources) if service else ()):
        src = inventory.alert_sources[name]
        for field in ("secret_env", "token_env", "username_env", "password_env"):
            add(getattr(src, field), f"alert source {name} ({src.kind}) {field.removesuffix('_env')}")
    return need


def unset(var: str) -> bool:
    return not os.environ.get(var, "").strip()


def missing_env(inventory: Inventory, playbooks: dict[str, Playbook | None], *,
                service: bool = True) -> list[tuple[str, str, list[str]]]:
    """(variable, what it is for, the playbooks it blocks) for every unset variable, sorted by name."""
    found: dict[str, tuple[str, list[str]]] = {}
    for label, playbook in playbooks.items():
        for var, what in needed_env(inventory, playbook, service=service).items():
            if unset(var):
                found.setdefault(var, (what, []))[1].append(label)
    return [(var, what, users) for var, (what, users) in sorted(found.items())]


def refuse_missing_env(inventory: Inventory, playbook: Playbook, action: str = "start") -> None:
    """Refuse before anything happens, naming every missing variable at once (never one per attempt)."""
    if inventory.is_drill:
        return
    missing = missing_env(inventory, {playbook.name: playbook}, service=False)
    if missing:
        lines = "; ".join(f"{var} ({what})" for var, what, _ in missing)
        raise BreakglassError(f"refusing to {action} playbook '{playbook.name}': {len(missing)} environment variable(s) "
                              f"it needs are not set: {lines}. Export them (see `breakglass check`), then start again; "
                              "nothing was signed or sent")


def playbooks_near(inventory_path: Path, inventory: Inventory) -> dict[str, Playbook | None]:
    """The playbooks beside an inventory in ``playbooks/inventories/``, loaded against it; {"(inventory)": None} if none."""

    folder = inventory_path.resolve().parent
    root = folder.parent if folder.name == "inventories" else None
    out: dict[str, Playbook | None] = {}
    for path in sorted(root.glob("*.yaml")) if root else []:
        try:
            playbook, _ = load_playbook(path, inventory_path)
        except (SpecError, BreakglassError):
            continue
        out[playbook.name] = playbook
    return out or {"(every playbook)": None}


def no_code(codes: dict[str, Any]) -> list[str]:
    """Addresses whose ``eth_getCode`` answer is empty (an EOA, or the wrong chain)."""
    return [a for a, code in codes.items() if not isinstance(code, Exception) and code in (None, "0x", "0x0")]


def refuse_no_code(playbook: Playbook, inventory: Inventory, bindings: Any, skip: set[str] | frozenset[str] = frozenset()) -> None:
    """One batch per chain: ``eth_getCode`` of every contract the run touches. A contract with no code refuses the
    start before anything is signed (a pause sent to an EOA "succeeds" and burns a nonce). An RPC that does not
    answer refuses nothing here: the steps have their own retries and failover."""
    from breakglass.integrations.chain.rpc import JsonRpc

    by_chain: dict[str, dict[str, str]] = {}
    for name in touched_contracts(playbook, inventory):
        if name in skip:
            continue
        try:
            by_chain.setdefault(inventory.contracts[name].chain, {})[name] = resolve_address(inventory, bindings, name)
        except BreakglassError:
            continue
    empty: list[str] = []
    for chain, named in sorted(by_chain.items()):
        try:
            with JsonRpc(endpoints(inventory, chain, bindings), timeout=5) as rpc:
                codes = rpc.batch([("eth_getCode", [address, "latest"]) for address in named.values()])
        except Exception:  # noqa: BLE001 - see above: not this check's failure to report
            continue
        bad = set(no_code(dict(zip(named.values(), codes, strict=True))))
        empty += [f"{name} ({address} on {chain})" for name, address in named.items() if address in bad]
    if empty:
        raise BreakglassError(f"refusing to start playbook '{playbook.name}': no contract code at {', '.join(empty)}. "
                              "The address in the inventory is wrong (or on another chain); nothing was signed or sent. "
                              "Fix it, and run `breakglass check`")
