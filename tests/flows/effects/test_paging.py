"""Paging on silence, against a local PagerDuty Events API server: the roster first, then the backup,
each once however often the gate loop ticks, and both resolved when the gate closes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from breakglass.flows.effects.notice import Notice
from breakglass.flows.gates.state import GateState
from breakglass.flows.run.journal import Journal
from breakglass.flows.spec.validate import load_inventory
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


@pytest.mark.slow
def test_a_two_of_three_gate_with_one_vote_pages_the_roster_and_then_the_backup(prefect_api, chain, home, tmp_path) -> None:
    """A real gate in a real `serve`: bob's vote leaves it one short, and the escalation goes on regardless."""
    import httpx

    from tests.conftest import fresh_protocol, wait_for
    from tests.flows.service.test_serve import USERS, _gate, click, signed, start_gated_run, start_serve, stop_serve

    served = start_serve(fresh_protocol(chain), home, tmp_path, paging_after="1s",
                         paging="  backup_routing_key_env: PD_BACKUP\n  backup_after: 3s\n",
                         env_extra={"PD_BACKUP": "pd-backup-key"})
    pages = served["pages"]
    try:
        incident, value = start_gated_run(served, "paging")

        def vote(user: str) -> None:
            body, headers = signed(click(USERS[user], value))
            assert httpx.post(served["base"] + "/slack/interactivity", content=body, headers=headers, timeout=30).status_code == 200

        vote("bob")  # at once: before the first page is due
        wait_for(lambda: [v["name"] for v in _gate(home, incident)["votes"] if v.get("counted")] == ["bob"], what="bob")
        opened = _gate(home, incident)["opened_at"]
        wait_for(lambda: len(pages) >= 2, timeout=60, what="the roster's page and then the backup's")
        assert [(p["event_action"], p["routing_key"]) for p in pages[:2]] == [
            ("trigger", "pd-routing-key-secret"), ("trigger", "pd-backup-key")]
        assert "1 of 2 so far" in pages[0]["payload"]["summary"]
        assert _gate(home, incident)["status"] == "waiting" and time.time() - opened >= 4  # after + backup_after
        vote("carol")
        wait_for(lambda: _gate(home, incident).get("status") == "passed", what="the gate passed")
        wait_for(lambda: len([p for p in pages if p["event_action"] == "resolve"]) == 2, what="both pages resolved")
        assert len([p for p in pages if p["event_action"] == "trigger"]) == 2
    finally:
        stop_serve(served)


def test_page_on_critical_pages_once_when_an_alert_opens_an_incident(tmp_path: Path, monkeypatch) -> None:
    """``paging.page_on``: the intake pages the roster when a critical playbook's alert opens an incident, once."""
    import json

    from breakglass.flows.service import intake as intake_module
    from breakglass.flows.spec.validate import load_inventory, load_playbook
    from tests.conftest import wait_for

    events: list[dict] = []
    server = JsonServer(lambda body: (events.append(body), (202, {"status": "success"}))[1])
    monkeypatch.setenv("PD_MAIN", "main-routing-key")
    inventory_path = tmp_path / "inv.yaml"
    inventory_path.write_text(f"""apiVersion: breakglass/v1
kind: Inventory
name: paging
chains: {{ethereum: {{chain_id: 1, block_time: 12s, rpc: [{{env: X_RPC}}]}}}}
contracts: {{vault: {{chain: ethereum, address: "0x1111111111111111111111111111111111111111"}}}}
alert_sources: {{gen: {{kind: generic, token_env: GEN_TOKEN}}}}
paging: {{url: "{server.url}", routing_key_env: PD_MAIN, page_on: [critical]}}
""")
    books = {}
    for name, severity in (("crit", "critical"), ("low", "low")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"""apiVersion: breakglass/v1
kind: Playbook
name: {name}
description: t
severity: {severity}
triggers: [{{source: gen, match: {{title: "{name}*"}}}}]
steps:
  - {{id: look, kind: snapshot, with: {{chain: ethereum, paused: [vault]}}}}
""")
        books[name] = (path, load_playbook(path, inventory_path)[0])
    started: list = []
    desk = intake_module.Intake(tmp_path / "home", load_inventory(inventory_path), books,
                                lambda *a: started.append(a) or {"incident": a[2]}, {"GEN_TOKEN": "t"}.get)
    headers = {"authorization": "Bearer t", "content-type": "application/json"}
    try:
        status, answer = desk.accept("gen", json.dumps({"id": "1", "title": "crit drain"}).encode(), headers)
        assert status == 202
        page = wait_for(lambda: events, what="the page")[0]
        assert page["routing_key"] == "main-routing-key" and answer["incidents"][0] in page["payload"]["summary"]
        desk.accept("gen", json.dumps({"id": "1", "title": "crit drain", "block": 2}).encode(), headers)  # deduped
        desk.accept("gen", json.dumps({"id": "2", "title": "low noise"}).encode(), headers)  # not page_on
        wait_for(lambda: len(started) == 2, what="both runs started")
        time.sleep(0.5)
        assert len(events) == 1
    finally:
        server.close()
