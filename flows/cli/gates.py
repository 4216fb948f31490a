"""``approve``, ``ack`` and ``status``: the commands responders use while a run waits for them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from breakglass.flows.cli import output as cli_output
from breakglass.flows.cli.base import IncidentArg, JsonOpt, VoterOpt, _api, _emit, _home, app, err, out
from breakglass.flows.effects import safepending
from breakglass.flows.errors import BreakglassError
from breakglass.flows.steps import is_gate

if TYPE_CHECKING:
    from breakglass.flows.run.records import RunRecord
    from breakglass.flows.run.runstore import RunHandle

HEARTBEAT_STALE = 15.0  # seconds without a heartbeat before a runner counts as gone


@app.command()
def approve(incident: IncidentArg, step: Annotated[str, typer.Argument(help="the gate's step id", metavar="STEP")],
            as_: VoterOpt = None,
            sign_with: Annotated[str | None, typer.Option("--sign-with", help="env:VAR, keystore:PATH or (drills) fixture:NAME",
                                                          metavar="SIGNER")] = None,
            reject: Annotated[bool, typer.Option("--reject", help="vote against")] = False,
            reason: Annotated[str, typer.Option("--reason", help="why (required with --reject)")] = "",
            as_json: JsonOpt = False) -> int:
    """Vote at an approval gate. Signed votes (--sign-with) are EIP-712 signatures over the gate's digest.

    Examples: breakglass approve INC-20261205-0001 approve-external --as alice --sign-with env:ALICE_KEY ·
    breakglass approve DRILL-… approve-external --as bob --sign-with fixture:bob"""
    from breakglass.flows.gates import voting

    if not as_:
        raise BreakglassError("say who you are: --as NAME (your roster name)")
    if reject and not reason.strip():
        raise BreakglassError("--reject needs --reason TEXT: the others need to know why")
    home = _home()
    _refuse_closed(home, incident, "approve")
    gate = voting.locate(home, incident, step)
    account = voting.key_for(sign_with, gate) if sign_with else None
    vote = voting.make_vote(gate, step, as_, reject=reject, reason=reason, channel="signed" if account else "cli-unsigned",
                            account=account)
    refused = voting.precheck(gate, vote)
    if refused is not None:
        voting.refuse(gate, vote, refused, via="approve")
        raise BreakglassError(f"vote refused: {refused}. Nothing was sent.")
    for line in gate.state.authorises:
        err.print(f"  authorises: {line}", markup=False)
    err.print(f"  digest {gate.state.digest}", markup=False)
    voting.submit(_api(), gate, vote)
    alive = _runner_alive(gate.handle)
    result = voting.verdict(gate, vote.id, 10.0 if alive else 1.0)
    doc: dict[str, Any] = {"incident": incident, "step": step, "vote": vote.id, "name": as_, "decision": vote.decision,
                           "channel": vote.channel, "digest": vote.digest}
    if result is None:
        doc["status"] = "submitted"
        err.print("submitted; the runner has not judged it yet" + ("" if alive else
                  " (its runner is not running: `breakglass resume` will count it)"), markup=False)
        _emit(doc, as_json)
        return 0
    doc.update(status="counted" if result["counted"] else "refused", reason=result.get("reason"),
               approvals=result["approvals"], quorum=result["quorum"], gate=result["gate_status"])
    _emit(doc, as_json)
    if not result["counted"]:
        raise BreakglassError(f"vote refused by the runner: {result['reason']}")
    err.print(f"counted: {vote.decision} by {as_} via {vote.channel}; {result['approvals']} of {result['quorum']} "
              f"approvals; gate {result['gate_status']}", markup=False)
    return 0


@app.command()
def ack(incident: IncidentArg, as_: VoterOpt = None, as_json: JsonOpt = False) -> int:
    """Acknowledge the incident: the first human acknowledgement is recorded (drills score it).

    Example: breakglass ack INC-20261205-0001 --as alice"""
    from breakglass.flows.run import audit
    from breakglass.flows.run.home import write_private
    from breakglass.flows.run.runstore import Store
    from breakglass.flows.spec.validate import load_playbook

    if not as_:
        raise BreakglassError("say who you are: --as NAME (your roster name)")
    store = Store(_home())
    handles = store.runs(incident)
    _refuse_closed(store.home, incident, "acknowledge")
    roster: set[str] = set()
    for handle in handles:
        _, inventory = load_playbook(handle.dir / "playbook.yaml", handle.dir / "inventory.yaml")
        roster |= set(inventory.roster.people) if inventory else set()
    base = store.incident_dir(incident)
    if as_ not in roster:
        audit.append(base, "ack.refused", name=as_, reason="not on the roster")
        raise BreakglassError(f"--as {as_}: not on the roster of incident {incident} ({', '.join(sorted(roster)) or 'empty'})")
    path = base / "ack.json"
    first = json.loads(path.read_text()) if path.exists() else None
    entry = audit.append(base, "ack", name=as_, first=first is None)
    if first is None:
        first = {"name": as_, "at": entry["at"], "seconds_after_start": _since_start(handles, entry["at"])}
        write_private(path, json.dumps(first, indent=2).encode() + b"\n")
        err.print(f"acknowledged by {as_} at {first['at']}", markup=False)
    else:
        err.print(f"already acknowledged by {first['name']} at {first['at']}; yours is in the audit log too", markup=False)
    _emit({"incident": incident, "first": first, "you": as_}, as_json)
    return 0


def _refuse_closed(home: Path, incident: str, what: str) -> None:
    from breakglass.flows.engine.closing import refuse_if_closed

    refuse_if_closed(home, incident, what)


def _since_start(handles: list[Any], at: str) -> float | None:
    from datetime import datetime

    created = [h.load().created_at for h in handles]
    if not created:
        return None
    start = min(datetime.fromisoformat(c.replace("Z", "+00:00")) for c in created)
    return round((datetime.fromisoformat(at.replace("Z", "+00:00")) - start).total_seconds(), 3)


def _runner_alive(handle: RunHandle) -> bool:
    """Alive if it holds the run's lock; on another machine, if its heartbeat is recent."""
    import socket

    if handle.is_locked():
        return True
    path = handle.dir / "heartbeat.json"
    if not path.exists():
        return False
    beat = json.loads(path.read_text())
    if beat.get("host") == socket.gethostname():
        return False  # same machine: a free lock means the runner is gone
    return time.time() - float(beat.get("at", 0)) < HEARTBEAT_STALE


