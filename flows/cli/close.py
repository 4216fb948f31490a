"""``breakglass close INCIDENT``: end an incident that is over (see ``flows/engine/closing.py``)."""

from __future__ import annotations

from typing import Annotated

import typer

from breakglass.flows.cli.base import AsOpt, JsonOpt, _api, _emit, _home, app, err
from breakglass.flows.errors import BreakglassError


@app.command()
def close(incident: str, as_: AsOpt = None,
          reason: Annotated[str, typer.Option("--reason", help="why it is over (audit log, war room)")] = "",
          resolution: Annotated[str | None, typer.Option(
              "--resolution", help="contained | false-positive | drill-aborted (default: contained; drill-aborted "
                                   "for drills)")] = None,
          as_json: JsonOpt = False) -> int:
    """Close an incident: stop its runner, cancel its runs (in Prefect too), release its gates, tell the war room.

    Afterwards resume, approve and ack refuse it, and the same alert opens a new incident.

    Example: breakglass close INC-20261205-0001 --as alice --reason "contained; vault paused" --resolution contained"""
    from breakglass.flows.engine import closing

    if not as_:
        raise BreakglassError("say who closes it: --as NAME (your roster name)")
    done = closing.close(_home(), incident, by=as_, reason=reason, resolution=resolution, api=_api())
    doc = done["closing"]
    if done["already_closed"]:
        err.print(f"{incident} was already closed by {doc['by']} at {doc['at']}; finished what was left", markup=False)
    else:
        err.print(f"{incident} closed by {doc['by']} ({doc['resolution']}): {doc['reason']}", markup=False)
    for run in done["runs"]:
        stopped = run["runner"]
        extra = [f"runner pid {stopped['pid']} stopped by {stopped['signal']} in {stopped['seconds']:g}s" if stopped else "", f"gates released: {', '.join(run['gates'])}" if run["gates"] else "",
                 f"{len(run['flow_runs'])} Prefect flow run(s) cancelled" if run["flow_runs"] else ""]
        err.print(f"  run {run['run']}: cancelled" + "".join(f"; {e}" for e in extra if e), markup=False)
    if done.get("war_room"):
        err.print("  the war room was told", markup=False)
    _emit(done, as_json)
    return 0
