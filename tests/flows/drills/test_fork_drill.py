"""Fork drills against a local anvil standing in for the live chain: the live inventory's real addresses,
its guardian impersonated (no key anywhere), messages only to the drill outbox, the live chain untouched.
After the guardian loses its role on the "live" chain, a new fork drill fails with that gap."""

from __future__ import annotations

import json
import shutil
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
from eth_utils import keccak

from tests.conftest import REPO, cli, fresh_protocol, live_inventory, mined

BOOK = """apiVersion: breakglass/v1
kind: Playbook
name: fork-pause
description: pause what the guardian guards, and tell the desk
severity: critical
steps:
  - {id: pause, kind: pause, timeout: 60s, with: {contracts: [vault, bridge], signer: guardian}}
  - id: tell
    kind: notify
    needs: [pause]
    timeout: 30s
    with: {template: war-room-alert, to: [desk], data: {summary: paused}}
"""
EXTRA = """channels:
  hook: {kind: webhook, url_env: BG_TEST_HOOK_URL, secret_env: BG_TEST_HOOK_SECRET}
contacts:
  desk: {kind: internal, channels: [{via: hook}], last_verified: 2026-11-01}
templates:
  war-room-alert: {approved: true}
"""
SPEC = """apiVersion: breakglass/v1
kind: Drill
name: fork-pause-drill
playbook: {book}
actions:  # the compromised admin key, impersonated on the fork, moves funds out
  - {{from: "{admin}", to: "{attacker}", value: 1000000000000000000}}
expectations:
  paused: [vault, bridge]
  messages_to: [desk]
  times: {{pause_confirmed: 2m}}
"""
PAUSED = "0x5c975abb"


def _files(tmp: Path, chain) -> tuple[Path, Path, Path]:
    (tmp / "book").mkdir()
    book = tmp / "book" / "fork-pause.yaml"
    book.write_text(BOOK)
    shutil.copytree(REPO / "playbooks" / "templates", tmp / "book" / "templates")
    (tmp / "book" / "drills").mkdir()
    spec = tmp / "book" / "drills" / "fork-pause.yaml"
    spec.write_text(SPEC.format(book=book, admin=chain.addresses["fixture:admin"], attacker=chain.addresses["fixture:attacker"]))
    return book, spec, live_inventory(tmp, chain, extra=EXTRA)


def _paused(rpc, address: str) -> bool:
    return int(rpc.call("eth_call", [{"to": address, "data": PAUSED}, "latest"]), 16) == 1