def _gates(handle: RunHandle, record: RunRecord) -> list[dict[str, Any]]:
    from breakglass.flows.gates.state import load_state

    found: list[dict[str, Any]] = []
    for step in record.steps:
        if not is_gate(step.kind):
            continue
        state = load_state(handle.dir, step.id)
        if state is None:
            found.append({"step": step.id, "status": step.status})
            continue
        counted = {v["name"] for v in state.votes if v.get("counted")}
        approvals = sorted({v["name"] for v in state.votes if v.get("counted") and v["decision"] == "approve"})
        waiting_for = sorted(n for n in state.eligible if n not in counted
                             and not (state.exclude_initiator and n == state.initiator))
        found.append({"step": step.id, "status": state.status, "quorum": state.quorum, "approvals": approvals,
                      "waiting_for": waiting_for if state.status == "waiting" else [],
                      "seconds_left": round(state.deadline - time.time(), 1) if state.status == "waiting" else None,
                      "digest": state.digest, "authorises": state.authorises, "changes": state.changes,
                      "refused": [{"name": v.get("name"), "reason": v.get("reason")} for v in state.votes if not v.get("counted")],
                      "reason": state.reason})
    return found


def _waiting_txs(handle: RunHandle, record: RunRecord) -> list[dict[str, Any]]:
    """Transactions of an unfinished run that have waited past bump_after_blocks, or behind a nonce gap."""
    if record.status not in ("running", "paused"):
        return []
    from breakglass.flows.effects.noncegap import waiting
    from breakglass.flows.run.journal import Journal

    path = handle.dir / "journal.jsonl"
    return waiting(Journal(path).entries()) if path.exists() else []


def _step_rows(record: RunRecord) -> list[dict[str, Any]]:
    return [{"id": s.id, "kind": s.kind, "status": s.status, "attempts": s.attempts, "error": s.error,
             "reason": s.reason, "detail": cli_output.step_detail(s)} for s in record.steps]


