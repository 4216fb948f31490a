"""``breakglass report INCIDENT``: the incident's record for exchanges, insurers and the post-mortem, built
only from its evidence (run records, snapshots, the hash-chained audit log), as JSON, Markdown or one
self-contained HTML file whose timeline is an inline SVG chart (Jinja2, autoescaped)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.evidence import report_parts as parts
from breakglass.flows.language import pausespec
from breakglass.flows.run import audit
from breakglass.flows.run.runstore import Store
from breakglass.flows.spec.validate import load_playbook
from breakglass.flows.steps import REGISTRY, is_gate

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory

TEMPLATES = Path(__file__).parent / "report_templates"


def _t(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def build(home: Path, incident: str) -> dict[str, Any]:
    store = Store(home)
    handles = store.runs(incident)  # unknown incident: a clear error
    base = store.incident_dir(incident)
    records = [h.load() for h in handles]
    heads = [(f"run record {r.run_id}", r.audit_head.model_dump()) for r in records if r.audit_head is not None]
    problems = audit.verify(base, heads)
    entries = audit.entries(base) if not any("not JSON" in p for p in problems) else []
    runs: list[dict[str, Any]] = []
    actions, deliveries, approvals, movements, gaps, failures = [], [], [], [], [], []
    for handle, record in zip(handles, records, strict=True):
        playbook, inventory = load_playbook(handle.dir / "playbook.yaml", handle.dir / "inventory.yaml")
        assert inventory is not None
        journal = parts.journal_entries(handle.dir)
        first_tx = parts.first_action_at(record, journal)
        started = [e["at"] for e in entries if e["event"] == "run.started" and e.get("run") == record.run_id]
        runs.append({"run": record.run_id, "playbook": record.playbook.name, "severity": playbook.severity,
                     "status": record.status, "initiator": record.initiator, "created_at": record.created_at,
                     "ended_at": record.ended_at, "error": record.error,
                     "startup": {"from": record.created_at, "to": started[0]} if started else None,
                     "steps": [{"id": s.id, "kind": s.kind, "status": s.status, "started_at": s.started_at,
                                "first_action_at": first_tx.get(s.id), "ended_at": s.ended_at, "error": s.error,
                                "reason": s.reason} for s in record.steps]})
        actions += parts.actions(record, inventory, journal) if journal else parts.outputs_actions(record, inventory, REGISTRY)
        failures += parts.failures(record)
        for step in record.steps:
            out = step.outputs or {}
            for row in REGISTRY[step.kind].deliveries(out) if step.kind in REGISTRY else []:
                deliveries.append({"step": step.id, "recipient": row.get("recipient"), "channel": row.get("channel") or "—",
                                   "status": row.get("status"), "at": row.get("at") or "—"})
            if is_gate(step.kind) and out:
                approvals.append({"gate": step.id, "decision": out.get("decision"), "approvers": out.get("approvers", []),
                                  "votes": [{"name": v.get("name"), "decision": v.get("decision"), "channel": v.get("channel"),
                                             "address": v.get("address")} for v in out.get("votes", [])],
                                  "digest": out.get("digest")})
        movements += _movements(handle.dir / "artifacts")
        gaps += parts.step_gaps(record)
        card = handle.dir / "artifacts" / "scorecard.json"
        if card.exists():
            gaps += [g for g in json.loads(card.read_text()).get("gaps", []) if g not in gaps]
    prefixes = tuple(r.run_key + "/" for r in records) + (f"{incident}/",)
    return {"incident": incident, "mode": records[0].mode if records else None,
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "severity": max((r["severity"] for r in runs), key=["low", "medium", "high", "critical"].index, default=None),
            "status": "completed" if all(r.status == "completed" for r in records) else
            next(r.status for r in records if r.status != "completed"),
            "failures": failures, "continue": parts.continue_command(incident, records),
            "runs": runs, "timeline": [_event(e, prefixes) for e in entries], "actions": actions,
            "deliveries": deliveries, "approvals": approvals, "funds": movements, "gaps": gaps,
            "audit": {"intact": not problems, "problems": problems, "head": audit.head(base)}}


def _event(entry: dict[str, Any], prefixes: tuple[str, ...] = ()) -> dict[str, Any]:
    detail = {k: v for k, v in entry.items() if k not in ("at", "event", "prev", "host", "pid", "os_user")}
    row = parts.audit_row(entry, prefixes)
    return {"at": entry["at"], "event": entry["event"], "actor": row["actor"], "subject": row["subject"], "detail": detail}


def _movements(artifacts: Path) -> list[dict[str, Any]]:
    """Balances that changed between the run's first and last snapshot."""
    shots = sorted(artifacts.glob("*.snapshot.json"), key=lambda p: json.loads(p.read_text()).get("block_number", 0))
    if len(shots) < 2:
        return []
    first, last = (json.loads(p.read_text()) for p in (shots[0], shots[-1]))
    before = {(b["account"], b["token"]): int(b["raw"]) for b in first.get("balances", []) if b.get("raw") is not None}
    out = []
    for b in last.get("balances", []):
        key = (b["account"], b["token"])
        if key in before and b.get("raw") is not None and int(b["raw"]) != before[key]:
            out.append({"account": b["account"], "token": b["token"], "before": str(before[key]), "after": b["raw"],
                        "delta": str(int(b["raw"]) - before[key]), "blocks": [first["block_number"], last["block_number"]]})
    return out