def test_a_fork_drill_pauses_through_impersonation_and_catches_a_lost_role(prefect_api, chain, home, tmp_path) -> None:
    live = fresh_protocol(chain)  # "anvil A": the live chain, as far as the drill knows
    hits: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    Thread(target=server.serve_forever, daemon=True).start()
    env = {"BG_TEST_HOOK_URL": f"http://127.0.0.1:{server.server_port}/", "BG_TEST_HOOK_SECRET": "hook-secret",
           "BG_TEST_GUARDIAN_KEY": ""}  # no key: the drill must not need one
    book, spec, inventory = _files(tmp_path, live)
    with live.rpc() as rpc:
        attacker_before = int(rpc.call("eth_getBalance", [live.addresses["fixture:attacker"], "latest"]), 16)
    try:
        first = cli("drill", str(book), "--inventory", str(inventory), "--fork-url", live.url, "--json", env=env,
                    timeout=240)
        assert first.returncode == 0, first.stderr
        record = json.loads(first.stdout)
        assert record["mode"] == "drill" and record["status"] == "completed"
        assert "scorecard: " in first.stderr and "gap:" not in first.stderr
        pause = next(s for s in record["steps"] if s["id"] == "pause")["outputs"]["results"]
        assert {r["contract"]: r["status"] for r in pause} == {"vault": "paused", "bridge": "paused"}
        with live.rpc() as rpc:  # the fork was paused; the live chain was not touched
            assert not _paused(rpc, live.addresses["fixture:vault"])
            assert int(rpc.call("eth_getBalance", [live.addresses["fixture:attacker"], "latest"]), 16) == attacker_before
        log = [json.loads(line) for line in (home / "incidents" / record["incident"] / "audit.jsonl").read_text().splitlines()]
        moved = next(e for e in log if e["event"] == "drill.action")
        assert moved["status"] == "mined" and moved["sender"].lower() == live.addresses["fixture:admin"].lower()
        assert hits == []  # the live inventory's webhook was never called: the drill outbox got it instead
        assert [d["channel"] for d in record["steps"][1]["outputs"]["deliveries"]] == ["outbox"]

        with live.rpc() as rpc:  # config drift on the live chain: the guardian loses its role
            role = keccak(text="GUARDIAN_ROLE")
            for contract in ("vault", "bridge"):
                data = "0xd547741f" + role.hex() + live.addresses["fixture:guardian"][2:].lower().rjust(64, "0")
                mined(rpc, {"from": live.addresses["fixture:admin"], "to": live.addresses[f"fixture:{contract}"],
                            "data": data})
        spec.write_text(spec.read_text() + "fork: {url_env: BG_TEST_LIVE_RPC}\n")  # the spec's chain setup this time
        second = cli("drill", str(book), "--inventory", str(inventory), env={**env, "BG_TEST_LIVE_RPC": live.url},
                     timeout=240)
        assert second.returncode == 2, second.stderr
        gap = next(line for line in second.stderr.splitlines() if "gap: step pause completed" in line)
        assert "observed failed" in gap and "AccessControlUnauthorizedAccount" in gap  # the gap says why
        assert "AccessControlUnauthorizedAccount" in second.stderr and "Traceback" not in second.stderr
    finally:
        server.shutdown()


def test_fork_drill_inputs_are_checked_before_anything_starts(prefect_api, chain, tmp_path) -> None:
    book, spec, inventory = _files(tmp_path, chain)
    gone = cli("drill", str(book), "--inventory", str(inventory), "--fork-url", "http://127.0.0.1:9/secret-key-123")
    assert gone.returncode == 1 and "does not answer" in gone.stderr and "secret-key-123" not in gone.stderr
    future = cli("drill", str(book), "--inventory", str(inventory), "--fork-url", chain.url, "--fork-block", "99999999")
    assert future.returncode == 1 and "in the future" in future.stderr
    spec.write_text(spec.read_text() + "fork: {url_env: BG_TEST_LIVE_RPC, block: 99999999}\n")
    in_spec = cli("drill", str(book), "--inventory", str(inventory), env={"BG_TEST_LIVE_RPC": chain.url})
    line = len(spec.read_text().splitlines())
    assert in_spec.returncode == 1 and f"fork-pause.yaml:{line}:" in in_spec.stderr and "in the future" in in_spec.stderr
    wrong = inventory.read_text().replace("chain_id: 31337", "chain_id: 1")
    other = tmp_path / "mainnet.yaml"
    other.write_text(wrong)
    mismatch = cli("drill", str(book), "--inventory", str(other), "--fork-url", chain.url)
    assert mismatch.returncode == 1 and "serves chain id 31337" in mismatch.stderr
    drill_copy = tmp_path / "drill-copy.yaml"
    drill_copy.write_text(inventory.read_text().replace("name: test-live\n", "name: test-drill\nmode: drill\n")
                          .replace("- env: BG_TEST_RPC_URL", "- fixture: anvil"))
    drill_inv = cli("drill", str(book), "--inventory", str(drill_copy), "--fork-url", chain.url)
    assert drill_inv.returncode == 1 and "needs the live one" in drill_inv.stderr


TRIGGERED = """apiVersion: breakglass/v1
kind: Playbook
name: fork-then-live
description: pause the vault when the monitor says it drains
severity: critical
triggers:
  - source: alertmanager
    match: {title: "*drain*", address_in: [vault]}
steps:
  - {id: pause, kind: pause, timeout: 60s, with: {contracts: [vault], signer: guardian}}
"""
SOURCES = """alert_sources:
  alertmanager: {kind: alertmanager, token_env: BG_TEST_ALERTMANAGER_TOKEN}
"""


