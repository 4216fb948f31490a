"""Step kind ``approval``: a gate that waits for M distinct, verified people to approve the exact actions it guards.

The gate guards every step that depends on it. It computes the digest of their intents
(``flows.intents``), shows what it authorises, and counts votes that ``approvals.judge`` accepts.
Its state (digest, intents, deadline, every vote and verdict) is kept in
``gates/<step>.json`` in the run directory, so a resumed run keeps votes given for an unchanged
digest within their TTL, and the deadline does not restart. Every verdict goes to the incident's
audit log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import Field, ValidationError

from breakglass.flows.errors import BreakglassError
from breakglass.flows.evidence import audit
from breakglass.flows.gates import attestor
from breakglass.flows.gates import rules as approvals
from breakglass.flows.gates.state import GateState, GateStatus, load_state, state_path
from breakglass.flows.language.types import Duration, Model, Name
from breakglass.flows.run import failpoints
from breakglass.flows.run.home import write_private
from breakglass.flows.run.records import now
from breakglass.flows.steps.base import KindBase, Ref, StepBase

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext

POLL = 0.025  # seconds between reads of new votes from Prefect (a vote in this process wakes the gate at once)
ESCALATION_DATA = ("gate", "waiting_for", "approvers", "authorises", "digest", "minutes")
_SIGNED_AND_SLACK: list[approvals.Channel] = ["signed", "slack"]  # the default channels (copied per step)


class EscalateParams(Model):
    approvers: Name = Field(description="a backup roster group whose members may also approve after escalation")
    notify: list[Name] = Field(min_length=1, description="contacts or groups told that the gate is stuck")
    template: Name = Field(description="the message template for the escalation")
    timeout: Duration = Field(description="how long to wait after escalating before aborting")


class ApprovalParams(Model):
    approvers: Name = Field(description="a roster group: who may approve")
    quorum: int = Field(ge=1, le=20, description="distinct approvers needed")
    exclude_initiator: bool = Field(False, description="the person who started the run cannot count towards the quorum")
    timeout: Duration = Field(description="how long to wait for the quorum (no silent default)")
    on_timeout: Literal["abort", "escalate", "proceed"] = Field(description="what happens when the timeout passes")
    escalate: EscalateParams | None = None
    channels: list[approvals.Channel] = Field(default_factory=lambda: _SIGNED_AND_SLACK.copy(), min_length=1,
                                              description="which kinds of vote count")
    approval_ttl: Duration = Field(900, description="how long a vote stays valid")
    on_reject: Literal["abort", "continue"] = Field("abort", description="abort: one rejection stops the gate")


class ApprovalStep(StepBase):
    kind: Literal["approval"]
    with_: ApprovalParams = Field(alias="with")


class CountedVote(Model):
    name: str
    decision: str
    channel: str
    cast_at: int
    address: str | None = None


class ApprovalOutputs(Model):
    decision: Literal["approved", "proceeded"]
    digest: str
    approvers: list[str]
    votes: list[CountedVote]
    escalated: bool
    waited_seconds: float


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


class GateFailed(BreakglassError):
    pass


def eligible(inventory: Inventory, bindings: Any, groups: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for group in groups:
        for name in inventory.roster.groups.get(group, []):
            address = inventory.roster.people[name].address
            out[name] = bindings.addresses.get(address, address) if address else None
    return out


class Approval(KindBase):
    kind: ClassVar[str] = "approval"

    def timeout_for(self, step: ApprovalStep) -> float:
        """A gate keeps its own deadline (``with.timeout``, then the escalation's); the step's limit is that."""
        p = step.with_
        return p.timeout + (p.escalate.timeout if p.escalate is not None else 0.0)
    spec: ClassVar[type[StepBase]] = ApprovalStep
    outputs: ClassVar[type[Model]] = ApprovalOutputs
    gate: ClassVar[bool] = True
    protective: ClassVar[bool] = True

    def summary(self, outputs: dict[str, Any]) -> str:
        if not outputs.get("decision"):
            return ""
        channels = sorted({str(v.get("channel")) for v in outputs.get("votes", [])})
        return f"{outputs['decision']} by {', '.join(outputs.get('approvers', [])) or 'nobody'}" + (
            f" ({', '.join(channels)})" if channels else "") + (f", digest {outputs['digest'][:12]}…" if outputs.get("digest") else "")

    def references(self, step: ApprovalStep) -> list[Ref]:
        p = step.with_
        refs = [Ref("approver", p.approvers, ("with", "approvers"))]
        if p.escalate:
            refs.append(Ref("approver", p.escalate.approvers, ("with", "escalate", "approvers")))
            refs += [Ref("contact", n, ("with", "escalate", "notify", i)) for i, n in enumerate(p.escalate.notify)]
        return refs

    def check(self, step: ApprovalStep, inventory: Inventory | None, playbook_dir: Path) -> list[tuple[tuple[Any, ...], str, str]]:
        from breakglass.flows.language import messages

        p = step.with_
        out: list[tuple[tuple[Any, ...], str, str]] = []
        if step.timeout is not None:
            out.append((("timeout",), "a gate's time limit is 'with.timeout' (with 'on_timeout'); remove the step-level timeout", ""))
        if step.retries:
            out.append((("retries",), "a gate is not retried; remove 'retries'", ""))
        if (p.on_timeout == "escalate") != (p.escalate is not None):
            out.append((("with", "escalate"), "'escalate' is required with on_timeout: escalate, and only then",
                        "Give escalate: {approvers, notify, template, timeout}, or choose abort or proceed."))
        unsigned = [c for c in p.channels if c in approvals.UNSIGNED_CHANNELS]
        if unsigned and p.quorum != 1:
            out.append((("with", "channels"), f"{', '.join(unsigned)} votes are unverified, so they are allowed only with quorum 1",
                        "Use signed votes for a quorum of several people."))
        if unsigned and inventory is not None and not inventory.is_drill:
            out.append((("with", "channels"), f"{', '.join(unsigned)} votes are unverified, so they count only in drill inventories",
                        "Remove them, or run with a 'mode: drill' inventory."))
        if p.escalate is not None:
            out += [(("with", "escalate", "template"), problem, "") for problem in
                    messages.check(playbook_dir / "templates", p.escalate.template, set(ESCALATION_DATA))]
        if inventory is not None:
            group = inventory.roster.groups.get(p.approvers)
            if group is not None:
                pool = set(group) | set(inventory.roster.groups.get(p.escalate.approvers, [])) if p.escalate else set(group)
                if len(pool) < p.quorum:
                    out.append((("with", "quorum"), f"quorum {p.quorum} but roster group '{p.approvers}' has only "
                                f"{len(group)} people", "Lower the quorum or add people to the group."))
                if any(c in approvals.SIGNED_CHANNELS for c in p.channels) and not set(p.channels) - {"signed"}:
                    missing = sorted(n for n in group if not inventory.roster.people[n].address)
                    if missing:
                        out.append((("with", "approvers"), f"signed votes only, but {', '.join(missing)} in '{p.approvers}' "
                                    "have no address on the roster", "Add roster.people.<name>.address."))
        return out

    def targets(self, step: ApprovalStep, inventory: Inventory) -> list[str]:
        p = step.with_
        return [f"{p.quorum} of roster group {p.approvers}" + (", not the initiator" if p.exclude_initiator else "")
                + f"; {', '.join(p.channels)}; timeout {p.timeout:g}s then {p.on_timeout}"]

    def run(self, ctx: StepContext, step: ApprovalStep) -> ApprovalOutputs:
        host: GateHost = ctx.gate
        return _Gate(ctx, step, host).wait()


class _Gate:
    def __init__(self, ctx: StepContext, step: ApprovalStep, host: GateHost) -> None:
        self.ctx, self.step, self.host, self.p = ctx, step, host, step.with_
        self.run_dir = ctx.artifacts_dir.parent
        self.incident_dir = self.run_dir.parent.parent

    def _audit(self, event: str, **fields: Any) -> None:
        audit.append(self.incident_dir, event, run_key=self.ctx.run_key, step=self.step.id, **fields)

    def _open(self) -> GateState:
        from breakglass.flows.gates import intents  # imports the planner, which imports this registry

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


class GateCancelled(Exception):
    """The flow run was cancelled (e.g. from the Prefect UI) while the gate waited."""


HANDLER = Approval()
