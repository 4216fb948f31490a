"""The run entry point: the one Python call behind ``breakglass run``, ``drill`` and, later, ``serve``.

It validates, resolves inputs, creates the run under its incident, and executes it. Whatever
must happen before Prefect starts (the fast-path pause of a later issue) belongs here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from breakglass.flows import inputs as inputs_mod
from breakglass.flows import prepared, signers
from breakglass.flows.context import Bindings
from breakglass.flows.errors import BreakglassError
from breakglass.flows.home import check_id
from breakglass.flows.inventory import Inventory
from breakglass.flows.playbook import Playbook
from breakglass.flows.records import RunRecord
from breakglass.flows.runstore import RunHandle, Store, new_incident_id
from breakglass.flows.server import Api
from breakglass.flows.steps import REGISTRY
from breakglass.flows.validate import load_playbook


def start(*, playbook_path: Path, inventory_path: Path, given: dict[str, Any], incident: str | None, home: Path,
          api: Callable[[], Api], bindings: Bindings | None = None, drill_values: dict[str, Any] | None = None,
          expect_mode: str | None = None, on_created: Callable[[RunHandle], None] | None = None,
          initiator: str | None = None, initiator_via: str = "cli", keys: dict[str, Any] | None = None,
          owner: str | None = None) -> RunRecord:
    """Create the run, broadcast its prepared pauses, then run it on Prefect.

    The fast path runs before the Prefect API is contacted (``api`` is called after it) and
    before Prefect is imported: neither stands between the alert and the broadcast.
    """
    handle, _ = begin(playbook_path=playbook_path, inventory_path=inventory_path, given=given, incident=incident,
                      home=home, bindings=bindings, drill_values=drill_values, expect_mode=expect_mode,
                      initiator=initiator, initiator_via=initiator_via, owner=owner)
    if on_created is not None:
        on_created(handle)
    return execute(handle, api(), home, keys=keys)


def begin(*, playbook_path: Path, inventory_path: Path, given: dict[str, Any], incident: str | None, home: Path,
          bindings: Bindings | None = None, drill_values: dict[str, Any] | None = None,
          expect_mode: str | None = None, initiator: str | None = None,
          initiator_via: str = "cli", owner: str | None = None) -> tuple[RunHandle, dict[str, Any] | None]:
    """Create the run and broadcast its prepared pauses: everything that happens before Prefect.

    ``owner`` marks the run as this installation's `serve`'s (``owner.json``, written before the record):
    a restarted `serve` continues such runs when their runner is gone."""
    handle, playbook, inventory = _create(playbook_path=playbook_path, inventory_path=inventory_path, given=given,
                                          incident=incident, home=home, bindings=bindings, drill_values=drill_values,
                                          expect_mode=expect_mode, initiator=initiator, initiator_via=initiator_via,
                                          owner=owner)
    report = None
    if prepared.prepared_steps(playbook):
        report = prepared.broadcast(handle.dir, handle.load().run_key, playbook, inventory, home, bindings)
    return handle, report


def _create(*, playbook_path: Path, inventory_path: Path, given: dict[str, Any], incident: str | None, home: Path,
            bindings: Bindings | None = None, drill_values: dict[str, Any] | None = None,
            expect_mode: str | None = None, initiator: str | None = None,
            initiator_via: str = "cli", owner: str | None = None) -> tuple[RunHandle, Playbook, Inventory]:
    playbook, inventory = load_playbook(playbook_path, inventory_path)
    assert inventory is not None
    if expect_mode == "drill" and not inventory.is_drill:
        raise BreakglassError(f"{inventory_path} is a live inventory (it does not say 'mode: drill'); drills refuse it")
    check_initiator(playbook, inventory, initiator, initiator_via)
    values = inputs_mod.resolve(playbook, given, inventory, drill_values)
    incident = check_id(incident) if incident else new_incident_id(inventory.mode)
    handle = Store(home).create_run(
        incident=incident, mode=inventory.mode, playbook_name=playbook.name,
        step_kinds=[(s.id, s.kind) for s in playbook.steps], playbook_file=playbook_path,
        inventory_name=inventory.name, inventory_file=inventory_path, inputs=values, bindings=bindings,
        initiator=initiator, initiator_via=initiator_via, owner=owner,
    )
    return handle, playbook, inventory


def check_initiator(playbook: Playbook, inventory: Inventory, initiator: str | None, via: str) -> None:
    """``--as`` must name someone on the roster; gates that exclude the initiator need to know who that is."""
    if initiator is not None and via in ("cli", "drill") and initiator not in inventory.roster.people:
        known = ", ".join(sorted(inventory.roster.people)) or "nobody: the inventory has no roster"
        raise BreakglassError(f"--as {initiator}: not on the roster of inventory '{inventory.name}' (roster: {known})")
    excluding = [s.id for s in playbook.steps if s.kind == "approval" and s.with_.exclude_initiator]
    if excluding and initiator is None and not inventory.is_drill:
        raise BreakglassError(f"gate(s) {', '.join(excluding)} exclude the person who starts the run: "
                              "say who you are with --as NAME (a roster name)")


def needed_signers(playbook: Playbook) -> set[str]:
    return {ref.name for step in playbook.steps for ref in REGISTRY[step.kind].references(step) if ref.category == "signer"}


def execute(handle: RunHandle, api: Api, home: Path, *, resume: bool = False,
            keys: dict[str, Any] | None = None, flow_run: Any = None) -> RunRecord:
    """Unlock the run's signers once, up front (unless `serve` holds them), then hand the run to the Prefect runner."""
    from breakglass.flows import runner  # imports Prefect: only when something runs

    playbook, inventory = load_playbook(handle.dir / "playbook.yaml", handle.dir / "inventory.yaml")
    assert inventory is not None
    if keys is None:
        keys = signers.unlock(inventory, needed_signers(playbook), handle.bindings(), signers.interactive_prompt())
    return runner.execute(handle, api, home, resume=resume, signers=keys, models=(playbook, inventory),
                          flow_run=flow_run)


def unfinished(incident: str, home: Path) -> list[RunHandle]:
    todo = [h for h in Store(home).runs(incident) if h.load().status not in ("completed", "cancelled")]
    if not todo:
        raise BreakglassError(f"incident {incident}: every run is completed; nothing to resume")
    return todo


def resume(incident: str, api: Api, home: Path) -> list[RunRecord]:
    """Continue every run of the incident that is not completed and whose runner is gone.

    Runs that were handed to a work pool go back to that pool (another worker continues them);
    the others continue in this process. Returns the records of the runs continued here.
    """
    from breakglass.flows.deploy import handed_off

    handles = Store(home).runs(incident)
    todo = [h for h in unfinished(incident, home) if handed_off(h) is None]
    if handles and handles[0].load().mode == "drill" and any(h.bindings().rpc for h in todo):
        raise BreakglassError(f"incident {incident} is a drill whose anvil has stopped; start a new drill instead")
    return [execute(h, api, home, resume=True) for h in todo]
