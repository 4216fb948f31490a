"""An alert whose playbook could not start because of the playbook's own mistake is still an incident.

A trigger's ``inputs:`` template that does not render on this alert (``{{ alert.addresses[0] }}``
on an alert without addresses), or inputs the playbook then refuses, must not lose the alert: the
incident is recorded (``incident.json``, so `status` lists it), the audit log gets a
``trigger.failed`` entry with the reason and the alert, and the war room (the Slack app's channel,
where one is configured) is told once. The monitor gets its 202.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.run import audit
from breakglass.flows.run.runstore import Store

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory

log = logging.getLogger("breakglass.intake")


def reason_of(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:500]


def record(home: Path, inventory: Inventory, incident: str, source: str, playbook: str, alert: dict[str, Any],
           reason: str) -> None:
    """Write the incident and the audit line now; tell the war room in the background."""
    incident_dir = Store(home).open_incident(incident, inventory.mode)
    audit.append(incident_dir, "trigger.failed", source=source, playbook=playbook, reason=reason,
                 alert={k: alert.get(k) for k in ("id", "title", "severity", "tx_hash", "chain_id")}
                 | {"addresses": (alert.get("addresses") or [])[:20]})
    log.error("alert %s from %s: playbook %s did not start: %s (incident %s recorded; start it by hand with "
              "`breakglass run`)", alert.get("id"), source, playbook, reason, incident)
    threading.Thread(target=_tell_war_room, args=(inventory, incident, source, playbook, alert, reason),
                     daemon=True).start()


def failures(incident_dir: Path) -> list[dict[str, Any]]:
    """The ``trigger.failed`` entries of an incident (for `status`)."""
    return [e for e in audit.entries(incident_dir) if e.get("event") == "trigger.failed"]


def _tell_war_room(inventory: Inventory, incident: str, source: str, playbook: str, alert: dict[str, Any], reason: str) -> None:
    app = inventory.slack_app
    if app is None:
        return
    from breakglass.integrations.notify.base import Message
    from breakglass.integrations.notify.slack import SlackTransport, escape

    spec = inventory.channels.get(app.channel)
    token = os.environ.get(getattr(spec, "token_env", None) or "", "")
    if spec is None or not token:
        log.warning("incident %s: the war room is not told (no Slack token)", incident)
        return
    text = (f"{'[DRILL] ' if inventory.is_drill else ''}Incident {incident}: alert {alert.get('title') or alert.get('id')!r} "
            f"from {source} matched playbook {playbook}, but it did NOT start: {reason}. "
            f"Start it by hand: breakglass run {playbook} --incident {incident}")
    body = [{"type": "section", "text": {"type": "mrkdwn", "text": escape(text)[:2900]}}]
    try:
        SlackTransport(token, spec.base_url).send(app.post_to, Message(
            key=f"{incident}/trigger-failed/{playbook}/{alert.get('id')}", subject=text[:150], text=text, blocks=body))
    except Exception as exc:  # noqa: BLE001 - the incident and the audit log are the record
        log.warning("incident %s: war room not told: %s", incident, exc)
