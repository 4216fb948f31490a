"""The gate state machine of an ``approval`` step: open (or resume) the gate on the digest of the
intents it guards, count the votes that ``rules.judge`` accepts, escalate, and end it passed,
proceeded, rejected or timed out.

The step kind (``flows/steps/approval``) declares the gate; its host (``flows/engine/gatehost``,
reached as ``ctx.gate``) runs this machine and gives it votes, notices and the clock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from breakglass.flows.gates import attestor, intents
from breakglass.flows.gates import rules as approvals
from breakglass.flows.gates.state import GateState, GateStatus, load_state, state_path
from breakglass.flows.run import audit, failpoints
from breakglass.flows.run.home import write_private
from breakglass.flows.run.records import now
from breakglass.flows.steps.approval import (
    POLL,
    ApprovalOutputs,
    ApprovalStep,
    CountedVote,
    EscalateParams,
    GateCancelled,
    GateFailed,
)

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext


class GateHost(Protocol):
    """What the runner provides to a waiting gate."""

    initiator: str | None
    attempt: int
    flow_run_id: str | None

    def intents(self, step: str) -> list[dict[str, Any]]: ...

    def fetch_votes(self, step: str, seen: set[str]) -> list[tuple[str, str]]: ...

    def waiting(self, step: str, deadline: float) -> None: ...

    def settled(self, step: str) -> None: ...

    def sleep(self, seconds: float) -> None: ...

    def escalate(self, step: str, params: EscalateParams, data: dict[str, Any]) -> None: ...

    def announce(self, state: GateState) -> None: ...

    def tick(self, state: GateState) -> None: ...

    def passed(self, step: str) -> None: ...


def eligible(inventory: Inventory, bindings: Any, groups: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for group in groups:
        for name in inventory.roster.groups.get(group, []):
            address = inventory.roster.people[name].address
            out[name] = bindings.addresses.get(address, address) if address else None
    return out


class Gate:
    def __init__(self, ctx: StepContext, step: ApprovalStep, host: GateHost) -> None:
        self.ctx, self.step, self.host, self.p = ctx, step, host, step.with_
        self.run_dir = ctx.artifacts_dir.parent
        self.incident_dir = self.run_dir.parent.parent

    def _audit(self, event: str, **fields: Any) -> None:
        audit.append(self.incident_dir, event, run_key=self.ctx.run_key, step=self.step.id, **fields)

    def _open(self) -> GateState:
        ctx, p = self.ctx, self.p
        found = self.host.intents(self.step.id)
        digest = approvals.digest_of(ctx.incident, ctx.run_key, self.step.id, found)
        prior = load_state(self.run_dir, self.step.id)
        groups = [p.approvers] + ([p.escalate.approvers] if p.escalate and prior is not None and prior.escalated else [])
        state = GateState(
            step=self.step.id, status="waiting", digest=digest, intents=found,
            authorises=[intents.describe(i) for i in found], approvers=ctx.inventory.roster.groups.get(p.approvers, []),
            eligible=eligible(ctx.inventory, ctx.bindings, groups), quorum=p.quorum,
            exclude_initiator=p.exclude_initiator, initiator=self.host.initiator, channels=list(p.channels),
            approval_ttl=p.approval_ttl, opened_at=time.time(), deadline=time.time() + p.timeout,
            attempt=self.host.attempt, flow_run_id=self.host.flow_run_id,
        )
        if prior is not None:
            if prior.status == "waiting":  # a resumed wait keeps its deadline; a re-ask starts a new one
                state.opened_at, state.deadline, state.escalated = prior.opened_at, prior.deadline, prior.escalated
            state.seen = prior.seen
            state.votes = prior.votes
            if prior.digest != digest:
                state.changes = approvals.changes(prior.intents, found)
                for vote in state.votes:
                    if vote.get("counted"):
                        vote.update(counted=False, superseded="the action changed after this vote")
                self._audit("gate.changed", digest=digest, previous=prior.digest, changes=state.changes)
        if prior is not None and prior.status == "passed" and prior.digest == digest and self._approved(prior):
            self._audit("gate.rechecked", digest=digest, attempt=state.attempt,
                        reason="passed before the runner stopped; digest unchanged and approvals within TTL")
            ctx.log.info("gate %s passed before the runner stopped; digest unchanged, not asking again", self.step.id)
            return prior
        self._save(state)
        self._audit("gate.opened" if prior is None else "gate.reopened", digest=digest, quorum=p.quorum,
                    approvers=sorted(state.eligible), attempt=state.attempt)
        ctx.log.info("gate %s waits for %d of %s%s; it authorises:", self.step.id, p.quorum, p.approvers,
                     " (not the initiator)" if p.exclude_initiator else "")
        for line in state.authorises:
            ctx.log.info("  %s", line)
        for line in state.changes:
            ctx.log.warning("  changed since earlier votes: %s", line)
        ctx.log.info("  digest %s", digest)
        ctx.log.info("  vote: breakglass approve %s %s --as NAME --sign-with %s  (status: breakglass status %s)",
                     ctx.incident, self.step.id, "fixture:NAME" if ctx.mode == "drill" else "env:YOUR_KEY_VAR",
                     ctx.incident)
        self.host.announce(state)
        return state

    def _save(self, state: GateState) -> None:
        write_private(state_path(self.run_dir, self.step.id), state.model_dump_json(indent=2).encode() + b"\n")

    def _rules(self, state: GateState) -> approvals.Rules:
        inv = self.ctx.inventory
        return approvals.Rules(
            incident=self.ctx.incident, run_key=self.ctx.run_key, step=self.step.id, digest=state.digest,
            eligible=state.eligible, initiator=state.initiator, exclude_initiator=state.exclude_initiator,
            channels=tuple(state.channels), quorum=state.quorum, ttl=state.approval_ttl, drill=inv.is_drill,
            roster=frozenset(inv.roster.people), attestor=attestor.address(self.ctx.home),
            slack_ids={n: p.slack for n, p in inv.roster.people.items() if p.slack},
        )

    def _take(self, state: GateState) -> list[tuple[str, dict[str, Any]]]:
        """Judge new votes; returns the audit entries to write (``_flush``), so a passing vote acts first."""
        events: list[tuple[str, dict[str, Any]]] = []
        incoming = self.host.fetch_votes(self.step.id, set(state.seen))
        for key, raw in incoming:
            state.seen.append(key)
            try:
                vote = approvals.Vote.model_validate_json(raw)
            except (ValidationError, ValueError):
                entry = {"key": key, "counted": False, "reason": "unreadable vote", "received_at": now()}
                state.votes.append(entry)
                events.append(("vote.refused", {"key": key, "reason": "unreadable vote"}))
                continue
            decided = {v["name"] for v in state.votes if v.get("counted")}
            reason = approvals.judge(vote, self._rules(state), decided)
            entry = {"key": key, "id": vote.id, "name": vote.name, "decision": vote.decision, "channel": vote.channel,
                     "cast_at": vote.cast_at, "reason_given": vote.reason, "address": vote.signer_address(),
                     "digest": vote.digest, "os_user": vote.os_user, "received_at": now(),
                     "counted": reason is None, "reason": reason}
            state.votes.append(entry)
            fields = {k: entry[k] for k in ("id", "name", "decision", "channel", "address", "digest", "cast_at")}
            if reason is None:
                events.append(("vote.counted", fields))
                self.ctx.log.info("gate %s: %s %s via %s", self.step.id, vote.name,
                                  "approved" if vote.decision == "approve" else "REJECTED", vote.channel)
            else:
                events.append(("vote.refused", {"reason": reason, **fields}))
                self.ctx.log.warning("gate %s: vote as %s refused: %s", self.step.id, vote.name, reason)
        return events

    def _flush(self, state: GateState, events: list[tuple[str, dict[str, Any]]]) -> None:
        for event, fields in events:
            self._audit(event, **fields)
        if events:
            self._save(state)
            if state.status == "waiting":
                self.host.announce(state)

    def _live(self, state: GateState) -> list[dict[str, Any]]:
        cutoff = time.time() - state.approval_ttl
        return [v for v in state.votes if v.get("counted") and v["cast_at"] >= cutoff]

    def _outputs(self, state: GateState, decision: str) -> ApprovalOutputs:
        live = [v for v in self._live(state) if v["decision"] == "approve"]
        return ApprovalOutputs(decision=decision, digest=state.digest, approvers=[v["name"] for v in live],
                               votes=[CountedVote(**{k: v[k] for k in ("name", "decision", "channel", "cast_at", "address")})
                                      for v in live], escalated=state.escalated,
                               waited_seconds=round(time.time() - state.opened_at, 3))

    def _end(self, state: GateState, status: GateStatus, reason: str | None = None) -> None:
        state.status, state.decided_at, state.reason = status, time.time(), reason
        self._save(state)
        self._audit(f"gate.{status}", digest=state.digest, reason=reason,
                    approvers=[v["name"] for v in self._live(state) if v["decision"] == "approve"])
        self.host.announce(state)

    def _approved(self, state: GateState) -> bool:
        return len([v for v in self._live(state) if v["decision"] == "approve"]) >= state.quorum

    def wait(self) -> ApprovalOutputs:
        state = self._open()
        if state.status == "passed":
            self.host.passed(self.step.id)
            return self._outputs(state, "approved")
        try:
            self.host.waiting(self.step.id, state.deadline)
            while True:
                events = self._take(state)
                if self._approved(state) and not any(v["decision"] == "reject" for v in self._live(state)):
                    # the guarded prepared pause goes out first; the votes that passed the gate are still
                    # Prefect inputs, so a crash before they are written re-counts them on resume
                    self.host.passed(self.step.id)
                    self._flush(state, events)
                    self._end(state, "passed")
                    failpoints.hit("gate.after_pass")
                    return self._outputs(state, "approved")
                self._flush(state, events)
                live = self._live(state)
                rejections = [v for v in live if v["decision"] == "reject"]
                if rejections and self.p.on_reject == "abort":
                    who = rejections[0]
                    self._end(state, "rejected", f"rejected by {who['name']}: {who.get('reason_given') or 'no reason given'}")
                    raise GateFailed(f"gate {self.step.id} {state.reason}")
                if self._approved(state):
                    self.host.passed(self.step.id)
                    self._end(state, "passed")
                    failpoints.hit("gate.after_pass")
                    return self._outputs(state, "approved")
                if time.time() >= state.deadline:
                    outcome = self._timeout(state)
                    if outcome is not None:
                        return outcome
                self.host.tick(state)
                self.ctx.check_cancelled()
                self.host.sleep(POLL)
        except GateCancelled as exc:
            self._end(state, "cancelled", str(exc))
            raise GateFailed(f"gate {self.step.id}: {exc}") from None
        finally:
            self.host.settled(self.step.id)

    def _timeout(self, state: GateState) -> ApprovalOutputs | None:
        p = self.p
        have = len([v for v in self._live(state) if v["decision"] == "approve"])
        if p.on_timeout == "proceed":
            self._end(state, "proceeded", f"timeout with {have} of {state.quorum} approvals; proceeding (protective steps only)")
            self.ctx.log.warning("gate %s: %s", self.step.id, state.reason)
            return self._outputs(state, "proceeded")
        if p.on_timeout == "escalate" and not state.escalated and p.escalate is not None:
            widened = eligible(self.ctx.inventory, self.ctx.bindings, [p.approvers, p.escalate.approvers])
            self.ctx.log.warning("gate %s: no quorum after %gs; escalating to %s", self.step.id, p.timeout,
                                 ", ".join(p.escalate.notify))
            # sent before the state says so: a crash in between escalates again, and the journal keeps it to one message
            self.host.escalate(self.step.id, p.escalate, {
                "gate": self.step.id, "waiting_for": state.quorum - have, "approvers": sorted(widened),
                "authorises": state.authorises, "digest": state.digest, "minutes": round(p.escalate.timeout / 60, 1)})
            state.escalated, state.eligible = True, widened
            state.deadline = time.time() + p.escalate.timeout
            self._save(state)
            self._audit("gate.escalated", to=p.escalate.notify, approvers=sorted(state.eligible))
            self.host.waiting(self.step.id, state.deadline)
            return None
        self._end(state, "timed_out", f"no quorum: {have} of {state.quorum} approvals before the timeout")
        raise GateFailed(f"gate {self.step.id} timed out: {have} of {state.quorum} approvals")
