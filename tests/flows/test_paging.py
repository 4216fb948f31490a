"""Paging on silence, against a local PagerDuty Events API server: the roster first, then the backup,
each once however often the gate loop ticks, and both resolved when the gate closes."""

from __future__ import annotations

import time
from pathlib import Path

from breakglass.flows.gatenotice import Notice
from breakglass.flows.gatestate import GateState
from breakglass.flows.journal import Journal
from breakglass.flows.validate import load_inventory
from tests.helpers.jsonhttp import JsonServer


def test_silence_pages_the_roster_then_the_backup_once_each_and_closing_resolves_both(tmp_path: Path, monkeypatch) -> None:
    events: list[dict] = []
    server = JsonServer(lambda body: (events.append(body), (202, {"status": "success"}))[1])
    monkeypatch.setenv("PD_MAIN", "main-routing-key")
    monkeypatch.setenv("PD_BACKUP", "backup-routing-key")
    inventory_path = tmp_path / "inv.yaml"
    inventory_path.write_text(f"""apiVersion: breakglass/v1
kind: Inventory
name: paging
paging: {{url: "{server.url}", routing_key_env: PD_MAIN, backup_routing_key_env: PD_BACKUP, after: 1s, backup_after: 2s}}
""")
    notice = Notice(load_inventory(inventory_path), Journal(tmp_path / "journal.jsonl"), "INC-1/p/abc", "INC-1", "p")
    opened = time.time()
    state = GateState(step="gate", status="waiting", digest="0x" + "ab" * 32, intents=[], authorises=["pause vault"],
                      approvers=["alice"], eligible={"alice": None}, quorum=1, exclude_initiator=False, initiator=None,
                      channels=["signed"], approval_ttl=900, opened_at=opened, deadline=opened + 60, attempt=1)
    try:
        notice.tick(state)
        assert events == []  # not silent long enough yet
        state.opened_at = opened - 1.5
        for _ in range(3):
            notice.tick(state)
        assert [(e["event_action"], e["routing_key"]) for e in events] == [("trigger", "main-routing-key")]
        state.opened_at = opened - 3.5
        for _ in range(3):
            notice.tick(state)
        assert [(e["event_action"], e["routing_key"]) for e in events] == [
            ("trigger", "main-routing-key"), ("trigger", "backup-routing-key")]
        again = Notice(notice.inventory, Journal(tmp_path / "journal.jsonl"), "INC-1/p/abc", "INC-1", "p")
        again.tick(state)  # a resumed runner pages nobody twice
        assert len(events) == 2
        state.status = "passed"
        again.tick(state)
        again.tick(state)
        assert [(e["event_action"], e["routing_key"]) for e in events[2:]] == [
            ("resolve", "main-routing-key"), ("resolve", "backup-routing-key")]
        assert len({e["dedup_key"] for e in events}) == 1 and "pause vault" in str(events[0]["payload"])
    finally:
        server.close()
