"""The run entry point: the one Python call behind ``breakglass run``, ``drill``, ``serve`` and workers.

It validates, resolves inputs, creates the run under its incident, and executes it. Whatever
must happen before Prefect starts (the prepared pauses of the fast path) happens here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breakglass.flows.effects import prepared
from breakglass.flows.effects import unlock as signers
from breakglass.flows.engine.closing import next_steps, refuse_if_closed
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import inputs as inputs_mod
from breakglass.flows.language.inventory import Inventory
from breakglass.flows.readiness import preflight
from breakglass.flows.run import audit
from breakglass.flows.run.context import Bindings
from breakglass.flows.run.home import check_id
from breakglass.flows.run.prefect_server import Api
from breakglass.flows.run.records import RunRecord, now
from breakglass.flows.run.runstore import RecordWriter, RunHandle, Store, handed_off, new_incident_id
from breakglass.flows.spec.playbook import Playbook
from breakglass.flows.spec.validate import load_playbook
from breakglass.flows.steps import REGISTRY


@dataclass(frozen=True)
class Validated:
    """A playbook and its inventory as validation accepted them, with the exact bytes it read and the files'
    identity then. `serve` holds one per playbook from its start, so an alert's run is created from these
    models and bytes: no file is read or validated again between the 202 and the broadcast, and the run
    record's digests are those of what was validated and runs."""

    playbook: Playbook
    inventory: Inventory
    playbook_bytes: bytes
    inventory_bytes: bytes
    stamps: tuple[tuple[int, int, int], tuple[int, int, int]]

    @classmethod
    def load(cls, playbook_path: Path, inventory_path: Path) -> Validated:
        """Validate both files; the bytes kept are the ones validated (a file replaced meanwhile is read again)."""
        for _ in range(3):
            stamps = (_stamp(playbook_path), _stamp(inventory_path))
            data = (playbook_path.read_bytes(), inventory_path.read_bytes())
            playbook, inventory = load_playbook(playbook_path, inventory_path)
            assert inventory is not None
            if (playbook_path.read_bytes(), inventory_path.read_bytes()) == data \
                    and (_stamp(playbook_path), _stamp(inventory_path)) == stamps:
                return cls(playbook, inventory, data[0], data[1], stamps)
        raise BreakglassError(f"{playbook_path} or {inventory_path} changed on every read; try again when they are written")

    def changed_on_disk(self, playbook_path: Path, inventory_path: Path) -> list[Path]:
        """The files whose identity (inode, size, mtime) is not the one validated: a stat, never a read."""
        return [p for p, was in zip((playbook_path, inventory_path), self.stamps, strict=True) if _stamp(p) != was]


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def start(*, playbook_path: Path, inventory_path: Path, given: dict[str, Any], incident: str | None, home: Path,
          api: Callable[[], Api], bindings: Bindings | None = None, drill_values: dict[str, Any] | None = None,
          expect_mode: str | None = None, on_created: Callable[[RunHandle], None] | None = None,
          initiator: str | None = None, initiator_via: str = "cli", keys: dict[str, Any] | None = None,
          owner: str | None = None, validated: Validated | None = None) -> RunRecord:
    """Create the run, broadcast its prepared pauses, then run it on Prefect.

    The fast path runs before the Prefect API is contacted (``api`` is called after it) and
    before Prefect is imported: neither stands between the alert and the broadcast. With
    ``validated`` (`serve`), the files are not read again: the run gets those models and bytes.
    """
    handle, _ = begin(playbook_path=playbook_path, inventory_path=inventory_path, given=given, incident=incident,
                      home=home, bindings=bindings, drill_values=drill_values, expect_mode=expect_mode,
                      initiator=initiator, initiator_via=initiator_via, owner=owner, validated=validated)
    if on_created is not None:
        on_created(handle)
    try:
        found = api()  # may start the local Prefect server: seconds in which Ctrl-C or an error can come
    except (Exception, KeyboardInterrupt) as exc:
        _failed_start(handle, str(exc) or "interrupted before it started")
        raise
    models = (validated.playbook, validated.inventory) if validated is not None else None
    return execute(handle, found, home, keys=keys, models=models)