@pytest.mark.slow
def test_a_fork_drill_then_the_live_run_at_once_pauses_live_with_one_transaction(prefect_api, chain, home,
                                                                                tmp_path) -> None:
    """The audit's reproduction: a fork drill of the live inventory (private `submit:` set), then the live
    run straight after. The drill's signer state is its own; the live pause lands with exactly one transaction."""
    from tests.conftest import dev_key
    from tests.helpers.rpc_proxy import RpcProxy

    live = fresh_protocol(chain)
    guardian, vault = live.addresses["fixture:guardian"], live.addresses["fixture:vault"]
    book = tmp_path / "fork-then-live.yaml"
    book.write_text(TRIGGERED)  # a playbook with triggers: the fork inventory keeps the alert sources they name
    reads, private = RpcProxy(live.url), RpcProxy(live.url)
    try:
        inventory = live_inventory(tmp_path, live, chain_extra="    submit: [{env: BG_TEST_SUBMIT_URL}]\n", extra=SOURCES)
        env = {"BG_TEST_RPC_URL": reads.url, "BG_TEST_SUBMIT_URL": private.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")}
        with live.rpc() as rpc:
            start = int(rpc.call("eth_getTransactionCount", [guardian, "latest"]), 16)
            before = {p.name for p in (home / "signers").glob(f"*{guardian.lower()}.json")}  # other tests' records
            drill = cli("drill", str(book), "--inventory", str(inventory), "--fork-url", live.url, "--json",
                        env={**env, "BG_TEST_GUARDIAN_KEY": ""}, timeout=240)
            assert drill.returncode == 0, drill.stderr[-3000:]
            paused_on_fork = json.loads(drill.stdout)["steps"][0]["outputs"]["results"][0]
            assert paused_on_fork["status"] == "paused"
            # the fork drill never touched the live chain, nor the private endpoint
            assert int(rpc.call("eth_getTransactionCount", [guardian, "latest"]), 16) == start
            assert not _paused(rpc, vault) and private.methods == []
            records = sorted(p.name for p in (home / "signers").glob(f"*{guardian.lower()}.json") if p.name not in before)
            assert records and all(name.startswith("drill-") for name in records), records  # its own scope

            run = cli("run", str(book), "--inventory", str(inventory), "--yes", "--json", env=env, timeout=120)
            assert run.returncode == 0, run.stderr[-3000:]
            result = json.loads(run.stdout)["steps"][0]["outputs"]["results"][0]
            assert result["status"] == "paused" and result["submitted_via"] == "submit:env:BG_TEST_SUBMIT_URL#0"
            assert _paused(rpc, vault)
            assert int(rpc.call("eth_getTransactionCount", [guardian, "latest"]), 16) == start + 1  # exactly one
            assert private.methods.count("eth_sendRawTransaction") == 1
            landed = rpc.call("eth_getTransactionByHash", [result["tx_hash"]])
            assert int(landed["nonce"], 16) == start  # at the chain's nonce, not above it
    finally:
        reads.close()
        private.close()


def test_every_library_playbook_validates_against_the_fork_drill_inventory(tmp_path) -> None:
    """The inventory a fork drill derives from the example keeps the alert sources the playbooks' triggers name."""
    import yaml

    from breakglass.flows.drills import fork as forkdrill
    from breakglass.flows.spec.validate import load_playbook

    derived = forkdrill.derive(yaml.safe_load((REPO / "playbooks" / "inventories" / "example.yaml").read_text()))
    assert derived["alert_sources"] and derived["mode"] == "drill"
    assert all("submit" not in c for c in derived["chains"].values())
    inventory = tmp_path / "fork-inventory.yaml"
    inventory.write_text(yaml.safe_dump(derived, sort_keys=False))
    books = sorted((REPO / "playbooks").glob("*.yaml"))
    assert sum("\ntriggers:" in b.read_text() for b in books) >= 5
    for book in books:
        playbook, _ = load_playbook(book, inventory)  # raises with every problem, file:line
        assert playbook.name
