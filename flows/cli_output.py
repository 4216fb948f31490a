"""What the CLI prints about runs: tables that wrap instead of cutting (a revert reason or a variable name is
never shortened, at any width, in a terminal or a log file) and one detail line per step kind."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from breakglass.flows.runlog import step_detail


def table(title: str | None, columns: tuple[str, ...] | list[str]) -> Table:
    """A table whose cells fold onto more lines when the width runs out (rich assumes 80 columns off a TTY)."""
    found = Table(title=title, title_justify="left")
    for column in columns:
        found.add_column(column, overflow="fold")
    return found


def record_table(record: Any) -> Table:
    found = table(f"{record.incident} · {record.run_id} · {record.mode} · {record.status}",
                  ("step", "kind", "status", "attempts", "detail"))
    for step in record.steps:
        found.add_row(step.id, step.kind, step.status, str(step.attempts), step_detail(step))
    return found