def begin(*, playbook_path: Path, inventory_path: Path, given: dict[str, Any], incident: str | None, home: Path,
          bindings: Bindings | None = None, drill_values: dict[str, Any] | None = None,
          expect_mode: str | None = None, initiator: str | None = None,
          initiator_via: str = "cli", owner: str | None = None,
          validated: Validated | None = None) -> tuple[RunHandle, dict[str, Any] | None]:
    """Create the run and broadcast its prepared pauses: everything that happens before Prefect.

    ``owner`` marks the run as this installation's `serve`'s (``owner.json``, written before the record):
    a restarted `serve` continues such runs when their runner is gone."""
    handle, playbook, inventory = _create(playbook_path=playbook_path, inventory_path=inventory_path, given=given,
                                          incident=incident, home=home, bindings=bindings, drill_values=drill_values,
                                          expect_mode=expect_mode, initiator=initiator, initiator_via=initiator_via,
                                          owner=owner, validated=validated)
    report = None
    if prepared.prepared_steps(playbook):
        try:
            report = prepared.broadcast(handle.dir, handle.load().run_key, playbook, inventory, home, bindings)
        except (BreakglassError, KeyboardInterrupt) as exc:
            _failed_start(handle, str(exc) or "interrupted before it started")  # journaled sends reconcile on resume
            raise
    return handle, report


def _create(*, playbook_path: Path, inventory_path: Path, given: dict[str, Any], incident: str | None, home: Path,
            bindings: Bindings | None = None, drill_values: dict[str, Any] | None = None,
            expect_mode: str | None = None, initiator: str | None = None,
            initiator_via: str = "cli", owner: str | None = None,
            validated: Validated | None = None) -> tuple[RunHandle, Playbook, Inventory]:
    if validated is not None:
        playbook, inventory = validated.playbook, validated.inventory
    else:
        playbook, loaded = load_playbook(playbook_path, inventory_path)
        assert loaded is not None
        inventory = loaded
    if expect_mode == "drill" and not inventory.is_drill:
        raise BreakglassError(f"{inventory_path} is a live inventory (it does not say 'mode: drill'); drills refuse it")
    check_initiator(playbook, inventory, initiator, initiator_via)
    values = inputs_mod.resolve(playbook, given, inventory, drill_values)
    incident = check_id(incident) if incident else new_incident_id(inventory.mode)
    if Store(home).incident_mode(incident) in (None, inventory.mode):  # else create_run refuses the mix, first
        preflight.refuse_missing_env(inventory, playbook)  # every missing variable at once, before anything starts
        # the fast path's own batch checks the code of what it broadcasts to: no second round trip in front of it
        fast = {c for step in prepared.prepared_steps(playbook) for c in step.with_.contracts}
        preflight.refuse_no_code(playbook, inventory, bindings or Bindings(), skip=fast)
    handle = Store(home).create_run(
        incident=incident, mode=inventory.mode, playbook_name=playbook.name,
        step_kinds=[(s.id, s.kind) for s in playbook.steps], playbook_file=playbook_path,
        inventory_name=inventory.name, inventory_file=inventory_path, inputs=values, bindings=bindings,
        initiator=initiator, initiator_via=initiator_via, owner=owner,
        contents=(validated.playbook_bytes, validated.inventory_bytes) if validated is not None else None,
    )
    return handle, playbook, inventory


def check_initiator(playbook: Playbook, inventory: Inventory, initiator: str | None, via: str) -> None:
    """``--as`` must name someone on the roster; gates that exclude the initiator need to know who that is."""
    if initiator is not None and via in ("cli", "drill") and initiator not in inventory.roster.people:
        known = ", ".join(sorted(inventory.roster.people)) or "nobody: the inventory has no roster"
        raise BreakglassError(f"--as {initiator}: not on the roster of inventory '{inventory.name}' (roster: {known})")
    excluding = [s.id for s in playbook.steps if REGISTRY[s.kind].excludes_initiator(s)]
    if excluding and initiator is None and not inventory.is_drill:
        raise BreakglassError(f"gate(s) {', '.join(excluding)} exclude the person who starts the run: "
                              "say who you are with --as NAME (a roster name)")


