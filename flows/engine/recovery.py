"""What a resume runs again: pure decisions on a run record (no Prefect, no I/O beyond gate state files).

A step skipped only because an ancestor failed or was skipped is pending again on resume, and runs
under first-run rules once its ancestors complete (``if``, gates, exactly-once). A step skipped by its
own ``if``, or behind a gate that aborted (rejected, or timed out with ``on_timeout: abort``), stays
skipped: those were decisions, not accidents. ``resume --from STEP`` re-runs one failed or completed
step and everything that needs it, directly or not.
"""

from __future__ import annotations

from pathlib import Path

from breakglass.flows.errors import BreakglassError
from breakglass.flows.gates.state import load_state, state_path
from breakglass.flows.run.home import write_private
from breakglass.flows.run.records import RunRecord, StepRecord
from breakglass.flows.spec.playbook import Playbook
from breakglass.flows.steps import is_gate

ANCESTOR_FAILED = "ancestor_failed"
CONDITION_FALSE = "condition_false"
GATE_ABORTED = "gate_aborted"
_ABORTED = ("rejected", "timed_out")


def gate_aborted(run_dir: Path, step: StepRecord) -> bool:
    """A failed gate whose state says it decided to stop (a rejection or an abort on timeout)."""
    if not is_gate(step.kind) or step.status != "failed":
        return False
    state = load_state(run_dir, step.id)
    return state is not None and state.status in _ABORTED


def skip_reason(run_dir: Path, record: RunRecord, blocker: str) -> str:
    """Why a step whose need ``blocker`` failed or was skipped is skipped itself."""
    rec = record.step(blocker)
    if gate_aborted(run_dir, rec) or (rec.status == "skipped" and rec.skipped_reason == GATE_ABORTED):
        return GATE_ABORTED
    return ANCESTOR_FAILED


def descendants(playbook: Playbook, step_id: str) -> list[str]:
    """``step_id`` and every step that needs it, directly or not, in playbook order."""
    found = {step_id}
    changed = True
    while changed:
        changed = False
        for step in playbook.steps:
            if step.id not in found and found & set(step.needs):
                found.add(step.id)
                changed = True
    return [s.id for s in playbook.steps if s.id in found]


def _legacy_ancestor(step: StepRecord) -> bool:
    """Records written before ``skipped_reason`` existed said it only in words."""
    return step.skipped_reason is None and (step.reason or "").startswith("needs '")


def _pending(step: StepRecord) -> None:
    step.status, step.reason, step.skipped_reason, step.error, step.ended_at = "pending", None, None, None, None


def reopen(record: RunRecord, playbook: Playbook, run_dir: Path, from_step: str | None = None,
           by: str | None = None) -> list[str]:
    """Make ``record`` ready to continue; returns the ids of the steps that will run again.

    Interrupted and failed steps are pending again (their journals reconcile side effects), except a
    gate that aborted. With ``from_step``, that step (failed or completed) and its descendants are
    pending too, and a gate among them asks again: its earlier votes no longer count.
    """
    again: list[str] = []
    rerun: list[str] = []
    if from_step is not None:
        ids = [s.id for s in record.steps]
        if from_step not in ids:
            raise BreakglassError(f"resume --from {from_step}: run {record.run_id} has no step {from_step!r} "
                                  f"(steps: {', '.join(ids)})")
        status = record.step(from_step).status
        if status not in ("failed", "completed"):
            raise BreakglassError(f"resume --from {from_step}: the step is {status}; --from re-runs a failed or "
                                  "completed step (a plain `resume` continues the others)")
        rerun = descendants(playbook, from_step)
    for step in record.steps:
        if step.id in rerun:
            if step.status != "pending":
                again.append(step.id)
            _pending(step)
            step.outputs = None
            if is_gate(step.kind):
                _supersede_votes(run_dir, step.id, by)
        elif _runs_again(run_dir, step):
            _pending(step)
            again.append(step.id)
    return again


def _runs_again(run_dir: Path, step: StepRecord) -> bool:
    if step.status in ("running", "waiting"):
        return True
    if step.status == "failed":
        return not gate_aborted(run_dir, step)
    return step.status == "skipped" and (step.skipped_reason == ANCESTOR_FAILED or _legacy_ancestor(step))


def _supersede_votes(run_dir: Path, gate: str, by: str | None) -> None:
    state = load_state(run_dir, gate)
    if state is None:
        return
    why = f"re-asked by `resume --from`{f' (asked by {by})' if by else ''}"
    for vote in state.votes:
        if vote.get("counted"):
            vote.update(counted=False, superseded=why)
    state.status = "cancelled"
    state.reason = why
    write_private(state_path(run_dir, gate), state.model_dump_json(indent=2).encode() + b"\n")
