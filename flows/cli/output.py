"""What the CLI prints about runs: tables that wrap instead of cutting (a revert reason or a variable name is
never shortened, at any width, in a terminal or a log file) and one detail line per step kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from breakglass.flows.engine.runlog import step_detail

if TYPE_CHECKING:
    from breakglass.flows.run.records import RunRecord


def table(title: str | None, columns: tuple[str, ...] | list[str]) -> Table:
    """A table whose cells fold onto more lines when the width runs out (rich assumes 80 columns off a TTY)."""
    found = Table(title=title, title_justify="left")
    for column in columns:
        found.add_column(column, overflow="fold")
    return found


def keep_whole(found: Table, *names: str) -> Table:
    """Identifiers (incident, run, step ids) stay on one line: the other columns fold instead."""
    for column in found.columns:
        if column.header in names:
            cells = [str(c) for c in column.cells]
            column.min_width = max([len(str(column.header)), *(len(c) for c in cells)])
    return found


def record_table(record: RunRecord) -> Table:
    found = table(f"{record.incident} · {record.run_id} · {record.mode} · {record.status}",
                  ("step", "kind", "status", "attempts", "detail"))
    for step in record.steps:
        found.add_row(step.id, step.kind, step.status, str(step.attempts), step_detail(step))
    return keep_whole(found, "step")
