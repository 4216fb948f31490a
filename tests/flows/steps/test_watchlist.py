"""Watch lists: CAIP-10, deduplication, formula-safe CSV, versions that correct, posted once per sink."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from breakglass.flows.errors import SpecError
from breakglass.flows.run import watchlist_versions as watchlists
from breakglass.flows.spec.validate import load_playbook
from tests.conftest import REPO, cli

A = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
B = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
TX = "0x" + "ab" * 32


def test_versions_append_dedupe_and_retract_without_deleting(tmp_path: Path) -> None:
    folder = tmp_path / "watchlist"
    add = [{"address": A, "chain_id": 1, "role": "attacker_eoa", "label": "=HYPERLINK(\"http://evil\")", "tx_hashes": [TX]}]
    v1 = watchlists.make_version(folder, "INC-1", False, "run/step-a", add, [], "AMBER")
    again = watchlists.make_version(folder, "INC-1", False, "run/step-a", add, [], "AMBER")
    assert again == v1  # a retried step reuses its version
    v2 = watchlists.make_version(folder, "INC-1", False, "run/step-b",
                                 [{"address": A, "chain_id": 1, "role": "attacker_eoa", "tx_hashes": ["0x" + "cd" * 32]},
                                  {"address": B, "chain_id": 1, "role": "receiving"}], [], "AMBER")
    v3 = watchlists.make_version(folder, "INC-1", False, "run/step-c", [], [B], "AMBER")
    assert [v["version"] for v in (v1, v2, v3)] == [1, 2, 3]
    assert len(v2["entries"]) == 2 and next(e for e in v2["entries"] if e["address"] == A)["transactions"] == [TX, "0x" + "cd" * 32]
    assert {e["address"]: e["status"] for e in v3["entries"]} == {A: "active", B: "retracted"}
    assert sorted(p.name for p in folder.glob("v*.*")) == ["v1.csv", "v1.json", "v2.csv", "v2.json", "v3.csv", "v3.json"]
    rows = list(csv.DictReader((folder / "v1.csv").open()))
    assert rows[0]["caip10"] == f"eip155:1:{A}" and rows[0]["label"].startswith("'=")


@pytest.mark.parametrize("bad", ["0x70997970C51812dc3A010C7d01b50e0d17dc79C9", "0x1234"])
def test_bad_addresses_are_refused_at_validate(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"""apiVersion: breakglass/v1
kind: Playbook
name: w
description: d
severity: high
steps:
  - {{id: w, kind: watchlist, with: {{add: [{{address: "{bad}", chain: ethereum, role: attacker_eoa}}]}}}}
""")
    with pytest.raises(SpecError) as info:
        load_playbook(path, REPO / "playbooks" / "inventories" / "drill.yaml")
    assert "p.yaml:7:" in str(info.value) and "address" in str(info.value)


def test_each_version_is_posted_once_per_sink_across_resume(prefect_api, home, tmp_path) -> None:
    from tests.flows.steps.test_notify import Servers

    servers = Servers()
    try:
        inventory = tmp_path / "inv.yaml"
        inventory.write_text(f"""apiVersion: breakglass/v1
kind: Inventory
name: wl
chains:
  ethereum: {{chain_id: 1, block_time: 12s, rpc: [{{env: UNUSED_RPC}}]}}
channels:
  smtp: {{kind: email, host: 127.0.0.1, port: {servers.smtp.port}, sender: security@example.org}}
  hook: {{kind: webhook, url_env: BG_TEST_HOOK_URL, secret_env: BG_TEST_HOOK_SECRET}}
contacts:
  exchange-a: {{kind: exchange, channels: [{{via: smtp, to: [a@x.example]}}], last_verified: 2026-11-01}}
  analytics: {{kind: partner, channels: [{{via: hook}}], last_verified: 2026-11-01}}
""")
        playbook = tmp_path / "w.yaml"
        playbook.write_text(f"""apiVersion: breakglass/v1
kind: Playbook
name: wl
description: d
severity: high
steps:
  - {{id: first, kind: watchlist, with: {{add: [{{address: "{A}", chain: ethereum, role: attacker_eoa, tx_hashes: ["{TX}"]}}], publish: [exchange-a, analytics]}}}}
  - {{id: correct, kind: watchlist, needs: [first], with: {{add: [{{address: "{B}", chain: ethereum, role: receiving}}], retract: ["{A}"], publish: [exchange-a, analytics]}}}}
""")
        # the chain is named for CAIP-10 ids only, but a run refuses to start while a variable it names is unset
        env = {"BG_TEST_HOOK_URL": servers.webhook.url, "BG_TEST_HOOK_SECRET": "s", "UNUSED_RPC": "http://127.0.0.1:9"}
        incident = "INC-watch-1"
        killed = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--incident", incident,
                     env={**env, "BREAKGLASS_TEST_CRASH_AT": "notify.before_record@3"})
        assert killed.returncode == -9
        result = cli("resume", incident, "--json", env=env)
        assert result.returncode == 0, result.stderr
        steps = {s["id"]: s["outputs"] for s in json.loads(result.stdout)["steps"]}
        assert (steps["first"]["version"], steps["correct"]["version"]) == (1, 2)
        assert steps["correct"]["retracted"] == 1 and steps["correct"]["active"] == 1
        keys = servers.keys_by_recipient()
        assert sorted(set(keys["exchange-a"])) == [f"{incident}/watchlist/v1/exchange-a", f"{incident}/watchlist/v2/exchange-a"]
        assert sorted(set(keys["analytics"])) == [f"{incident}/watchlist/v1/analytics", f"{incident}/watchlist/v2/analytics"]
        attachments = [e.content.decode() for e in servers.capture.envelopes]
        assert all("watchlist-v" in body and ".csv" in body for body in attachments)
        hook = next(body for key, body in servers.hooks if key.endswith("v2/analytics"))
        assert {e["address"]: e["status"] for e in hook["watchlist"]["entries"]} == {A: "retracted", B: "active"}
    finally:
        servers.close()