def needed_signers(playbook: Playbook) -> set[str]:
    return {ref.name for step in playbook.steps for ref in REGISTRY[step.kind].references(step) if ref.category == "signer"}


def execute(handle: RunHandle, api: Api, home: Path, *, resume: bool = False,
            keys: dict[str, Any] | None = None, flow_run: Any = None, from_step: str | None = None,
            by: str | None = None, models: tuple[Playbook, Inventory] | None = None) -> RunRecord:
    """Unlock the run's signers once, up front (unless `serve` holds them), then hand the run to the Prefect runner.

    ``models``: the run's playbook and inventory as validated when it was created in this process (`serve`);
    without them (a resume, a worker) they are loaded from the run's own copies."""
    from breakglass.flows.engine import runner  # imports Prefect: only when something runs

    try:
        if models is None:
            loaded = load_playbook(handle.dir / "playbook.yaml", handle.dir / "inventory.yaml")
            assert loaded[1] is not None
            models = (loaded[0], loaded[1])
        playbook, inventory = models
        if keys is None:
            keys = signers.unlock(inventory, needed_signers(playbook), handle.bindings(), signers.interactive_prompt())
    except (Exception, KeyboardInterrupt) as exc:
        if not resume:  # never "running" without a runner: the new run failed its pre-flight, and says why
            _failed_start(handle, str(exc) or "interrupted before it started")
        if isinstance(exc, BreakglassError):
            raise BreakglassError(f"{exc}\n{next_steps(handle.dir.parent.parent.name)}") from None
        raise
    return runner.execute(handle, api, home, resume=resume, signers=keys, models=(playbook, inventory),
                          flow_run=flow_run, from_step=from_step, by=by)


def _failed_start(handle: RunHandle, reason: str) -> None:
    writer = RecordWriter(handle)
    if writer.record.attempts:
        return
    writer.update(status="failed", error=f"pre-flight: {reason}", ended_at=now())
    audit.append(handle.dir.parent.parent, "run.failed_start", run=handle.dir.name, error=f"pre-flight: {reason}")


def unfinished(incident: str, home: Path) -> list[RunHandle]:
    todo = [h for h in Store(home).runs(incident) if h.load().status != "completed"]  # cancelled: interrupted
    if not todo:
        raise BreakglassError(f"incident {incident}: every run is completed; nothing to resume")
    return todo


def resume(incident: str, api: Api, home: Path, *, from_step: str | None = None,
           by: str | None = None) -> list[RunRecord]:
    """Continue every run of the incident that is not completed and whose runner is gone.

    Runs that were handed to a work pool go back to that pool (another worker continues them);
    the others continue in this process. Returns the records of the runs continued here. With
    ``from_step``, only the runs that have that step, completed ones included, and from that step on.
    """

    handles = Store(home).runs(incident)
    refuse_if_closed(home, incident, "resume")
    if from_step is not None:
        todo = [h for h in handles if any(s.id == from_step for s in h.load().steps)]
        if not todo:
            raise BreakglassError(f"resume --from {from_step}: no run of incident {incident} has a step {from_step!r}")
    else:
        todo = [h for h in unfinished(incident, home) if handed_off(h) is None]
    if handles and handles[0].load().mode == "drill" and any(h.bindings().rpc for h in todo):
        raise BreakglassError(f"incident {incident} is a drill whose anvil has stopped; start a new drill instead, and "
                              f"clear this one with `breakglass close {incident} --as NAME --reason TEXT`")
    return [execute(h, api, home, resume=True, from_step=from_step, by=by) for h in todo]