def _status_note(doc: dict[str, Any]) -> str:
    gone = f"breakglass close {doc['incident']}" if doc["mode"] == "drill" else "breakglass resume, or close"
    return (f" (runner gone: {gone})" if doc["runner_stale"] else "") + (
        f" (closed by {doc['closed']['by']}: {doc['closed']['resolution']})" if doc.get("closed") else "")


def _signer_form(mode: str) -> str:
    return "fixture:NAME" if mode == "drill" else "env:YOUR_KEY_VAR (or keystore:PATH)"


@app.command()
def status(incident: Annotated[str | None, typer.Argument(help="one incident (default: all)", metavar="INCIDENT")] = None,
           as_json: JsonOpt = False,
           all_: Annotated[bool, typer.Option("--all", help="closed incidents too")] = False,
           drills: Annotated[bool, typer.Option("--drills", help="drills instead of live incidents")] = False) -> int:
    """Show incidents: their runs and steps (with errors), the gates waiting and for whom, and runners that died.

    Without an incident: the live incidents that are not closed (--drills: the drills; --all: closed ones too).

    Examples: breakglass status · breakglass status INC-20261205-0001 --json · breakglass status --drills"""
    from breakglass.flows.engine.closing import closing
    from breakglass.flows.run.runstore import Store
    from breakglass.flows.service import triggerfail

    store = Store(_home())
    incidents = [incident] if incident else sorted(p.name for p in store.root.glob("*")
                                                   if not p.is_symlink() and (p / "incident.json").exists())
    if incident is None:
        incidents = [n for n in incidents if (store.incident_mode(n) == "drill") == drills
                     and (all_ or closing(store.home, n) is None)]
    docs: list[dict[str, Any]] = []
    for name in incidents:
        ack_path = store.incident_dir(name) / "ack.json"
        acked = json.loads(ack_path.read_text()) if ack_path.exists() else None
        closed = closing(store.home, name)
        for handle in store.runs(name):
            record = handle.load()
            stale = record.status in ("running", "paused") and not _runner_alive(handle)
            docs.append({"incident": name, "run": record.run_id, "mode": record.mode, "status": record.status,
                         "playbook": record.playbook.name, "error": record.error,
                         "initiator": record.initiator, "runner_stale": stale, "acknowledged": acked,
                         "closed": closed, "steps": {s.id: s.status for s in record.steps},
                         "step_details": _step_rows(record),
                         "deadlines": {s.id: s.deadline for s in record.steps if s.deadline and s.status in
                                       ("running", "waiting")},
                         "gates": _gates(handle, record), "waiting_transactions": _waiting_txs(handle, record),
                         "safe_transactions": safepending.pending(handle.dir, name)})
        for failed in triggerfail.failures(store.incident_dir(name)):  # an alert whose playbook could not start
            docs.append({"incident": name, "run": failed["playbook"], "mode": store.incident_mode(name),
                         "status": "not started", "playbook": failed["playbook"], "error": failed["reason"],
                         "initiator": f"alert:{failed['source']}", "runner_stale": False,
                         "acknowledged": acked, "closed": closed, "steps": {}, "step_details": [], "deadlines": {},
                         "gates": [], "waiting_transactions": [], "safe_transactions": [], "reason": failed["reason"],
                         "alert": failed.get("alert")})
    live = [d for d in docs if d["mode"] != "drill"]
    drilled = [d for d in docs if d["mode"] == "drill"]
    if as_json:
        _emit({"runs": live + drilled, "live": [d["incident"] for d in live], "drills": [d["incident"] for d in drilled]},
              True)
        return 0
    if incident is not None:
        for doc in docs:
            table = cli_output.table(f"{doc['incident']} · {doc['run']} · {doc['playbook']} · {doc['mode']} · "
                                     f"{doc['status']}" + _status_note(doc),
                                     ("step", "kind", "status", "attempts", "detail / error"))
            for step in doc["step_details"]:
                table.add_row(step["id"], step["kind"], step["status"], str(step["attempts"]), step["detail"])
            out.print(cli_output.keep_whole(table, "step"))
    else:
        for title, group in (("live incidents", live), ("drills", drilled)):
            table = cli_output.table(f"{title} ({len({d['incident'] for d in group})})",
                                     ("incident", "run", "playbook", "status", "steps"))
            for doc in group:
                status_text = doc["status"] + _status_note(doc)
                failed_steps = [s for s in doc["step_details"] if s["status"] == "failed"]
                counts: dict[str, int] = {}
                for state in doc["steps"].values():
                    counts[state] = counts.get(state, 0) + 1
                summary = ", ".join(f"{n} {k}" for k, n in counts.items())
                summary += "".join(f"; {s['id']} failed: {s['error']}" for s in failed_steps)
                summary += "".join(f"; {k} until {v}" for k, v in doc["deadlines"].items())
                summary = doc.get("reason") or summary
                table.add_row(doc["incident"], doc["run"], doc["playbook"], status_text, summary)
            if group or title == ("drills" if drills else "live incidents"):
                out.print(cli_output.keep_whole(table, "incident", "run"))
    for doc in docs:
        for entry in doc["waiting_transactions"]:  # a pause that does not land is the loudest thing here
            from rich.text import Text

            from breakglass.flows.effects.noncegap import waiting_line

            out.print(Text(f"!! {doc['incident']} {waiting_line(entry)}", style="bold red"))
        for gate in doc["gates"]:
            if gate.get("status") != "waiting" or doc["status"] not in ("running", "paused"):
                continue  # an interrupted run's gate keeps its deadline for a resume, but nobody waits there now
            out.print(f"{doc['incident']} gate {gate['step']}: {len(gate['approvals'])} of {gate['quorum']} "
                      f"({', '.join(gate['approvals']) or 'none yet'}); waiting for {', '.join(gate['waiting_for'])}; "
                      f"{gate['seconds_left']:.0f}s left", markup=False)
            for line in gate["authorises"]:
                out.print(f"    authorises: {line}", markup=False)
            for line in gate["changes"]:
                out.print(f"    CHANGED: {line}", markup=False)
            out.print(f"    vote: breakglass approve {doc['incident']} {gate['step']} --as NAME "
                      f"--sign-with {_signer_form(doc['mode'])}", markup=False)
    for doc in docs:
        for tx in doc["safe_transactions"]:
            out.print(f"{doc['incident']} Safe {tx['safe']} nonce {tx['nonce']}: {tx['call']} — {tx['status']}", markup=False)
            out.print(f"    safeTxHash {tx['safe_tx_hash']} (verify it on your own device before signing)", markup=False)
            out.print(f"    signatures {len(tx['signatures'])} of {tx['threshold']}: {', '.join(tx['signatures']) or 'none yet'}"
                      + (f"; submitted, not yet counted: {', '.join(tx['submitted'])}" if tx["submitted"] else ""),
                      markup=False)
            out.print(f"    may still sign: {', '.join(tx['may_still_sign']) or 'nobody'}", markup=False)
            for item in tx["excluded"]:
                out.print(f"    does not count: {item['owner']} ({item['why']})", markup=False)
            out.print(f"    sign: {tx['sign']}", markup=False)
    if incident is None and not docs:
        out.print("no incidents yet", markup=False)
    return 0


