"""What a resume runs again, decided without Prefect (flows/recovery): which skips were accidents
and which were decisions, and what `--from` reopens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breakglass.flows.engine import recovery
from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.records import FileRef, RunRecord, StepRecord
from breakglass.flows.spec.validate import load_playbook
from tests.conftest import REPO

BOOK = """apiVersion: breakglass/v1
kind: Playbook
name: rules
description: t
severity: high
steps:
  - {id: read, kind: snapshot, with: {chain: ethereum, paused: [vault]}}
  - {id: gate, kind: approval, needs: [read], with: {approvers: responders, quorum: 1, timeout: 1m, on_timeout: abort, channels: [cli-unsigned]}}
  - {id: act, kind: pause, needs: [gate], with: {contracts: [vault], signer: guardian}}
  - {id: tell, kind: wait, needs: [act], with: {seconds: 1}}
  - {id: maybe, kind: wait, needs: [read], if: "false", with: {seconds: 1}}
  - {id: later, kind: wait, needs: [maybe], with: {seconds: 1}}
"""


@pytest.fixture
def playbook(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(BOOK)
    return load_playbook(path, REPO / "playbooks" / "inventories" / "drill.yaml")[0]


def _record(states: dict[str, tuple[str, str, str | None]]) -> RunRecord:
    ref = FileRef(name="x", path="x", source="x", sha256="0")
    steps = [StepRecord(id=sid, kind=kind, status=status, skipped_reason=why)  # type: ignore[arg-type]
             for sid, (kind, status, why) in states.items()]
    return RunRecord(run_id="r", run_key="I/r/0", incident="I", mode="drill", playbook=ref, inventory=ref, inputs={},
                     inputs_sha256="0", breakglass_version="0", created_at="t", updated_at="t", steps=steps)


def _gate_state(run_dir: Path, status: str) -> None:
    (run_dir / "gates").mkdir(parents=True)
    (run_dir / "gates" / "gate.json").write_text(json.dumps({
        "step": "gate", "status": status, "digest": "d", "intents": [], "authorises": [], "approvers": [], "eligible": {},
        "quorum": 1, "exclude_initiator": False, "initiator": None, "channels": ["cli-unsigned"], "approval_ttl": 900,
        "opened_at": 0, "deadline": 60, "attempt": 1,
        "votes": [{"name": "bob", "decision": "reject", "counted": True, "cast_at": 1}]}))


def test_accidents_reopen_and_decisions_stay(playbook, tmp_path: Path) -> None:
    record = _record({"read": ("snapshot", "failed", None), "gate": ("approval", "skipped", "ancestor_failed"),
                      "act": ("pause", "skipped", "ancestor_failed"), "tell": ("wait", "skipped", "ancestor_failed"),
                      "maybe": ("wait", "skipped", "condition_false"), "later": ("wait", "skipped", "ancestor_failed")})
    again = recovery.reopen(record, playbook, tmp_path)
    assert again == ["read", "gate", "act", "tell", "later"]
    assert record.step("maybe").status == "skipped" and record.step("maybe").skipped_reason == "condition_false"
    assert all(record.step(s).status == "pending" and record.step(s).skipped_reason is None for s in again)


def test_an_aborted_gate_and_what_it_guards_stay_until_from(playbook, tmp_path: Path) -> None:
    _gate_state(tmp_path, "rejected")
    states = {"read": ("snapshot", "completed", None), "gate": ("approval", "failed", None),
              "act": ("pause", "skipped", "gate_aborted"), "tell": ("wait", "skipped", "gate_aborted"),
              "maybe": ("wait", "skipped", "condition_false"), "later": ("wait", "skipped", "ancestor_failed")}
    record = _record(states)
    assert recovery.skip_reason(tmp_path, record, "gate") == "gate_aborted"
    assert recovery.skip_reason(tmp_path, record, "act") == "gate_aborted"
    assert recovery.skip_reason(tmp_path, record, "maybe") == "ancestor_failed"
    assert recovery.reopen(record, playbook, tmp_path) == ["later"]
    assert record.step("gate").status == "failed" and record.step("act").status == "skipped"

    record = _record(states)
    assert recovery.reopen(record, playbook, tmp_path, from_step="gate", by="carol") == ["gate", "act", "tell", "later"]
    gate = json.loads((tmp_path / "gates" / "gate.json").read_text())
    assert gate["status"] == "cancelled" and gate["votes"][0]["counted"] is False  # the gate asks again
    assert "carol" in gate["votes"][0]["superseded"]
    assert record.step("read").status == "completed"


def test_from_refuses_unknown_and_pending_steps(playbook, tmp_path: Path) -> None:
    record = _record({"read": ("snapshot", "completed", None), "gate": ("approval", "pending", None),
                      "act": ("pause", "pending", None), "tell": ("wait", "pending", None),
                      "maybe": ("wait", "pending", None), "later": ("wait", "pending", None)})
    with pytest.raises(BreakglassError, match="has no step 'nope'"):
        recovery.reopen(record, playbook, tmp_path, from_step="nope")
    with pytest.raises(BreakglassError, match="the step is pending; --from re-runs a failed or completed step"):
        recovery.reopen(record, playbook, tmp_path, from_step="gate")
    assert recovery.descendants(playbook, "read") == ["read", "gate", "act", "tell", "maybe", "later"]


def test_legacy_records_without_skipped_reason_reopen_by_their_words(playbook, tmp_path: Path) -> None:
    record = _record({"read": ("snapshot", "failed", None), "gate": ("approval", "skipped", None),
                      "act": ("pause", "pending", None), "tell": ("wait", "pending", None),
                      "maybe": ("wait", "skipped", None), "later": ("wait", "pending", None)})
    record.step("gate").reason = "needs 'read', which failed"
    record.step("maybe").reason = "if 'false' is false"
    assert recovery.reopen(record, playbook, tmp_path) == ["read", "gate"]
