"""The run record: what happened, step by step, persisted under $BREAKGLASS_HOME.

``playbooks/run-record.schema.json`` is generated from these models; a test checks that it is
current and validates every record the suite produces against it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["running", "completed", "failed", "paused", "crashed", "cancelled"]
StepStatus = Literal["pending", "running", "waiting", "completed", "skipped", "failed"]
SkippedReason = Literal["ancestor_failed", "condition_false", "gate_aborted"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FileRef(_Record):
    name: str
    path: str = Field(description="where the run keeps its copy, relative to the run directory")
    source: str = Field(description="the file it was started from")
    sha256: str


class StepRecord(_Record):
    id: str
    kind: str
    status: StepStatus = "pending"
    started_at: str | None = None
    ended_at: str | None = None
    attempts: int = 0
    outputs: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = Field(None, description="why a step was skipped")
    skipped_reason: SkippedReason | None = Field(
        None, description="ancestor_failed: a step it needs failed or was skipped (resume runs it again); "
                          "condition_false: its own `if` was false; gate_aborted: a gate it needs aborted "
                          "(both stay skipped on resume)")
    deadline: str | None = Field(None, description="when the running step's time limit runs out")


class Attempt(_Record):
    flow_run_id: str | None = None
    pid: int
    host: str
    started_at: str
    ended_at: str | None = None
    status: RunStatus = "running"


class AuditHead(_Record):
    entries: int
    sha256: str


class RunRecord(_Record):
    schema_version: Literal["breakglass/run-record/v1"] = "breakglass/run-record/v1"
    run_id: str
    run_key: str
    incident: str
    mode: Literal["live", "drill"]
    status: RunStatus = "running"
    playbook: FileRef
    inventory: FileRef
    inputs: dict[str, Any]
    inputs_sha256: str
    initiator: str | None = Field(None, description="the roster name that started the run (--as), or the alert source")
    initiator_via: str | None = Field(None, description="how the run was started: cli, drill, alert:<source>")
    breakglass_version: str
    created_at: str
    updated_at: str
    ended_at: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    steps: list[StepRecord]
    error: str | None = None
    audit_head: AuditHead | None = Field(None, description="the incident audit log's head when this run last stopped: "
                                                           "`breakglass audit verify` checks the log still holds it")

    def step(self, step_id: str) -> StepRecord:
        return next(s for s in self.steps if s.id == step_id)
