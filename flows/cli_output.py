"""What the CLI prints about runs: tables that wrap instead of cutting (a revert reason or a variable name is
never shortened, at any width, in a terminal or a log file) and one detail line per step kind."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from breakglass.flows import artifacts


def table(title: str | None, columns: tuple[str, ...] | list[str]) -> Table:
    """A table whose cells fold onto more lines when the width runs out (rich assumes 80 columns off a TTY)."""
    found = Table(title=title, title_justify="left")
    for column in columns:
        found.add_column(column, overflow="fold")
    return found


def step_detail(step: Any) -> str:
    detail = step.error or step.reason or ""
    outputs = step.outputs or {}
    extra = f"; {step.error}" if step.error else ""
    if step.kind in ("diff", "revoke", "rotate") and outputs:
        return artifacts.step_line(step.kind, outputs) + extra
    if step.kind == "notify" and outputs.get("deliveries") is not None:
        rows = outputs["deliveries"]
        channels = sorted({str(r.get("channel")) for r in rows if r.get("channel")})
        failed = outputs.get("failed_recipients") or []
        return (f"delivered {outputs.get('delivered', 0)}/{len(rows)}" + (f" via {', '.join(channels)}" if channels else "")
                + (f"; not delivered to {', '.join(failed)}" if failed else "") + extra)
    if step.kind == "watchlist" and outputs.get("version") is not None:
        return (f"version {outputs['version']}, {outputs.get('entries', 0)} entries ({outputs.get('active', 0)} active, "
                f"{outputs.get('retracted', 0)} retracted)" + extra)
    if outputs.get("block_hash"):
        return f"block {outputs['block_number']} {outputs['block_hash'][:12]}… → {outputs.get('artifact', '')}"
    if outputs.get("results"):
        return ", ".join(f"{r['contract']} {r['status']}" + (f" ({r['tx_hash'][:12]}…)" if r.get("tx_hash") else "")
                         for r in outputs["results"]) + extra
    if outputs.get("decision"):
        channels = sorted({v["channel"] for v in outputs.get("votes", [])})
        return f"{outputs['decision']} by {', '.join(outputs.get('approvers', [])) or 'nobody'}" + (
            f" ({', '.join(channels)})" if channels else "") + f", digest {outputs['digest'][:12]}…"
    if outputs.get("tx_hash"):
        return f"{outputs.get('function', '')} tx {outputs['tx_hash']} in block {outputs.get('block_number')}" + extra
    return detail


def record_table(record: Any) -> Table:
    found = table(f"{record.incident} · {record.run_id} · {record.mode} · {record.status}",
                  ("step", "kind", "status", "attempts", "detail"))
    for step in record.steps:
        found.add_row(step.id, step.kind, step.status, str(step.attempts), step_detail(step))
    return found
