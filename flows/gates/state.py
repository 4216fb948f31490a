"""A gate's state file, ``gates/<step>.json`` in the run directory: written only by the runner,
read by `approve`, `status` and drills."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GateStatus = Literal["waiting", "passed", "proceeded", "rejected", "timed_out", "cancelled"]


class GateState(BaseModel):
    """What ``gates/<step>.json`` holds; written only by the runner."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    step: str
    status: GateStatus
    digest: str
    intents: list[dict[str, Any]]
    authorises: list[str]
    changes: list[str] = Field(default_factory=list)
    approvers: list[str]
    eligible: dict[str, str | None]
    quorum: int
    exclude_initiator: bool
    initiator: str | None
    channels: list[str]
    approval_ttl: float
    opened_at: float
    deadline: float
    escalated: bool = False
    attempt: int
    flow_run_id: str | None = None
    votes: list[dict[str, Any]] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    decided_at: float | None = None
    reason: str | None = None


def state_path(run_dir: Path, step: str) -> Path:
    return run_dir / "gates" / f"{step}.json"


def load_state(run_dir: Path, step: str) -> GateState | None:
    path = state_path(run_dir, step)
    return GateState.model_validate_json(path.read_bytes()) if path.exists() else None
