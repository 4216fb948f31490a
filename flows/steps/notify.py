"""Step kind ``notify``: render a message template and tell each recipient once.

Recipients are contacts or groups from the inventory, optionally narrowed to those covering
given chains. Each gets the message over the first of its channels that works; Slack posts are
paced per channel and 429s are honoured. In drills every message is marked ``[DRILL]``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import messages
from breakglass.flows.language.inventory import recipients
from breakglass.flows.language.types import Model, Name, NameExpr, is_template
from breakglass.flows.run import watchlist_versions as watchlists
from breakglass.flows.steps.base import KindBase, Ref, StepBase
from breakglass.integrations.notify.base import Message

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.context import StepContext


NOW_AT_SENDING = "(filled in when sent)"  # `now` in a gate's digest: it is filled in at sending


class NotifyParams(Model):
    template: Name = Field(description="a file playbooks/templates/<template>.md.j2")
    to: list[Name] = Field(min_length=1, description="contacts or groups from the inventory")
    chains: list[NameExpr] = Field(default_factory=list, description="only contacts covering one of these chains")
    data: dict[str, Any] = Field(default_factory=dict, description="values for the template (templates allowed)")
    attach_watchlist: bool = Field(False, description="attach the incident's latest watch list (CSV and JSON)")


class NotifyStep(StepBase):
    kind: Literal["notify"]
    with_: NotifyParams = Field(alias="with")


class DeliveryRow(Model):
    recipient: str
    channel: str | None
    status: str
    attempts: int
    provider_id: str | None
    at: str
    key: str
    errors: list[str]


class NotifyOutputs(Model):
    template: str
    deliveries: list[DeliveryRow]
    delivered: int
    failed_recipients: list[str]


class Notify(KindBase):
    kind: ClassVar[str] = "notify"
    default_timeout: ClassVar[float] = 300.0  # seconds without `timeout:` (every recipient, with the transports' own retries)
    spec: ClassVar[type[StepBase]] = NotifyStep
    notifies: ClassVar[bool] = True
    outputs: ClassVar[type[Model]] = NotifyOutputs

    def references(self, step: NotifyStep) -> list[Ref]:
        return [Ref("contact", n, ("with", "to", i)) for i, n in enumerate(step.with_.to)]

    def check(self, step: NotifyStep, inventory: Inventory | None, playbook_dir: Path) -> list[tuple[tuple[Any, ...], str, str]]:
        """Template problems and unapproved wording to external counterparties, for `validate`."""
        problems = [(("with", "template"), p, "") for p in messages.check(playbook_dir / "templates", step.with_.template,
                                                                          set(step.with_.data))]
        if inventory is not None and all(n in inventory.contacts or n in inventory.groups for n in step.with_.to):
            external = [r for r in recipients(inventory, step.with_.to, [])
                        if inventory.contacts[r].kind != "internal"]
            policy = inventory.templates.get(step.with_.template)
            if external and not (policy and policy.approved):
                problems.append((("with", "template"), f"template '{step.with_.template}' is not approved for external "
                                 f"counterparties ({', '.join(external)})",
                                 "Mark it 'approved: true' under templates: in the inventory after review, or address only internal contacts."))
        return problems

    def targets(self, step: NotifyStep, inventory: Inventory) -> list[str]:
        p = step.with_
        chains = [c for c in p.chains if not is_template(c)]
        try:
            names = recipients(inventory, p.to, chains)
        except KeyError:
            names = p.to
        return [f"template {p.template} to {', '.join(names)}" + (f" (covering {', '.join(p.chains)})" if p.chains else "")]

    def contacts(self, step: NotifyStep) -> list[str]:
        return list(step.with_.to)

    def intents(self, ctx: StepContext, step: NotifyStep) -> list[dict[str, Any]]:
        out = []
        for name, message in compose(ctx, step.with_, NOW_AT_SENDING):
            text = f"{message.subject}\n{message.text}".encode()
            out.append({"step": step.id, "item": name, "kind": "notify", "template": step.with_.template,
                        "recipient_kind": ctx.inventory.contacts[name].kind,
                        "addresses": [f"{c.via}:{c.to}" if c.to else c.via for c in ctx.inventory.contacts[name].channels],
                        "text_sha256": hashlib.sha256(text).hexdigest(),
                        "attachments": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(message.attachments.items())}})
        return out

    def deliveries(self, outputs: dict[str, Any]) -> list[dict[str, Any]]:
        return list(outputs.get("deliveries", []))

    def summary(self, outputs: dict[str, Any]) -> str:
        rows = outputs.get("deliveries") or []
        channels = sorted({str(r.get("channel")) for r in rows if r.get("channel")})
        failed = outputs.get("failed_recipients") or []
        return (f"delivered {outputs.get('delivered', 0)}/{len(rows)}" + (f" via {', '.join(channels)}" if channels else "")
                + (f"; not delivered to {', '.join(failed)}" if failed else ""))

    def run(self, ctx: StepContext, step: NotifyStep) -> NotifyOutputs:
        p: NotifyParams = step.with_
        keyed = compose(ctx, p, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"))
        rows = ctx.deliver.deliver_all(keyed)
        failed = [r.recipient for r in rows if r.status == "failed"]
        outputs = NotifyOutputs(template=p.template, deliveries=[DeliveryRow(**r.to_json()) for r in rows],
                                delivered=len(rows) - len(failed), failed_recipients=failed)
        if failed:
            detail = "; ".join(f"{r.recipient} ({' | '.join(r.errors) or 'no channel'})" for r in rows if r.status == "failed")
            raise NotifyFailed(f"nothing reached {detail}", outputs)
        return outputs


def compose(ctx: StepContext, p: NotifyParams, now_text: str) -> list[tuple[str, Message]]:
    """Each recipient's message, exactly as it will be sent (gates hash it with a fixed ``now``)."""
    inventory = ctx.inventory
    names = recipients(inventory, p.to, list(p.chains))
    if not names:
        raise BreakglassError(f"no contact in {p.to} covers {p.chains}")
    folder = ctx.artifacts_dir.parent / "templates"
    drill = ctx.mode == "drill"
    attachments: dict[str, bytes] = {}
    payload: dict[str, Any] = {"incident": ctx.incident, "template": p.template, "drill": drill}
    if p.attach_watchlist:
        lists = ctx.artifacts_dir.parent.parent.parent / "watchlist"
        document = watchlists.latest(lists)
        if document is None:
            raise BreakglassError("attach_watchlist: this incident has no watch list yet; "
                                  "put a watchlist step among this step's needs")
        number = document["version"]
        attachments = {f"{ctx.incident}-watchlist-v{number}.csv": (lists / f"v{number}.csv").read_bytes(),
                       f"{ctx.incident}-watchlist-v{number}.json": (lists / f"v{number}.json").read_bytes()}
        payload["watchlist"] = document
    keyed = []
    for name in names:
        contact = inventory.contacts[name]
        context = {"incident": ctx.incident, "drill": drill, "playbook": ctx.playbook,
                   "severity": ctx.severity, "recipient": {"name": name, "kind": contact.kind},
                   "reply_contact": inventory.reply_contact, "now": now_text, "data": p.data}
        rendered = messages.render(folder, p.template, context)
        keyed.append((name, Message(key=f"{ctx.run_key}/{ctx.step_id}/{name}", subject=_drill(rendered.subject, drill),
                                    text=_drill(rendered.text, drill), attachments=attachments,
                                    payload={**payload, "recipient": name})))
    return keyed


class NotifyFailed(BreakglassError):
    def __init__(self, message: str, outputs: NotifyOutputs) -> None:
        super().__init__(message)
        self.outputs = outputs


def _drill(text: str, drill: bool) -> str:
    return text if not drill or text.startswith("[DRILL]") else "[DRILL] " + text


HANDLER = Notify()
