"""The gate state machine (``gates/machine``) as a unit: real EIP-712 votes signed with throwaway keys,
fed through a host that stands where the runner's gate host does (``engine/gatehost``: Prefect inputs,
Slack notices, the clock). No Prefect, no chain.

The host is a fake in the sense of the project's rule: it is the other end of the machine's
boundary (the ``GateHost`` Protocol), and the tests assert what arrived there and what the
machine wrote (its state file, its outputs, its refusals).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from breakglass.flows.gates import rules as approvals
from breakglass.flows.gates.machine import Gate
from breakglass.flows.gates.state import GateState, load_state
from breakglass.flows.run.context import Bindings, StepContext
from breakglass.flows.spec.loader import load, require
from breakglass.flows.steps.approval import ApprovalStep, EscalateParams, GateFailed

PEOPLE = ("alice", "bob", "carol", "dave")
INTENTS = [{"step": "pause-vault", "kind": "pause", "function": "pause()", "item": "vault", "target": "0x" + "11" * 20,
            "chain": "ethereum", "chain_id": 1, "selector": "0x8456cb59", "signer": "guardian", "value": 0,
            "fee_cap_gwei": 50.0}]


class Host:
    """The runner's side of a waiting gate: votes arrive in ``inbox``; what the machine says is kept."""

    def __init__(self, intents: list[dict[str, Any]], initiator: str | None = "alice") -> None:
        self.found = intents
        self.initiator, self.attempt, self.flow_run_id = initiator, 1, "flow-run-1"
        self.inbox: list[tuple[str, str]] = []
        self.fetched = 0
        self.passes: list[str] = []
        self.escalations: list[tuple[str, dict[str, Any]]] = []
        self.announced: list[str] = []
        self.settled_steps: list[str] = []

    def intents(self, step: str) -> list[dict[str, Any]]:
        return self.found

    def fetch_votes(self, step: str, seen: set[str]) -> list[tuple[str, str]]:
        self.fetched += 1
        return [(key, raw) for key, raw in self.inbox if key not in seen]

    def waiting(self, step: str, deadline: float) -> None:
        pass

    def settled(self, step: str) -> None:
        self.settled_steps.append(step)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def escalate(self, step: str, params: EscalateParams, data: dict[str, Any]) -> None:
        self.escalations.append((step, data))

    def announce(self, state: GateState) -> None:
        self.announced.append(state.status)

    def tick(self, state: GateState) -> None:
        pass

    def passed(self, step: str) -> None:
        self.passes.append(step)


@pytest.fixture
def keys() -> dict[str, Any]:
    return {name: Account.create() for name in PEOPLE}  # throwaway keys, never printed


@pytest.fixture
def world(tmp_path: Path, keys: dict[str, Any]) -> Any:
    people = "".join(f'    {n}: {{address: "{keys[n].address}"}}\n' for n in PEOPLE)
    path = tmp_path / "inventory.yaml"
    path.write_text("apiVersion: breakglass/v1\nkind: Inventory\nname: unit\nroster:\n  people:\n" + people
                    + "  groups:\n    responders: [alice, bob, carol]\n    leads: [dave]\n")
    inventory = require(load(path))
    run_dir = tmp_path / "home" / "INC-gate" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    return StepContext(incident="INC-gate", run_id="r1", run_key="INC-gate/r1/x", mode="live", step_id="approve",
                       inventory=inventory, bindings=Bindings(), artifacts_dir=run_dir / "artifacts",
                       home=tmp_path / "home", log=logging.getLogger("test.gate"))


def _step(**overrides: Any) -> ApprovalStep:
    params = {"approvers": "responders", "quorum": 2, "exclude_initiator": True, "timeout": "30s",
              "on_timeout": "abort", "channels": ["signed"], **overrides}
    return ApprovalStep.model_validate({"id": "approve", "kind": "approval", "with": params})


def _digest(ctx: StepContext, intents: list[dict[str, Any]] = INTENTS) -> str:
    return approvals.digest_of(ctx.incident, ctx.run_key, "approve", intents)


def _vote(ctx: StepContext, keys: dict[str, Any], name: str, *, decision: str = "approve", signer: str | None = None,
          digest: str | None = None, reason: str = "") -> tuple[str, str]:
    vote = approvals.Vote(incident=ctx.incident, run_key=ctx.run_key, step="approve", digest=digest or _digest(ctx),
                          decision=decision, reason=reason, name=name, channel="signed",  # type: ignore[arg-type]
                          cast_at=int(time.time()))
    signed = approvals.sign(vote, keys[signer or name])
    return approvals.input_key(signed), signed.model_dump_json()


def test_two_signed_approvals_pass_and_the_initiator_does_not_count(world: StepContext, keys: dict[str, Any]) -> None:
    host = Host(INTENTS, initiator="alice")
    host.inbox += [_vote(world, keys, "alice"), _vote(world, keys, "bob"), _vote(world, keys, "carol")]
    outputs = Gate(world, _step(), host).wait()

    assert (outputs.decision, outputs.approvers, outputs.digest) == ("approved", ["bob", "carol"], _digest(world))
    assert host.passes == ["approve"] and host.settled_steps == ["approve"]
    state = load_state(world.artifacts_dir.parent, "approve")
    assert state is not None and state.status == "passed"
    refused = {v["name"]: v["reason"] for v in state.votes if not v["counted"]}
    assert refused == {"alice": "'alice' started this run; the gate excludes the initiator (separation of duties)"}
    assert state.authorises and state.intents == INTENTS


