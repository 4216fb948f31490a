"""Crash detection for runs handed to a work pool.

A worker killed mid-run leaves its flow run Running (or Paused at a gate, or Pending when it died
while taking the run) in Prefect for ever.
Each runner rewrites ``heartbeat.json`` in the run's directory every 2 s while its process is
alive. Every worker sweeps the pool's live flow runs every few seconds: one whose heartbeat is
older than ``crash_after`` (90 s by default) is marked Crashed, and handed to the pool again with
``resume`` set, so another worker continues it from its record. The hand-back's idempotency key
is the crashed flow run's id, so any number of workers sweeping at once hand it back once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed

from breakglass.flows.errors import BreakglassError
from breakglass.flows.run import audit
from breakglass.flows.run.prefect_server import Api
from breakglass.flows.run.runstore import RunHandle, Store
from breakglass.flows.scale import deploy

log = logging.getLogger("breakglass.reaper")
CRASH_AFTER = 90.0


def heartbeat_age(handle: RunHandle, fallback: float | None = None) -> float | None:
    """Seconds since the run's runner last beat, or None when it never did."""
    try:
        beat = json.loads((handle.dir / "heartbeat.json").read_text())
        return max(0.0, time.time() - float(beat["at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None if fallback is None else max(0.0, time.time() - fallback)


def sweep(api: Api, home: Path, crash_after: float = CRASH_AFTER) -> list[str]:
    """Mark stale pool runs Crashed and hand them back; returns the runs handed back."""
    from breakglass.flows.engine.runner import settings

    handed: list[str] = []
    with settings(api), get_client(sync_client=True) as client:
        live: list[Any] = []
        while True:  # the API pages by at most 200
            page = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                    any_=[StateType.PENDING, StateType.RUNNING, StateType.PAUSED]))),
                flow_filter=FlowFilter(name=FlowFilterName(any_=[deploy.FLOW])), limit=200, offset=len(live))
            live += page
            if len(page) < 200:
                break
        for flow_run in live:
            key = (flow_run.parameters or {}).get("run")
            if flow_run.deployment_id is None or not isinstance(key, str):
                continue  # runs executed in-process (CLI, serve) are continued by `breakglass resume`
            try:
                handle = Store(home).handle(key)
            except BreakglassError:
                continue
            since = flow_run.start_time or (flow_run.state.timestamp if flow_run.state else None)
            age = heartbeat_age(handle, since.timestamp() if since else None)
            if flow_run.state and flow_run.state.timestamp and age is not None:  # a beat from an earlier attempt
                age = min(age, max(0.0, time.time() - flow_run.state.timestamp.timestamp()))
            if age is None or age < crash_after:
                continue
            try:
                hand_back(api, handle, client, flow_run, f"no heartbeat for {age:.0f}s (limit {crash_after:g}s)")
            except BreakglassError as exc:
                log.error("run %s: %s", key, exc)
                continue
            handed.append(key)
    return handed


def hand_back(api: Api, handle: RunHandle, client: Any, flow_run: Any, why: str) -> str:
    """Mark ``flow_run`` Crashed and create the flow run that continues the run on the pool; returns its id."""
    target = deploy.handed_off(handle)
    if target is None:
        raise BreakglassError(f"run {handle.dir.name} was not handed to a pool; continue it with `breakglass resume`")
    if flow_run is not None and not (flow_run.state and flow_run.state.is_final()):
        client.set_flow_run_state(flow_run.id, Crashed(message=f"breakglass: {why}; handed to pool "
                                                               f"'{target['pool']}' to continue"), force=True)
    incident = handle.dir.parent.parent
    audit.append(incident, "run.crashed", run=handle.dir.name, flow_run=str(flow_run.id) if flow_run else None,
                 reason=why)
    created = client.create_flow_run_from_deployment(
        target["deployment"], parameters={"run": f"{incident.name}/{handle.dir.name}", "resume": True},
        name=f"{incident.name}/{handle.dir.name}", tags=["breakglass", "resume"],
        idempotency_key=f"resume:{flow_run.id}" if flow_run is not None else None)
    log.warning("run %s/%s: %s; handed back to pool %s as flow run %s", incident.name, handle.dir.name, why,
                target["pool"], created.id)
    return str(created.id)


def resume_on_pool(api: Api, handle: RunHandle, alive_within: float = 10.0) -> str:
    """``breakglass resume`` of a pool run: refused while its runner still beats; returns the new flow run's id."""
    from breakglass.flows.engine.runner import settings

    age = heartbeat_age(handle)
    record = handle.load()
    if record.attempts:
        last = record.attempts[-1].flow_run_id
    elif (handoff := deploy.handed_off(handle)) is not None:
        last = handoff["flow_run"]
    else:
        raise BreakglassError(f"run {handle.dir.name} was never handed to a pool; resume it with `breakglass resume`")
    with settings(api), get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(last)) if last else None
        final = flow_run is not None and flow_run.state is not None and flow_run.state.is_final()
        if not final and age is not None and age < alive_within:
            beat = json.loads((handle.dir / "heartbeat.json").read_text())
            raise BreakglassError(f"run {handle.dir.name} is alive: its runner (pid {beat.get('pid')} on "
                                  f"{beat.get('host')}) beat {age:.0f}s ago; wait for it, or stop that worker first")
        if flow_run is not None and flow_run.state is not None and flow_run.state.type.value == "SCHEDULED":
            raise BreakglassError(f"run {handle.dir.name} is waiting for a worker of its pool (flow run {flow_run.id} "
                                  "is Scheduled): start `breakglass worker`")
        return hand_back(api, handle, client, flow_run, "resumed by hand (`breakglass resume`)")


def watch(api: Api, home: Path, crash_after: float, stop: threading.Event) -> None:
    every = max(1.0, min(15.0, crash_after / 6))
    while not stop.wait(every):
        try:
            sweep(api, home, crash_after)
        except Exception as exc:  # noqa: BLE001 - the watcher outlives API hiccups
            log.warning("crash sweep failed: %s: %s", type(exc).__name__, exc)