@app.command()
def serve(inventory: Annotated[Path, typer.Option("--inventory", "-i", help="the inventory serve works with", dir_okay=False)],
          playbooks: Annotated[Path, typer.Option("--playbooks", help="folder of playbooks it may run", file_okay=False)] = Path("playbooks"),
          host: Annotated[str, typer.Option("--host", help="listen address (keep it private; TLS via a proxy)")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", help="listen port")] = 8787,
          refresh: Annotated[float, typer.Option("--refresh", help="seconds between prepared-pause refreshes")] = 60.0,
          pool: Annotated[str | None, typer.Option("--pool", help="hand runs to this work pool's workers (after the "
                                                   "fast-path pause) instead of running them in-process")] = None,
          as_json: JsonOpt = False) -> int:
    """The always-on service: Slack approvals, in-process runs, signers unlocked, prepared pauses kept fresh.

    Example: breakglass serve --inventory inventories/mainnet.yaml --playbooks playbooks/ --port 8787"""
    from breakglass.flows.service import serve as serve_mod

    service = serve_mod.Service(_home(), inventory, playbooks, _api(), refresh=refresh, pool=pool)
    err.print(f"breakglass serve on http://{host}:{port} · {len(service.books)} playbook(s) · "
              f"Slack approvals {'on' if service.clicks else 'off'} · runs "
              f"{'on pool ' + pool if pool else 'in-process'}", markup=False)
    serve_mod.run(service, host, port)
    return 0