def test_votes_for_another_action_or_from_the_wrong_key_are_refused_with_a_reason(world: StepContext,
                                                                                  keys: dict[str, Any]) -> None:
    host = Host(INTENTS)
    other = _digest(world, [{**INTENTS[0], "item": "bridge", "target": "0x" + "22" * 20}])
    host.inbox += [_vote(world, keys, "bob", digest=other), _vote(world, keys, "carol", signer="dave"),
                   _vote(world, keys, "dave"), ("garbage", "{not json")]
    with pytest.raises(GateFailed, match="timed out: 0 of 2 approvals"):
        Gate(world, _step(timeout=0.3), host).wait()
    state = load_state(world.artifacts_dir.parent, "approve")
    assert state is not None and state.status == "timed_out"
    reasons = {v.get("name", v["key"]): v["reason"] for v in state.votes}
    assert reasons["bob"].startswith("signed over another digest")
    assert reasons["carol"] == f"signed by {keys['dave'].address}, which is not carol's roster address {keys['carol'].address}"
    assert reasons["dave"].startswith("'dave' is on the roster but not among this gate's approvers")
    assert reasons["garbage"] == "unreadable vote"
    assert host.passes == []


def test_one_rejection_aborts_the_gate_with_who_and_why(world: StepContext, keys: dict[str, Any]) -> None:
    host = Host(INTENTS)
    host.inbox += [_vote(world, keys, "bob"), _vote(world, keys, "carol", decision="reject", reason="wrong vault")]
    with pytest.raises(GateFailed, match="gate approve rejected by carol: wrong vault"):
        Gate(world, _step(quorum=3, exclude_initiator=False), host).wait()
    assert host.passes == [] and load_state(world.artifacts_dir.parent, "approve").status == "rejected"  # type: ignore[union-attr]


def test_on_timeout_proceed_goes_on_with_what_it_has(world: StepContext, keys: dict[str, Any]) -> None:
    host = Host(INTENTS)
    host.inbox.append(_vote(world, keys, "bob"))
    started = time.monotonic()
    outputs = Gate(world, _step(timeout=0.3, on_timeout="proceed"), host).wait()
    assert time.monotonic() - started >= 0.3
    assert (outputs.decision, outputs.approvers) == ("proceeded", ["bob"])
    state = load_state(world.artifacts_dir.parent, "approve")
    assert state is not None and state.reason == "timeout with 1 of 2 approvals; proceeding (protective steps only)"


def test_escalation_tells_the_backup_once_and_lets_it_approve(world: StepContext, keys: dict[str, Any]) -> None:
    host = Host(INTENTS)
    host.inbox.append(_vote(world, keys, "bob"))
    step = _step(timeout=0.2, on_timeout="escalate",
                 escalate={"approvers": "leads", "notify": ["war-room"], "template": "gate-escalation", "timeout": "30s"})
    gate = Gate(world, step, host)
    original = host.escalate

    def escalate(step_id: str, params: EscalateParams, data: dict[str, Any]) -> None:
        original(step_id, params, data)
        host.inbox.append(_vote(world, keys, "dave"))  # the lead answers the escalation

    host.escalate = escalate  # type: ignore[method-assign]
    outputs = gate.wait()
    assert (outputs.decision, outputs.approvers, outputs.escalated) == ("approved", ["bob", "dave"], True)
    assert len(host.escalations) == 1
    _, data = host.escalations[0]
    assert data["waiting_for"] == 1 and data["approvers"] == ["alice", "bob", "carol", "dave"]
    assert data["digest"] == _digest(world)


def test_a_gate_passed_before_a_crash_is_not_asked_again_unless_the_action_changed(world: StepContext,
                                                                                   keys: dict[str, Any]) -> None:
    host = Host(INTENTS)
    host.inbox += [_vote(world, keys, "bob"), _vote(world, keys, "carol")]
    Gate(world, _step(), host).wait()

    resumed = Host(INTENTS)  # a new runner: no votes in its inbox, the state file on disk
    outputs = Gate(world, _step(), resumed).wait()
    assert (outputs.decision, outputs.approvers) == ("approved", ["bob", "carol"])
    assert resumed.fetched == 0 and resumed.passes == ["approve"]

    changed = Host([{**INTENTS[0], "item": "bridge", "target": "0x" + "22" * 20}])  # the action the votes approved is not this one
    with pytest.raises(GateFailed, match="timed out"):
        Gate(world, _step(timeout=0.2), changed).wait()
    state = load_state(world.artifacts_dir.parent, "approve")
    assert state is not None and state.changes
    assert all(not v["counted"] and v["superseded"] == "the action changed after this vote" for v in state.votes)
    audit = (world.home / "INC-gate" / "audit.jsonl")
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()] if audit.exists() else []
    assert "gate.rechecked" in events and "gate.changed" in events
