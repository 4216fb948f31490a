"""The Prefect UI's view of a run (built here, published by the runner): a Markdown summary with the report
command, and a table of the deliveries. Never secrets: only what the run record holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from breakglass.flows.run.records import RunRecord
from breakglass.flows.steps import REGISTRY


def key(record: RunRecord) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", f"bg-{record.incident}-{record.run_id}".lower())[:90].strip("-")


def summary(record: RunRecord) -> str:
    lines = [f"# {record.playbook.name}: {record.status}", "",
             f"Incident **{record.incident}** ({record.mode}) · started by {record.initiator or 'nobody recorded'} · "
             f"created {record.created_at}" + (f" · ended {record.ended_at}" if record.ended_at else ""), "",
             "| step | kind | status | started | ended | note |", "|---|---|---|---|---|---|"]
    for step in record.steps:
        note = step.error or step.reason or _note(step.kind, step.outputs or {})
        lines.append(f"| {step.id} | {step.kind} | {step.status} | {step.started_at or ''} | {step.ended_at or ''} | "
                     f"{note.replace('|', '/')} |")
    if record.audit_head is not None:
        lines += ["", f"Audit log: {record.audit_head.entries} entries, head `{record.audit_head.sha256}`."]
    lines += ["", f"Full report: `breakglass report {record.incident} --format html --out report.html`"]
    return "\n".join(lines) + "\n"


def _note(kind: str, out: dict[str, Any]) -> str:
    return step_line(kind, out)


def step_line(kind: str, out: dict[str, Any]) -> str:
    """The kind's own one line about its outputs."""
    return REGISTRY[kind].summary(out) if kind in REGISTRY else ""


def deliveries(record: RunRecord) -> list[dict[str, Any]]:
    return [{"step": s.id, "recipient": row.get("recipient"), "channel": row.get("channel"), "status": row.get("status"),
             "at": row.get("at")} for s in record.steps if s.outputs and s.kind in REGISTRY
            for row in REGISTRY[s.kind].deliveries(s.outputs)]


def write_report(home: Path, record: RunRecord) -> Path:
    """The incident's HTML report as of this run's end, beside the run's other artifacts."""
    from breakglass.flows.evidence import report
    from breakglass.flows.run.home import write_private

    path = home / "incidents" / record.incident / "runs" / record.run_id / "artifacts" / "report.html"
    write_private(path, report.render(report.build(home, record.incident), "html").encode())
    return path
