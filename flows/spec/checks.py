"""Semantic checks that a schema cannot express: ids, needs, references, templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breakglass.flows.errors import Diagnostic
from breakglass.flows.language import pausespec, templating
from breakglass.flows.language.inputs import coerce
from breakglass.flows.language.inventory import FIXTURE_RE, FixtureSigner, Inventory, SafeSigner, recipients
from breakglass.flows.language.suggest import closest
from breakglass.flows.language.types import is_template
from breakglass.flows.language.yamlpos import Document, Loc, dotted
from breakglass.flows.spec.loader import Loaded, label
from breakglass.flows.spec.playbook import Playbook
from breakglass.flows.steps import REGISTRY, graph
from breakglass.integrations.alert import ALERT_FIELDS
from breakglass.integrations.notify import CHANNELS


def _diag(doc: Document, loc: Loc, message: str, hint: str = "", *, key: bool = False) -> Diagnostic:
    where, rest = label(doc.data, loc)
    prefix = f"{dotted(rest)}: " if rest else ""
    return doc.diag(loc, where, prefix + message, hint, key=key)


def _find_cycle(playbook: Playbook) -> list[str] | None:
    needs = {s.id: [n for n in s.needs] for s in playbook.steps}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for parent in needs.get(node, []):
            if parent not in needs:
                continue
            if state.get(parent) == 1:
                return stack[stack.index(parent):] + [parent]
            if parent not in state and (cycle := dfs(parent)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for step in needs:
        if step not in state and (cycle := dfs(step)):
            return cycle
    return None


def check_playbook(loaded: Loaded, inventory: Inventory | None, inventory_path: str | None) -> list[Diagnostic]:
    playbook: Playbook = loaded.model
    doc = loaded.doc
    assert doc is not None
    out: list[Diagnostic] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(playbook.steps):
        if step.id in seen:
            out.append(_diag(doc, ("steps", i, "id"), f"duplicate step id (first used by steps[{seen[step.id]}])",
                             "Step ids must be unique: they key checkpoints."))
        seen.setdefault(step.id, i)
    ids = set(seen)
    for i, step in enumerate(playbook.steps):
        for j, need in enumerate(step.needs):
            if need == step.id:
                out.append(_diag(doc, ("steps", i, "needs", j), "a step cannot need itself"))
            elif need not in ids:
                guess = closest(need, ids)
                out.append(_diag(doc, ("steps", i, "needs", j), f"needs unknown step '{need}'",
                                 f"Did you mean '{guess}'?" if guess else "Known steps: " + ", ".join(sorted(ids)) + "."))
    cycle = _find_cycle(playbook)
    if cycle:
        first = next(i for i, s in enumerate(playbook.steps) if s.id == cycle[0])
        out.append(_diag(doc, ("steps", first, "needs"), "needs form a cycle: " + " -> ".join(cycle),
                         "Remove one of these needs; steps must form a graph without loops."))
    for name, spec in playbook.inputs.items():
        if spec.default is not None:
            try:
                coerce(spec.type, spec.default, inventory)
            except ValueError as exc:
                out.append(_diag(doc, ("inputs", name, "default"), f"default does not fit type {spec.type}: {exc}"))
    out += _check_templates(doc, playbook)
    playbook_dir = Path(loaded.path).resolve().parent
    for i, step in enumerate(playbook.steps):
        kind = REGISTRY[step.kind]
        for loc, message, hint in [*kind.check(step, inventory, playbook_dir), *kind.check_steps(step, playbook)]:
            out.append(_diag(doc, ("steps", i, *loc), message, hint))
    out += _check_triggers(doc, playbook, inventory)
    for i, loc, message, hint in check_gates(playbook, inventory):
        out.append(_diag(doc, ("steps", i, *loc), message, hint))
    if inventory is not None:
        out += _check_references(doc, playbook, inventory, inventory_path or "the inventory")
    return out


def check_gates(playbook: Playbook, inventory: Inventory | None) -> list[tuple[int, tuple[Any, ...], str, str]]:
    """Rules that span steps: ``proceed`` only in front of protective steps; prepared pauses wait only for gates."""

    out: list[tuple[int, tuple[Any, ...], str, str]] = []
    index = {s.id: i for i, s in enumerate(playbook.steps)}
    for i, step in enumerate(playbook.steps):
        if not REGISTRY[step.kind].gate or step.with_.on_timeout != "proceed":
            continue
        for sid in graph.guarded(playbook, step.id):
            guarded = playbook.steps[index[sid]]
            why = None
            kind = REGISTRY[guarded.kind]
            names = kind.contacts(guarded)
            if not kind.protective and not names:
                why = f"'{sid}' is a {guarded.kind} step"
            elif names and inventory is not None:  # messages: protective while they stay inside the team
                try:
                    external = [r for r in recipients(inventory, names, []) if inventory.contacts[r].kind != "internal"]
                except KeyError:
                    external = []
                if external:
                    why = f"'{sid}' tells external contacts ({', '.join(external)})"
            if why:
                out.append((i, ("with", "on_timeout"), f"on_timeout: proceed, but {why}; only protective steps "
                            "(pause, snapshot, wait, internal notices) may go ahead without approval",
                            "Use abort or escalate, or move that step out from behind this gate."))
    return out


def _check_references(doc: Document, playbook: Playbook, inventory: Inventory, inv_path: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for i, step in enumerate(playbook.steps):
        for ref in REGISTRY[step.kind].references(step):
            if ref.category == "account":
                known = set(inventory.contracts) | set(inventory.signers)
                what = "contract or signer"
            else:
                known = inventory.names(ref.category)
                what = ref.category
            if ref.name not in known:
                guess = closest(ref.name, known)
                hint = f"Did you mean '{guess}'?" if guess else f"Add it to {inv_path}, or fix the name."
                out.append(_diag(doc, ("steps", i, *ref.loc), f"unknown {what} '{ref.name}' (not in {inv_path})", hint))
    return out


def _check_triggers(doc: Document, playbook: Playbook, inventory: Inventory | None) -> list[Diagnostic]:
    """Trigger sources, contracts and inputs exist; input templates use only alert fields."""
    out: list[Diagnostic] = []
    for i, trigger in enumerate(playbook.triggers):
        base = ("triggers", i)
        if inventory is not None and trigger.source not in inventory.alert_sources:
            guess = closest(trigger.source, inventory.alert_sources)
            out.append(_diag(doc, (*base, "source"), f"unknown alert source '{trigger.source}'",
                             f"Did you mean '{guess}'?" if guess else "Declare it under alert_sources: in the inventory."))
        for j, name in enumerate(trigger.match.address_in):
            if inventory is not None and name not in inventory.contracts:
                out.append(_diag(doc, (*base, "match", "address_in", j), f"unknown contract '{name}'"))
        for name, value in trigger.inputs.items():
            loc = (*base, "inputs", name)
            if name not in playbook.inputs:
                guess = closest(name, playbook.inputs)
                out.append(_diag(doc, loc, f"undefined input '{name}'", f"Did you mean '{guess}'?" if guess else "", key=True))
            for sub, text in _strings(value, loc):
                try:
                    refs = templating.references(templating.parse(text)) if is_template(text) else []
                except templating.TemplateError as exc:
                    out.append(_diag(doc, sub, str(exc)))
                    continue
                for ref in refs:
                    if ref.root != "alert":
                        out.append(_diag(doc, sub, f"a trigger's inputs may use only alert.* (not {ref.root})"))
                    elif ref.path and ref.path[0] is not None and ref.path[0] not in ALERT_FIELDS:
                        guess = closest(ref.path[0], ALERT_FIELDS)
                        out.append(_diag(doc, sub, f"alerts have no field '{ref.path[0]}'",
                                         f"Did you mean '{guess}'?" if guess else "Alert fields: " + ", ".join(ALERT_FIELDS) + "."))
                    else:
                        source = inventory.alert_sources.get(trigger.source) if inventory is not None else None
                        problem = _against_adapter(ref.path, trigger, source.kind if source is not None else None)
                        if problem:
                            out.append(_diag(doc, sub, *problem))
    return out


def _against_adapter(path: tuple[str | None, ...], trigger: Any, kind: str | None) -> tuple[str, str] | None:
    """A trigger input checked against what the source's adapter declares it outputs (``raw_keys``) and
    what the alert model guarantees: ``addresses`` may be empty unless ``match.address_in`` holds."""
    from breakglass.integrations.alerts import ADAPTERS

    if path[:1] == ("addresses",) and len(path) > 1 and (path[1] != "0" or not trigger.match.address_in):
        return (f"alert.addresses[{path[1] or '...'}] fails on an alert that names fewer addresses "
                "(alerts may name none)",
                "Add match: {address_in: [...]} so that a matching alert names at least one, and use "
                "alert.addresses[0] only; or use a field the adapter always fills (alert.tx_hash).")
    adapter = ADAPTERS.get(kind or "")
    keys = getattr(adapter, "raw_keys", None)
    if path[:1] == ("raw",) and len(path) > 1 and path[1] is not None and keys is not None and path[1] not in keys:
        return (f"{kind} alerts have no raw.{path[1]}", "raw keys of this source: " + ", ".join(sorted(keys)) + ".")
    return None


def _check_templates(doc: Document, playbook: Playbook) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    parents = graph.ancestors(playbook)
    kinds = {s.id: s.kind for s in playbook.steps}
    raw_steps = doc.data.get("steps", [])
    for i, step in enumerate(playbook.steps):
        raw = raw_steps[i] if i < len(raw_steps) and isinstance(raw_steps[i], dict) else {}
        for loc, value in _strings(raw, ("steps", i)):
            is_condition = loc[2:] == ("if",)
            if not is_condition and not is_template(value):
                continue
            try:
                tree = templating.parse(value, condition=is_condition)
            except templating.TemplateError as exc:
                out.append(_diag(doc, loc, str(exc)))
                continue
            for ref in templating.references(tree):
                problem = _check_reference(ref, playbook, step.id, parents[step.id], kinds)
                if problem:
                    out.append(_diag(doc, loc, problem[0], problem[1]))
    return out


def _check_reference(ref: templating.Reference, playbook: Playbook, step_id: str, parents: set[str],
                     kinds: dict[str, str]) -> tuple[str, str] | None:
    path = ref.path
    if ref.root not in templating.ROOTS:
        guess = closest(ref.root, templating.ROOTS)
        return (f"undefined template variable '{ref.root}'",
                (f"Did you mean '{guess}'? " if guess else "") + "Templates may use inputs.*, alert.* and steps.<id>.outputs.*.")
    if ref.root == "inputs":
        if not path or path[0] is None:
            return ("reference a declared input by name, e.g. inputs.attacker", "")
        if path[0] not in playbook.inputs:
            guess = closest(path[0], playbook.inputs)
            return (f"undefined input '{path[0]}' in {ref.dotted()}",
                    f"Did you mean '{guess}'?" if guess else "Declare it under 'inputs:'.")
        return None
    if ref.root == "alert":
        if path and path[0] is not None and path[0] not in ALERT_FIELDS:
            guess = closest(path[0], ALERT_FIELDS)
            return (f"alerts have no field '{path[0]}'",
                    f"Did you mean '{guess}'?" if guess else "Alert fields: " + ", ".join(ALERT_FIELDS) + ".")
        return None
    if len(path) < 3 or path[1] != "outputs" or path[0] is None or path[2] is None:
        return (f"{ref.dotted()}: reference an output as steps.<id>.outputs.<name>", "")
    target, field = path[0], path[2]
    if target not in kinds:
        guess = closest(target, kinds)
        return (f"{ref.dotted()}: no step '{target}'", f"Did you mean '{guess}'?" if guess else "")
    if target not in parents:
        return (f"{ref.dotted()}: step '{target}' is not among this step's needs",
                f"Add '{target}' to needs of '{step_id}', so the value exists before this step runs.")
    fields = REGISTRY[kinds[target]].outputs.model_fields
    if field not in fields:
        guess = closest(field, fields)
        return (f"{ref.dotted()}: a {kinds[target]} step has no output '{field}'",
                f"Did you mean '{guess}'?" if guess else "Outputs: " + ", ".join(fields) + ".")
    return None


def _strings(value: Any, loc: Loc) -> list[tuple[Loc, str]]:
    if isinstance(value, str):
        return [(loc, value)]
    if isinstance(value, dict):
        return [item for k, v in value.items() if k not in ("id", "kind", "needs", "description") or len(loc) > 2
                for item in _strings(v, loc + (k,))]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, loc + (i,))]
    return []


def check_inventory(loaded: Loaded) -> list[Diagnostic]:
    inv: Inventory = loaded.model
    doc = loaded.doc
    assert doc is not None
    out: list[Diagnostic] = []
    drill = inv.is_drill

    def need(loc: Loc, category: str, name: str) -> None:
        if name not in inv.names(category):
            guess = closest(name, inv.names(category))
            out.append(_diag(doc, loc, f"unknown {category} '{name}'", f"Did you mean '{guess}'?" if guess else ""))

    for name, chain in inv.chains.items():
        for j, rpc in enumerate(chain.rpc):
            if rpc.fixture and not drill:
                out.append(_diag(doc, ("chains", name, "rpc", j), "'fixture: anvil' is only allowed in a drill inventory",
                                 "Use 'env: NAME_OF_VARIABLE' holding the RPC URL, or set 'mode: drill'."))
            if rpc.env and drill:
                out.append(_diag(doc, ("chains", name, "rpc", j), "a drill inventory may only use 'fixture: anvil'",
                                 "Drills never talk to an RPC other than the chain they started."))
        if FIXTURE_RE.fullmatch(chain.multicall3) and not drill:
            out.append(_diag(doc, ("chains", name, "multicall3"), "fixture placeholders are only allowed in a drill inventory"))
    for name, contract in inv.contracts.items():
        need(("contracts", name, "chain"), "chain", contract.chain)
        if FIXTURE_RE.fullmatch(contract.address) and not drill:
            out.append(_diag(doc, ("contracts", name, "address"), "fixture placeholders are only allowed in a drill inventory",
                             "Write the contract's real address."))
        for loc, message in pausespec.problems(contract):
            out.append(_diag(doc, ("contracts", name, *loc), message, "See 'Pausing real protocols' in docs/language.md."))
    for name, signer in inv.signers.items():
        if isinstance(signer, FixtureSigner) and not drill:
            out.append(_diag(doc, ("signers", name, "kind"), "fixture signers are only allowed in a drill inventory",
                             "Use kind env, keystore or external."))
    for name, signer in inv.signers.items():
        if isinstance(signer, SafeSigner):
            need(("signers", name, "chain"), "chain", signer.chain)
            for j, owner in enumerate([*signer.owners, signer.executor]):
                loc = ("signers", name, "owners", j) if j < len(signer.owners) else ("signers", name, "executor")
                if owner not in inv.signers:
                    need(loc, "signer", owner)
                elif isinstance(inv.signers[owner], SafeSigner):
                    out.append(_diag(doc, loc, f"'{owner}' is itself a Safe; owners and the executor must be key signers"))
            if FIXTURE_RE.fullmatch(signer.address) and not drill:
                out.append(_diag(doc, ("signers", name, "address"), "fixture placeholders are only allowed in a drill inventory"))
    for name, contact in inv.contacts.items():
        for j, chain_name in enumerate(contact.chains):
            need(("contacts", name, "chains", j), "chain", chain_name)
        for j, channel in enumerate(contact.channels):
            need(("contacts", name, "channels", j, "via"), "channel", channel.via)
            transport = inv.channels.get(channel.via)
            rules = CHANNELS[transport.kind] if transport is not None else None  # each transport's own rules
            if rules is not None and rules.valid_to is not None:
                for k, address in enumerate(channel.to if isinstance(channel.to, list) else [channel.to or ""]):
                    if not rules.valid_to(address):
                        out.append(_diag(doc, ("contacts", name, "channels", j, "to") + ((k,) if isinstance(channel.to, list) else ()),
                                         f"'{address}' is not {rules.to_is}"))
            elif rules is not None and rules.needs_to and not channel.to:
                out.append(_diag(doc, ("contacts", name, "channels", j), f"a {rules.kind} channel needs 'to'"))
    for group, members in inv.groups.items():
        for j, member in enumerate(members):
            if member not in inv.contacts:
                need(("groups", group, j), "contact", member)
    for name, person in inv.roster.people.items():
        if person.address and FIXTURE_RE.fullmatch(person.address) and not drill:
            out.append(_diag(doc, ("roster", "people", name, "address"), "fixture placeholders are only allowed in a drill inventory",
                             "Write the address this person signs votes with."))
    if inv.slack_app is not None:
        transport = inv.channels.get(inv.slack_app.channel)
        if transport is None:
            need(("slack_app", "channel"), "channel", inv.slack_app.channel)
        elif transport.kind != "slack":
            out.append(_diag(doc, ("slack_app", "channel"), f"channel '{inv.slack_app.channel}' is a {transport.kind} channel",
                             "Name a channel of kind slack."))
    for group, people in inv.roster.groups.items():
        for j, who in enumerate(people):
            if who not in inv.roster.people:
                guess = closest(who, inv.roster.people)
                out.append(_diag(doc, ("roster", "groups", group, j), f"unknown person '{who}'",
                                 f"Did you mean '{guess}'?" if guess else "Add them under roster.people."))
    return out
