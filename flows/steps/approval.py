"""Step kind ``approval``: a gate that waits for M distinct, verified people to approve the exact actions it guards.

The gate guards every step that depends on it. It computes the digest of their intents
(``flows.intents``), shows what it authorises, and counts votes that ``approvals.judge`` accepts.
Its state (digest, intents, deadline, every vote and verdict) is kept in
``gates/<step>.json`` in the run directory, so a resumed run keeps votes given for an unchanged
digest within their TTL, and the deadline does not restart. Every verdict goes to the incident's
audit log.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pydantic import Field

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import messages
from breakglass.flows.language.types import SIGNED_CHANNELS, UNSIGNED_CHANNELS, Channel, Duration, Model, Name
from breakglass.flows.steps.base import KindBase, Ref, StepBase

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext

POLL = 0.025  # seconds between reads of new votes from Prefect (a vote in this process wakes the gate at once)
ESCALATION_DATA = ("gate", "waiting_for", "approvers", "authorises", "digest", "minutes")
_SIGNED_AND_SLACK: list[Channel] = ["signed", "slack"]  # the default channels (copied per step)


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
    channels: list[Channel] = Field(default_factory=lambda: _SIGNED_AND_SLACK.copy(), min_length=1,
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


class GateFailed(BreakglassError):
    pass


class GateCancelled(Exception):
    """The flow run was cancelled (e.g. from the Prefect UI) while the gate waited."""


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

    def excludes_initiator(self, step: Any) -> bool:
        return bool(step.with_.exclude_initiator)

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
        p = step.with_
        out: list[tuple[tuple[Any, ...], str, str]] = []
        if step.timeout is not None:
            out.append((("timeout",), "a gate's time limit is 'with.timeout' (with 'on_timeout'); remove the step-level timeout", ""))
        if step.retries:
            out.append((("retries",), "a gate is not retried; remove 'retries'", ""))
        if (p.on_timeout == "escalate") != (p.escalate is not None):
            out.append((("with", "escalate"), "'escalate' is required with on_timeout: escalate, and only then",
                        "Give escalate: {approvers, notify, template, timeout}, or choose abort or proceed."))
        unsigned = [c for c in p.channels if c in UNSIGNED_CHANNELS]
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
                if any(c in SIGNED_CHANNELS for c in p.channels) and not set(p.channels) - {"signed"}:
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
        """The gate waits in its host (``ctx.gate``, the runner's): ``flows/gates/machine`` counts the votes."""
        return cast(ApprovalOutputs, ctx.gate.hold(ctx, step))


HANDLER = Approval()
