"""``paging.page_on``: page the roster the moment an alert opens an incident of a severe enough playbook,
not only when a gate waits. Journaled in the incident (``paging.jsonl``): a restart pages nobody twice."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.flows.run.journal import Journal
from breakglass.integrations import pagerduty

if TYPE_CHECKING:
    from breakglass.flows.language.inventory import Inventory

log = logging.getLogger("breakglass.intake")


def page_opened(inventory: Inventory, home: Path, incident: str, playbook: str, severity: str, alert: dict[str, Any]) -> bool:
    """Page once for this incident if the inventory asks for it at this severity; True when a page went out."""
    paging = inventory.paging
    if paging is None or severity not in paging.page_on:
        return False
    journal = Journal(home / "incidents" / incident / "paging.jsonl")
    key = f"{incident}/opened/page"
    if any(e["event"] == "triggered" for e in journal.entries(key)):
        return False
    summary = (f"breakglass: incident {incident} opened: {severity} playbook {playbook} started on alert "
               f"{alert.get('title') or alert.get('id')!r}")
    try:
        pagerduty.send(paging.url, os.environ.get(paging.routing_key_env, ""), "trigger",
                       hashlib.sha256(f"{incident}/opened".encode()).hexdigest()[:32], {
                           "summary": summary[:1024], "source": "breakglass",
                           "severity": "critical" if severity == "critical" else "error",
                           "custom_details": {"incident": incident, "playbook": playbook, "alert": alert.get("id")}})
    except pagerduty.PagingError as exc:
        log.warning("incident %s: not paged: %s", incident, exc)
        return False
    journal.append(key, "triggered")
    return True
