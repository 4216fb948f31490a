"""A waiting gate, told to people: a Slack message with Approve and Reject buttons that follows the
gate's state, and a PagerDuty page when nobody acts.

The message is posted once per gate (journaled, reconciled through message metadata after a
crash) and then edited with ``chat.update``: each decision, who and when, how many more are
needed; when the gate closes the buttons give way to the outcome. Each button's value carries
the incident, the gate and the digest, so `serve` can refuse a click on an older action.
Pages (trigger, backup trigger, resolve) are journaled too, so a resumed gate does not page twice.
A gate pages until its quorum is reached or it closes: one vote of a 2-of-3 gate stops nothing.
Nothing here can fail the gate: problems are logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from breakglass.integrations import pagerduty
from breakglass.integrations.notify.base import Message
from breakglass.integrations.notify.slack import SlackTransport, escape

if TYPE_CHECKING:
    from breakglass.flows.gates.state import GateState  # the gate's state, read to draw its message
    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.run.journal import Journal

log = logging.getLogger("breakglass.gates")
APPROVE, REJECT = "gate_approve", "gate_reject"


def blocks(state: GateState, incident: str, playbook: str, drill: bool) -> tuple[str, list[dict[str, Any]]]:
    approvals = [v for v in state.votes if v.get("counted") and v["decision"] == "approve"]
    rejections = [v for v in state.votes if v.get("counted") and v["decision"] == "reject"]
    head = f"{'[DRILL] ' if drill else ''}Approval needed: gate {state.step} of {playbook} ({incident})"
    lines = "\n".join(f"• {escape(line)}" for line in state.authorises)[:2500]
    decided = [f"{'✅' if v['decision'] == 'approve' else '⛔'} {escape(v['name'])} via {v['channel']} at "
               f"{datetime.fromtimestamp(v['cast_at'], UTC):%H:%M:%S} UTC" for v in approvals + rejections]
    out: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(head)}*\nIt authorises:\n{lines}"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"digest `{state.digest}`"}]},
    ]
    if state.changes:
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Changed since earlier votes:*\n"
                                                + "\n".join(escape(c) for c in state.changes)[:1500]}})
    status = f"{len(approvals)} of {state.quorum} approvals" + (f": {', '.join(decided)}" if decided else "")
    if state.status == "waiting":
        left = max(0, int(state.deadline - time.time()))
        status += f" · {state.quorum - len(approvals)} more needed · {left // 60}m{left % 60:02d}s left"
        value = json.dumps({"incident": incident, "gate": state.step, "digest": state.digest}, separators=(",", ":"))
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": status}})
        out.append({"type": "actions", "block_id": f"gate:{state.step}", "elements": [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Approve"},
             "confirm": {"title": {"type": "plain_text", "text": "Approve?"},
                         "text": {"type": "mrkdwn", "text": "You approve exactly the actions listed above."},
                         "confirm": {"type": "plain_text", "text": "Approve"},
                         "deny": {"type": "plain_text", "text": "Cancel"}}},
            {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Reject"}}]})
    else:
        outcome = {"passed": "✅ Approved", "proceeded": "⏩ Proceeded on timeout", "rejected": "⛔ Rejected",
                   "timed_out": "⌛ Timed out", "cancelled": "✖ Cancelled"}.get(state.status, state.status)
        out.append({"type": "section", "text": {"type": "mrkdwn",
                                                "text": f"*{outcome}*" + (f": {escape(state.reason)}" if state.reason else "")
                                                + f"\n{status}"}})
    return f"{head}: {status}", out


class Notice:
    def __init__(self, inventory: Inventory, journal: Journal, run_key: str, incident: str, playbook: str) -> None:
        self.inventory, self.journal, self.run_key, self.incident, self.playbook = inventory, journal, run_key, incident, playbook
        self._slack: SlackTransport | None = None

    def _transport(self) -> SlackTransport | None:
        app = self.inventory.slack_app
        if app is None:
            return None
        if self._slack is None:
            spec = self.inventory.channels[app.channel]
            token = os.environ.get(spec.token_env or "", "")
            if not token:
                if not getattr(self, "_warned", False):
                    log.warning("slack_app: environment variable %s is not set; no gate message", spec.token_env)
                    self._warned = True
                return None
            self._slack = SlackTransport(token, spec.base_url)
        return self._slack

    def update(self, state: GateState) -> None:
        """Post the gate's message once, then keep it in step with the gate."""
        try:
            slack = self._transport()
            if slack is None or "slack" not in state.channels:
                return
            text, body = blocks(state, self.incident, self.playbook, self.inventory.is_drill)
            self._post_once(slack, f"{self.run_key}/{state.step}/slack-gate", text, body, update=True)
        except Exception as exc:  # noqa: BLE001 - a message problem never moves or fails a gate
            log.warning("gate %s: Slack message not updated: %s", state.step, exc)

    def safe_pending(self, proposal: dict[str, Any]) -> None:
        """A Safe transaction waits for owners: tell the war room what to verify and how to sign, once."""
        try:
            slack = self._transport()
            if slack is None:
                return
            excluded = proposal.get("excluded") or []
            text = (f"{'[DRILL] ' if self.inventory.is_drill else ''}Safe transaction needs {proposal['threshold']} owner "
                    f"signature(s): {proposal.get('call')} ({self.incident})")
            lines = [f"*{escape(text)}*", f"Safe `{proposal['safe']}` · nonce {proposal['nonce']}",
                     f"safeTxHash `{proposal['safe_tx_hash']}`: verify it on your own device before signing",
                     "Owners: " + ", ".join(f"`{o}`" for o in proposal.get("owners", []) if o not in excluded)]
            if excluded:
                lines.append("Does not count: " + ", ".join(f"`{o}`" for o in excluded))
            lines.append(f"Sign: `breakglass sign {self.incident} {proposal['safe_tx_hash']} --signature 0x…` "
                         "(from any machine with the Prefect API)")
            body = [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}]
            self._post_once(slack, f"{self.run_key}/safe/{proposal['safe_tx_hash']}/slack", text, body, update=False)
        except Exception as exc:  # noqa: BLE001 - the log and `status` say it too
            log.warning("Safe transaction %s: Slack message not posted: %s", proposal.get("safe_tx_hash"), exc)

    def final(self, status: str, head: Any) -> None:
        """The run's last word in the war room, once: its outcome and the audit log's head at that moment, a copy
        outside breakglass's own storage against which a rewritten log can be caught."""
        try:
            slack = self._transport()
            if slack is None:
                return
            text = (f"{'[DRILL] ' if self.inventory.is_drill else ''}{self.playbook} {status} for incident "
                    f"{self.incident} · audit log: {head.entries} entries, head {head.sha256}")
            body = [{"type": "section", "text": {"type": "mrkdwn", "text": escape(text)}}]
            self._post_once(slack, f"{self.run_key}/slack-final", text, body, update=False)
        except Exception as exc:  # noqa: BLE001 - the record and the audit log are the record
            log.warning("final Slack message not posted: %s", exc)

    def post_once(self, key: str, text: str) -> bool:
        """One plain message in the war room (e.g. the incident's closing); False without a Slack app or token."""
        try:
            slack = self._transport()
            if slack is None:
                return False
            body = [{"type": "section", "text": {"type": "mrkdwn", "text": escape(text)}}]
            self._post_once(slack, key, text, body, update=False)
            return True
        except Exception as exc:  # noqa: BLE001 - the audit log is the record
            log.warning("war room message not posted: %s", exc)
            return False

    def _post_once(self, slack: SlackTransport, key: str, text: str, body: list[dict[str, Any]], *, update: bool) -> None:
        """Post once (journaled; after a crash, found again through message metadata); later calls update it."""
        app = self.inventory.slack_app
        assert app is not None  # there is a transport (_transport), so there is a slack_app
        channel = app.post_to
        posted = [e for e in self.journal.entries(key) if e["event"] == "posted"]
        if posted:
            if update:
                slack.update(channel, posted[-1]["ts"], text, body)
            return
        message = Message(key=key, subject=text, text=text, blocks=body)
        ts = slack.find(channel, message) if self.journal.entries(key) else None
        if ts is None:
            self.journal.append(key, "attempt")
            ts = slack.send(channel, message)
        elif update:
            slack.update(channel, ts, text, body)
        self.journal.append(key, "posted", ts=ts, channel=channel)

    def tick(self, state: GateState) -> None:
        """Page while the gate waits for its quorum (a vote that leaves it short stops nothing): the roster after
        ``after``, the backup ``backup_after`` later; resolve both when the gate closes."""
        paging = self.inventory.paging
        if paging is None:
            return
        dedup = hashlib.sha256(f"{self.run_key}/{state.step}".encode()).hexdigest()[:32]
        pages = [(paging.routing_key_env, "page", paging.after)]
        if paging.backup_routing_key_env:
            pages.append((paging.backup_routing_key_env, "backup-page", paging.after + paging.backup_after))
        approvals = len({v["name"] for v in state.votes if v.get("counted") and v["decision"] == "approve"})
        for env, name, delay in pages:
            key = f"{self.run_key}/{state.step}/{name}"
            events = {e["event"] for e in self.journal.entries(key)}
            try:
                if state.status != "waiting":
                    if "triggered" in events and "resolved" not in events:
                        pagerduty.send(paging.url, os.environ.get(env, ""), "resolve", dedup)
                        self.journal.append(key, "resolved")
                elif "triggered" not in events and time.time() - state.opened_at >= delay:
                    summary = (f"breakglass: gate {state.step} of {self.incident} waits for approvers "
                               f"({approvals} of {state.quorum} so far)")
                    pagerduty.send(paging.url, os.environ.get(env, ""), "trigger", dedup, {
                        "summary": summary[:1024], "source": "breakglass", "severity": "critical",
                        "custom_details": {"incident": self.incident, "gate": state.step, "digest": state.digest,
                                           "authorises": state.authorises[:20]}})
                    self.journal.append(key, "triggered", dedup_key=dedup)
            except pagerduty.PagingError as exc:
                log.warning("gate %s: %s (will retry)", state.step, exc)
