"""``breakglass close``: an incident that is over is closed, with who, why and how it ended.

Closing writes ``closed.json`` first (from then on ``resume``, ``approve`` and ``ack`` refuse, and the
intake opens a new incident for the same alert), then stops a live runner through its lock holder
(SIGTERM, then SIGKILL of its process group), marks every run that is not over ``cancelled`` in the
record and in Prefect, releases its waiting gates, writes the closing to the audit log and, for a live
incident with a war room, posts one message there. Closing again finishes an interrupted closing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.effects.notice import Notice
from breakglass.flows.errors import BreakglassError
from breakglass.flows.gates.state import load_state, state_path
from breakglass.flows.run import audit
from breakglass.flows.run.home import pid_alive, write_private
from breakglass.flows.run.journal import Journal
from breakglass.flows.run.records import now
from breakglass.flows.run.runstore import RecordWriter, RunHandle, Store
from breakglass.flows.spec.validate import load_playbook

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory

RESOLUTIONS = ("contained", "false-positive", "drill-aborted")
OVER = ("completed", "failed", "cancelled")
NAME = "closed.json"


def closing(home: Path, incident: str) -> dict[str, Any] | None:
    path = Store(home).incident_dir(incident) / NAME
    return json.loads(path.read_text()) if path.exists() else None


def next_steps(incident: str) -> str:
    """The last line of every failed run: the exact commands to continue it and to end it."""
    return (f"next: `breakglass resume {incident}` continues it (after a fix); "
            f"`breakglass close {incident} --as NAME --reason TEXT` ends it")


def refuse_if_closed(home: Path, incident: str, what: str) -> None:
    """``resume``, ``approve`` and ``ack`` of a closed incident: the refusal names the closing."""
    found = closing(home, incident)
    if found is not None:
        raise BreakglassError(f"incident {incident} was closed by {found['by']} at {found['at']} ({found['resolution']}: "
                              f"{found['reason']}); nothing to {what}. A new alert or `breakglass run` opens a new incident")


def cancel_record(writer: RecordWriter, reason: str) -> None:
    """The run stops here: steps caught running or waiting fail with ``reason``, the run is ``cancelled``."""
    record = writer.snapshot()
    stamp = now()
    for step in record.steps:
        if step.status in ("running", "waiting"):
            writer.step(step.id, status="failed", error=reason, ended_at=stamp)
    attempts = record.attempts
    if attempts and attempts[-1].status in ("running", "paused"):
        attempts[-1] = attempts[-1].model_copy(update={"status": "cancelled", "ended_at": stamp})
    writer.update(status="cancelled", error=reason, ended_at=stamp, attempts=attempts)


def interrupted(handle: RunHandle, writer: RecordWriter, api: Any, signame: str) -> None:
    """Ctrl-C or SIGTERM in the runner: the run is cancelled in the record and in Prefect, and resumable."""
    from breakglass.flows.run import prefect_api as prefectapi

    reason = f"interrupted by {signame}"
    with writer._lock:  # no step thread writes between this and the exit
        cancel_record(writer, reason)
        writer.frozen = True
    audit.append(handle.dir.parent.parent, "run.interrupted", run=handle.dir.name, signal=signame)
    flow_runs = [a.flow_run_id for a in writer.record.attempts if a.flow_run_id]
    if flow_runs:
        prefectapi.cancel_flow_runs(api, flow_runs[-1:], reason)


def release_gates(handle: RunHandle, reason: str) -> list[str]:
    released = []
    for path in sorted((handle.dir / "gates").glob("*.json")):
        state = load_state(handle.dir, path.stem)
        if state is not None and state.status == "waiting":
            state.status, state.reason, state.decided_at = "cancelled", reason, time.time()
            write_private(state_path(handle.dir, path.stem), state.model_dump_json(indent=2).encode() + b"\n")
            released.append(path.stem)
    return released


def note_runner(handle: RunHandle, *, signals: bool) -> None:
    """Who holds the run: a CLI runner (a signal stops it) or a service running many runs in threads."""
    doc = {"pid": os.getpid(), "host": socket.gethostname(), "signals": signals}
    write_private(handle.dir / "runner.json", json.dumps(doc).encode() + b"\n")


def stop_runner(handle: RunHandle, api: Any = None, grace: float = 3.0) -> dict[str, Any] | None:
    """Stop the process holding the run's lock: SIGTERM, then SIGKILL of its process group. Returns what was done.

    A run inside ``serve`` or a worker is cancelled through Prefect instead (its gates stop waiting): a
    signal would stop every other run of that process."""
    if not handle.is_locked():
        return None
    noted = handle.dir / "runner.json"
    owner = json.loads(noted.read_text()) if noted.exists() else {}
    if owner.get("signals") is False:
        return _cancel_in_service(handle, api, owner)
    holder = (handle.dir / "runner.lock").read_text().strip()  # "pid N on HOST"
    parts = holder.split()
    if len(parts) != 4 or parts[0] != "pid" or not parts[1].isdigit():
        raise BreakglassError(f"run {handle.dir.name} is locked by {holder or 'an unknown process'}; stop it first")
    pid, host = int(parts[1]), parts[3]
    if host != socket.gethostname():
        raise BreakglassError(f"run {handle.dir.name} is executed on {host} (pid {pid}): stop it there "
                              "(Ctrl-C or kill -TERM), then close again")
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    if _released(handle, grace):
        return {"pid": pid, "signal": "SIGTERM", "seconds": round(time.monotonic() - started, 3)}
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        group = None
    if group == pid and group != os.getpgrp():  # the runner leads its own group: its children go with it
        os.killpg(group, signal.SIGKILL)
    elif pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    if not _released(handle, 5.0):
        raise BreakglassError(f"run {handle.dir.name}: pid {pid} still holds the runner lock after SIGKILL")
    return {"pid": pid, "signal": "SIGKILL", "seconds": round(time.monotonic() - started, 3)}


def _cancel_in_service(handle: RunHandle, api: Any, owner: dict[str, Any]) -> dict[str, Any]:
    from breakglass.flows.run import prefect_api as prefectapi

    started = time.monotonic()
    flow_runs = [a.flow_run_id for a in handle.load().attempts if a.flow_run_id]
    if api is not None and flow_runs:
        prefectapi.cancel_flow_runs(api, flow_runs[-1:], "incident closed")
    if not _released(handle, 10.0):
        raise BreakglassError(f"run {handle.dir.name} runs inside pid {owner.get('pid')} on {owner.get('host')} (serve or "
                              "a worker), which was asked through Prefect to cancel it and has not yet; close again "
                              "once its current step ends")
    return {"pid": owner.get("pid"), "signal": "prefect-cancel", "seconds": round(time.monotonic() - started, 3)}


def _released(handle: RunHandle, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not handle.is_locked():
            return True
        time.sleep(0.05)
    return not handle.is_locked()


def close(home: Path, incident: str, *, by: str, reason: str, resolution: str | None, api: Any) -> dict[str, Any]:
    """Close ``incident``; returns what was done (the runs cancelled, the runners stopped, the gates released)."""
    from breakglass.flows.run import prefect_api as prefectapi

    store = Store(home)
    handles = store.runs(incident)
    mode = store.incident_mode(incident) or "live"
    if not reason.strip():
        raise BreakglassError("close needs --reason TEXT: the audit log and the war room say why it ended")
    if resolution is not None and resolution not in RESOLUTIONS:
        raise BreakglassError(f"--resolution {resolution}: choose one of {', '.join(RESOLUTIONS)}")
    inventories = [load_playbook(h.dir / "playbook.yaml", h.dir / "inventory.yaml")[1] for h in handles]
    roster = {name for inv in inventories if inv is not None for name in inv.roster.people}
    if roster and by not in roster:
        raise BreakglassError(f"--as {by}: not on the roster of incident {incident} ({', '.join(sorted(roster))})")
    base = store.incident_dir(incident)
    earlier = closing(home, incident)
    doc = earlier or {"incident": incident, "by": by, "reason": reason, "at": now(), "mode": mode,
                      "resolution": resolution or ("drill-aborted" if mode == "drill" else "contained")}
    if earlier is None:
        write_private(base / NAME, json.dumps(doc, indent=2).encode() + b"\n")
    why = f"incident closed by {doc['by']}: {doc['reason']}"
    done: dict[str, Any] = {"closing": doc, "already_closed": earlier is not None, "runs": []}
    for handle in handles:
        if handle.load().status in ("completed", "failed"):
            continue
        stopped = stop_runner(handle, api)
        writer = RecordWriter(handle)
        cancel_record(writer, why)
        gates = release_gates(handle, why)
        flow_runs = [a.flow_run_id for a in writer.record.attempts if a.flow_run_id]
        cancelled = prefectapi.cancel_flow_runs(api, flow_runs, why) if flow_runs else []
        audit.append(base, "run.cancelled", run=handle.dir.name, reason=why, runner=stopped, gates=gates,
                     flow_runs=cancelled)
        done["runs"].append({"run": handle.dir.name, "runner": stopped, "gates": gates, "flow_runs": cancelled})
    if earlier is None:
        audit.append(base, "incident.closed", by=by, reason=reason, resolution=doc["resolution"],
                     runs=[r["run"] for r in done["runs"]])
    if mode == "live" and handles and inventories[0] is not None:
        done["war_room"] = _tell_war_room(handles[0], inventories[0], doc)
    return done


def _tell_war_room(handle: RunHandle, inventory: Inventory, doc: dict[str, Any]) -> bool:
    """One message in the war room (the Slack app's channel), journaled: closing twice posts once."""

    if inventory.slack_app is None:
        return False
    record = handle.load()
    notice = Notice(inventory, Journal(handle.dir / "journal.jsonl"), record.run_key, record.incident, record.playbook.name)
    text = (f"Incident {doc['incident']} closed by {doc['by']} ({doc['resolution']}): {doc['reason']}. "
            "Its runs are stopped; a new alert opens a new incident.")
    return notice.post_once(f"{doc['incident']}/slack-closed", text)
