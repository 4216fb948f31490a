"""Drill specs (``kind: Drill``, in ``playbooks/drills/<playbook>.yaml``): which playbook to rehearse, with
which inventory, inputs and initiator, and what a good response looks like (expectations), so that
`breakglass drill` can score it and fail CI when it falls short."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from breakglass.flows.errors import Diagnostic, SpecError
from breakglass.flows.language.inventory import EnvName
from breakglass.flows.language.types import Duration, Model, Name
from breakglass.integrations.alerts import AlertKind

Metric = Literal["detect", "acknowledge", "decision", "pause_submitted", "pause_confirmed", "first_notification",
                 "watchlist_posted"]
METRICS: tuple[str, ...] = get_args(Metric)


BUNDLED_INVENTORY = Path(__file__).resolve().parents[2] / "playbooks" / "inventories" / "drill.yaml"


def default_inventory(playbook_path: Path) -> Path:
    """``inventories/drill.yaml`` beside the playbook, else the bundled drill inventory (the fixture protocol)."""
    own = playbook_path.resolve().parent / "inventories" / "drill.yaml"
    return own if own.is_file() or not BUNDLED_INVENTORY.is_file() else BUNDLED_INVENTORY

class Expectations(Model):
    steps_completed: list[Name] | Literal["all"] = Field("all", description="steps that must end completed")
    paused: list[Name] = Field(default_factory=list, description="contracts that must be paused on chain afterwards")
    messages_to: list[Name] = Field(default_factory=list, description="contacts that must have a delivered message")
    watchlist_min_entries: int = Field(0, ge=0, description="the published watch list holds at least this many entries")
    times: dict[Metric, Duration] = Field(default_factory=dict, description="seconds from the start of the run")


class InjectedAlert(Model):
    """The alert the drill injects, in a real source format: a JSON file that may use ``{{ fixture.NAME }}``
    for the drill chain's addresses and transactions (``fixture.attack_tx``, ``fixture.attacker``)."""

    kind: AlertKind
    file: str = Field(description="the body, relative to the spec")
    inputs: dict[Name, str] = Field(default_factory=dict, description="playbook inputs from alert fields, "
                                                                       "e.g. attack_tx: '{{ alert.tx_hash }}'")


class ScenarioAction(Model):
    """One thing the attacker does on the drill chain before the alert, sent from ``from`` impersonated on
    anvil (no key): a fixture account, an address, or on a fork the live signer believed compromised."""

    id: Name | None = Field(None, description="names the action: later actions and the alert may use "
                                              "'{{ actions.<id>.tx_hash }}', '.block' and '.logs' (address, topics, data)")
    sender: str = Field(alias="from", description="address or template, e.g. '{{ fixture.admin }}'")
    to: str = Field(description="a contract of the inventory, an address, or a template")
    function: str | None = Field(None, description="e.g. 'transfer(address,uint256)'; none for a plain transfer")
    args: list[Any] = Field(default_factory=list)
    value: int = Field(0, ge=0, description="wei")


class ForkSetup(Model):
    """Rehearse on a fork of the live chain: the URL only by environment variable (it may carry an API key)."""

    url_env: EnvName = Field(description="environment variable holding the live chain's RPC URL")
    block: int | None = Field(None, ge=0, description="fork at this block (default: the latest)")


class DrillSpec(Model):
    apiVersion: Literal["breakglass/v1"]  # noqa: N815 - the YAML key
    kind: Literal["Drill"]
    name: Name
    description: str = ""
    playbook: str = Field(description="the playbook file, relative to this spec")
    inventory: str | None = Field(None, description="the drill inventory, relative to this spec (default: the "
                                                    "playbook folder's inventories/drill.yaml)")
    fork: ForkSetup | None = Field(None, description="fork the live chain instead of deploying the fixture protocol "
                                                     "(needs --inventory LIVE)")
    scenario: str = Field("", description="what happened, for the scorecard")
    actions: list[ScenarioAction] = Field(default_factory=list, description="the attacker's actions, executed on the "
                                                                           "drill chain before the alert")
    initiator: Name | None = Field(None, alias="as", description="the roster name who starts the run")
    inputs: dict[Name, str] = Field(default_factory=dict)
    alert: InjectedAlert | None = Field(None, description="injected after the scenario; its fields fill inputs")
    expectations: Expectations = Field(default_factory=Expectations)


def load(path: Path, inventory_override: Path | None = None) -> tuple[DrillSpec, Path, Path | None]:
    """The spec, its playbook path and inventory path (``inventory_override`` wins: a fork drill's live
    inventory); every problem with its file:line."""
    from breakglass.flows.spec import loader
    from breakglass.flows.spec.validate import load_playbook

    loaded = loader.load(path)
    spec = loader.require(loaded)
    doc = loaded.doc
    assert doc is not None  # require() has raised for a file that does not parse
    if loaded.kind != "Drill":
        raise SpecError([doc.diag(("kind",), "kind", f"expected a Drill, this file is a {loaded.kind}")])
    problems: list[Diagnostic] = []
    playbook = (path.parent / spec.playbook).resolve()
    if not playbook.is_file():
        problems.append(doc.diag(("playbook",), "playbook", f"no playbook at {playbook}",
                                 "The path is relative to the drill spec's folder."))
        raise SpecError(problems)
    inventory = inventory_override or ((path.parent / spec.inventory).resolve() if spec.inventory
                                       else default_inventory(playbook))
    book, inv = load_playbook(playbook, inventory)
    steps = {s.id for s in book.steps}
    expect = spec.expectations
    wanted = [] if expect.steps_completed == "all" else expect.steps_completed
    for i, sid in enumerate(wanted):
        if sid not in steps:
            problems.append(doc.diag(("expectations", "steps_completed", i), "expectations.steps_completed",
                                     f"no step '{sid}' in {book.name}", "Steps: " + ", ".join(sorted(steps)) + "."))
    assert inv is not None
    for i, name in enumerate(expect.paused):
        if name not in inv.contracts:
            problems.append(doc.diag(("expectations", "paused", i), "expectations.paused", f"unknown contract '{name}'"))
    for i, name in enumerate(expect.messages_to):
        if name not in inv.contacts:
            problems.append(doc.diag(("expectations", "messages_to", i), "expectations.messages_to",
                                     f"unknown contact '{name}'"))
    if spec.alert is not None:
        body = (path.parent / spec.alert.file).resolve()
        if not body.is_file():
            problems.append(doc.diag(("alert", "file"), "alert.file", f"no alert body at {body}"))
        for name in spec.alert.inputs:
            if name not in book.inputs:
                problems.append(doc.diag(("alert", "inputs", name), "alert.inputs", f"undefined input '{name}'",
                                         key=True))
        spec = spec.model_copy(update={"alert": spec.alert.model_copy(update={"file": str(body)})})
    if problems:
        raise SpecError(problems)
    return spec, playbook, inventory


def for_playbook(playbook: Path) -> Path | None:
    """``playbooks/drills/<playbook file>`` when it exists: `breakglass drill PLAYBOOK` uses it."""
    candidate = playbook.resolve().parent / "drills" / playbook.name
    return candidate if candidate.is_file() else None