def chart(report: dict[str, Any], width: int = 960) -> dict[str, Any]:
    """Geometry of the timeline chart. The axis starts at the incident's first event; each step is a bar from
    its first action (a fast-path pause goes out before its step starts) to its end; the tool's own start-up
    (Prefect) is a band of its own; marks show alerts, votes and transactions."""
    steps = [s for r in report["runs"] for s in r["steps"]]
    times = [_t(e["at"]) for e in report["timeline"]] + [_t(s["started_at"]) for s in steps]
    times += [_t(s["ended_at"]) for s in steps] + [_t(s.get("first_action_at")) for s in steps]
    known = [t for t in times if t is not None]
    if not known:
        return {"width": width, "height": 40, "bars": [], "marks": [], "bands": [], "span": 0}
    t0, t1 = min(known), max(known)
    span = max(t1 - t0, 0.001)
    left, right = 190, 20

    def x(t: float) -> float:
        return round(left + (t - t0) / span * (width - left - right), 1)

    bands = []
    for r in report["runs"]:
        startup = r.get("startup")
        begin, end = (_t(startup["from"]), _t(startup["to"])) if startup else (None, None)
        if begin and end:
            bands.append({"x": x(begin), "w": max(1.0, x(end) - x(begin)), "seconds": round(end - begin, 3),
                          "label": f"tool start-up {end - begin:.1f} s"})
    bars: list[dict[str, Any]] = []
    for s in steps:
        starts = [t for t in (_t(s["started_at"]), _t(s.get("first_action_at"))) if t is not None]
        if not starts:
            continue
        start, end = min(starts), _t(s["ended_at"])
        bars.append({"step": s["id"], "kind": s["kind"], "gate": is_gate(s["kind"]), "status": s["status"], "x": x(start),
                     "w": max(2.0, x(end or t1) - x(start)), "y": 30 + 22 * len(bars),
                     "seconds": round((end or t1) - start, 3)})
    marks = []
    for e in report["timeline"]:
        kind = {"alert.received": "alert", "drill.injected": "alert", "journal.broadcast": "tx", "journal.receipt": "tx",
                "vote.counted": "vote", "gate.passed": "vote", "gate.rejected": "vote"}.get(e["event"])
        at = _t(e["at"])
        if kind and at is not None:
            marks.append({"x": x(at), "kind": kind, "label": e["event"]})
    return {"width": width, "height": 50 + 22 * len(bars), "bars": bars, "marks": marks, "bands": bands,
            "span": round(span, 3), "left": left, "right": width - right}


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    if fmt == "md":
        env.autoescape = False
        return env.get_template("report.md.j2").render(r=report)
    return env.get_template("report.html.j2").render(r=report, c=chart(report))


def _pause_call(inventory: Inventory, result: dict[str, Any]) -> str:
    """The pause as the inventory wrote it (pause("breakglass"), setPaused(true) + ...), not a generic pause()."""
    contract = inventory.contracts.get(str(result.get("contract", "")))
    return pausespec.describe(contract) if contract is not None else "pause()"
