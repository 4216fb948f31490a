"""Pre-flight: `check` reports every contract's row without crashing on one; `run` refuses before signing
when an address has no code, and before starting when variables are unset (all of them named at once)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from breakglass.flows.readiness import rows as checkrows
from tests.conftest import REPO, Chain, cli, dev_key, fresh_protocol

pytestmark = pytest.mark.slow

NO_CODE = "0x00000000000000000000000000000000DeaDBeef"


def _inventory(tmp: Path, chain: Chain, contracts: str, extra: str = "") -> Path:
    a = chain.addresses
    path = tmp / "inventories" / "live.yaml"  # playbooks/inventories/ layout: check finds the playbooks beside it
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"""apiVersion: breakglass/v1
kind: Inventory
name: preflight
chains:
  ethereum:
    chain_id: 31337
    block_time: 1s
    rpc: [{{env: BG_TEST_RPC_URL}}]
    multicall3: "{a['fixture:multicall']}"
contracts:
{contracts}signers:
  guardian: {{kind: env, env: BG_TEST_GUARDIAN_KEY, address: "{a['fixture:guardian']}"}}
  intruder: {{kind: env, env: BG_TEST_INTRUDER_KEY, address: "{a['fixture:attacker']}"}}
{extra}""")
    return path


def _env(chain: Chain, **extra: str) -> dict[str, str]:
    return {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"),
            "BG_TEST_INTRUDER_KEY": dev_key("attacker"), **extra}


def _count(chain: Chain) -> int:
    with chain.rpc() as rpc:
        return int(rpc.call("eth_getTransactionCount", [chain.addresses["fixture:guardian"], "latest"]), 16)


def test_check_reports_every_contract_row_and_exits_2_without_a_traceback(chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    with chain.rpc() as rpc:  # the pool behind an EIP-1967 proxy slot: the implementation is read and shown
        rpc.call("anvil_setStorageAt", [a["fixture:pool"], checkrows.IMPLEMENTATION_SLOT, "0x" + a["fixture:vault"][2:].lower().rjust(64, "0")])
    inventory = _inventory(tmp_path, chain, f"""  vault: {{chain: ethereum, address: "{a['fixture:vault']}", guardian: guardian}}
  bridge-config: {{chain: ethereum, address: "{a['fixture:bridge-config']}", guardian: guardian, pause: {{function: "pause(string)", args: [breakglass]}}}}
  pool:
    chain: ethereum
    address: "{a['fixture:pool']}"
    guardian: guardian
    pause: [{{function: "pause(bool,bool,bool,bool,bool)", args: [true, true, true, true, true]}}, {{function: "setPaused(bool)", args: [true]}}]
    paused: [{{view: "pausedFlags()(uint256)", paused_when: {{bits: 31}}}}, {{view: "getPausedState()(bool,uint256,uint256)"}}]
  ghost: {{chain: ethereum, address: "{NO_CODE}", guardian: guardian}}
  bridge: {{chain: ethereum, address: "{a['fixture:bridge']}", guardian: guardian, pause: "halt()", paused: "isHalted()"}}
  market: {{chain: ethereum, address: "{a['fixture:market']}", guardian: intruder}}
""")
    result = cli("check", str(inventory), "--json", env=_env(chain))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    findings = json.loads(result.stdout)["findings"]
    rows = {(f["subject"], f["check"]): (f["status"], f["detail"]) for f in findings}
    for name in ("vault", "bridge-config", "pool"):
        assert all(rows[(f"contract {name}", c)][0] == "ok" for c in ("code", "paused view", "not paused", "guardian can pause",
                                                                       "guardian balance")), name
    assert "proxy" in rows[("contract pool", "code")][1] and a["fixture:vault"].lower() in rows[("contract pool", "code")][1]
    assert rows[("contract pool", "pause window")][0] == "ok"
    assert rows[("contract ghost", "code")][0] == "fail" and "no contract code at" in rows[("contract ghost", "code")][1]
    assert rows[("contract bridge", "paused view")][0] == "fail" and "isHalted()" in rows[("contract bridge", "paused view")][1]
    status, detail = rows[("contract market", "guardian can pause")]
    assert status == "fail" and "AccessControlUnauthorizedAccount(" in detail
    assert rows[("signer guardian", "balance on ethereum")][0] == "ok"
    failed = {s for s, _ in rows if rows[(s, _)][0] == "fail"}
    assert failed == {"contract ghost", "contract bridge", "contract market"}


def test_check_reports_a_closed_pause_window_where_the_simulation_reverts(chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    inventory = _inventory(tmp_path, chain, f"""  pool:
    chain: ethereum
    address: "{a['fixture:pool']}"
    guardian: guardian
    pause: {{function: "setPaused(bool)", args: [true]}}
    paused: {{view: "getPausedState()(bool,uint256,uint256)", result: 0}}
""")
    with chain.rpc() as rpc:
        rpc.call("evm_increaseTime", [91 * 86400])
        rpc.call("evm_mine")
    result = cli("check", str(inventory), "--json", env=_env(chain))
    assert result.returncode == 2, result.stderr
    rows = {(f["subject"], f["check"]): (f["status"], f["detail"]) for f in json.loads(result.stdout)["findings"]}
    assert rows[("contract pool", "guardian can pause")][0] == "fail"
    assert "PauseWindowExpired" in rows[("contract pool", "guardian can pause")][1]
    assert rows[("contract pool", "pause window")][0] == "fail" and "closed" in rows[("contract pool", "pause window")][1]


def test_check_names_every_missing_variable_with_the_playbooks_it_blocks(chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    inventory = _inventory(tmp_path, chain, f"""  vault: {{chain: ethereum, address: "{a['fixture:vault']}", guardian: guardian}}
""", extra="""channels:
  slack: {kind: slack, token_env: BG_TEST_UNSET_SLACK}
contacts:
  war-room: {kind: internal, channels: [{via: slack, to: "#war"}], last_verified: 2026-11-01}
templates:
  war-room-alert: {approved: true}
""")
    inventory.write_text(inventory.read_text().replace("rpc: [{env: BG_TEST_RPC_URL}]",
                                                       "rpc: [{env: BG_TEST_RPC_URL}, {env: BG_TEST_UNSET_BACKUP}]"))
    shutil.copytree(REPO / "playbooks" / "templates", tmp_path / "templates")
    (tmp_path / "pause.yaml").write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: pause-only\ndescription: t\n"
                                         "severity: critical\nsteps:\n  - {id: p, kind: pause, with: {contracts: [vault], signer: guardian}}\n")
    (tmp_path / "tell.yaml").write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: tell\ndescription: t\nseverity: high\n"
                                        "steps:\n  - {id: t, kind: notify, with: {template: war-room-alert, to: [war-room], "
                                        "data: {summary: x}}}\n")
    result = cli("check", str(inventory), "--json", env=_env(chain))
    assert result.returncode == 2, result.stderr
    rows = {f["subject"]: f for f in json.loads(result.stdout)["findings"] if f["subject"].startswith("env ")}
    assert set(rows) == {"env BG_TEST_UNSET_BACKUP", "env BG_TEST_UNSET_SLACK"}
    assert rows["env BG_TEST_UNSET_BACKUP"]["detail"].endswith("blocks pause-only")
    assert rows["env BG_TEST_UNSET_SLACK"]["detail"].endswith("blocks tell")
    chain_row = next(f for f in json.loads(result.stdout)["findings"] if f["subject"] == "chain ethereum")
    assert chain_row["status"] == "ok"  # the primary answers: an unset backup is its own row, not "not reachable"


def test_run_refuses_an_address_without_code_before_signing(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    inventory = _inventory(tmp_path, chain, f"""  vault: {{chain: ethereum, address: "{a['fixture:vault']}", guardian: guardian}}
  ghost: {{chain: ethereum, address: "{NO_CODE}", guardian: guardian}}
""")
    playbook = tmp_path / "pause.yaml"
    playbook.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: p\ndescription: t\nseverity: critical\nsteps:\n"
                        "  - {id: p, kind: pause, with: {contracts: [vault, ghost], signer: guardian}}\n")
    before = _count(chain)
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"no contract code at ghost ({NO_CODE} on ethereum)" in result.stderr and "nothing was signed" in result.stderr
    assert _count(chain) == before  # the guardian's nonce is unchanged


def test_run_with_unset_channel_variables_refuses_before_start_naming_them_all(prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    inventory = _inventory(tmp_path, chain, f"""  vault: {{chain: ethereum, address: "{a['fixture:vault']}", guardian: guardian}}
""", extra="""channels:
  slack: {kind: slack, token_env: BG_TEST_UNSET_SLACK}
  hook: {kind: webhook, url_env: BG_TEST_UNSET_HOOK_URL, secret_env: BG_TEST_UNSET_HOOK_SECRET}
contacts:
  war-room: {kind: internal, channels: [{via: slack, to: "#war"}, {via: hook}], last_verified: 2026-11-01}
templates:
  war-room-alert: {approved: true}
""")
    shutil.copytree(REPO / "playbooks" / "templates", tmp_path / "templates")
    playbook = tmp_path / "tell.yaml"
    playbook.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: tell\ndescription: t\nseverity: high\nsteps:\n"
                        "  - {id: p, kind: pause, with: {contracts: [vault], signer: guardian}}\n"
                        "  - {id: t, kind: notify, needs: [p], with: {template: war-room-alert, to: [war-room], data: {summary: x}}}\n")
    incidents = set((home / "incidents").glob("*")) if (home / "incidents").exists() else set()
    before = _count(chain)
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert result.returncode == 1, result.stderr
    for var in ("BG_TEST_UNSET_SLACK", "BG_TEST_UNSET_HOOK_URL", "BG_TEST_UNSET_HOOK_SECRET"):
        assert var in result.stderr
    assert "3 environment variable(s)" in result.stderr and "Traceback" not in result.stderr
    assert _count(chain) == before
    assert (set((home / "incidents").glob("*")) if (home / "incidents").exists() else set()) == incidents  # no run created


def test_serve_readyz_names_every_missing_credential_and_logs_refused_alerts(prefect_api, chain, home, tmp_path,
                                                                            monkeypatch, caplog) -> None:
    from fastapi.testclient import TestClient

    from breakglass.flows.service import intake
    from breakglass.flows.service import serve as serve_mod

    chain = fresh_protocol(chain)
    a = chain.addresses
    inventory = _inventory(tmp_path, chain, f"""  vault: {{chain: ethereum, address: "{a['fixture:vault']}", guardian: guardian}}
""", extra="""channels:
  slack: {kind: slack, token_env: BG_TEST_UNSET_SLACK}
contacts:
  war-room: {kind: internal, channels: [{via: slack, to: "#war"}], last_verified: 2026-11-01}
alert_sources:
  oz: {kind: oz-monitor, secret_env: BG_TEST_UNSET_OZ}
  tenderly: {kind: tenderly, secret_env: BG_TEST_SET_TENDERLY}
  generic: {kind: generic, token_env: BG_TEST_UNSET_GENERIC}
""")
    books = tmp_path / "books"
    books.mkdir()
    for var, value in _env(chain, BG_TEST_SET_TENDERLY="s3cret").items():
        monkeypatch.setenv(var, value)
    service = serve_mod.Service(home, inventory, books, prefect_api)
    doc = service.ready()
    assert doc["ready"] is False
    missing = [p for p in doc["problems"] if "is not set" in p]
    assert len(missing) == 3
    for var in ("BG_TEST_UNSET_OZ", "BG_TEST_UNSET_GENERIC", "BG_TEST_UNSET_SLACK"):
        assert any(var in p for p in missing), var
    assert not any("BG_TEST_SET_TENDERLY" in p for p in doc["problems"])

    monkeypatch.setattr(intake, "REFUSAL_LINES", intake.RefusalLines(interval=60))
    client = TestClient(serve_mod.app(service))
    secret_body = '{"secret-looking": "do-not-log-me"}'
    with caplog.at_level("WARNING", logger="breakglass.intake"):
        for _ in range(3):
            answer = client.post("/alerts/oz", content=secret_body, headers={"Content-Type": "application/json"})
            assert answer.status_code in (401, 403)
    lines = [r.getMessage() for r in caplog.records if r.name == "breakglass.intake"]
    assert len(lines) == 1  # rate-limited: one line for three refusals within the interval
    assert "source=oz" in lines[0] and f"status={answer.status_code}" in lines[0] and "reason=" in lines[0]
    assert "do-not-log-me" not in caplog.text


def test_the_fast_path_never_broadcasts_to_an_address_without_code(prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    inventory = _inventory(tmp_path, chain, f"""  vault: {{chain: ethereum, address: "{a['fixture:vault']}", guardian: guardian}}
""")
    playbook = tmp_path / "fast.yaml"
    playbook.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: fast\ndescription: t\nseverity: critical\nsteps:\n"
                        "  - {id: p, kind: pause, timeout: 60s, with: {contracts: [vault], signer: guardian, prepared: true}}\n")
    prepared = cli("prepare", str(playbook), "--inventory", str(inventory), "--json", env=_env(chain))
    assert prepared.returncode == 0, prepared.stderr
    assert json.loads(prepared.stdout)["prepared"][0]["steps"][0]["prepared"] == [["vault", _count(chain)]]
    with chain.rpc() as rpc:  # the contract is gone (or the inventory now points at the wrong chain)
        rpc.call("anvil_setCode", [a["fixture:vault"], "0x"])
    before = _count(chain)
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert result.returncode == 2, result.stderr
    record = json.loads(result.stdout)
    vault = record["steps"][0]["outputs"]["results"][0]
    assert vault["status"] == "failed" and "no contract code" in vault["fast_path"]
    assert "answered nothing" in vault["note"]
    assert _count(chain) == before  # neither the prepared pause nor a fresh one went out
    again = cli("prepare", str(playbook), "--inventory", str(inventory), "--json", env=_env(chain))
    skipped = json.loads(again.stdout)["prepared"][0]["steps"][0]
    assert skipped["prepared"] == [] and "no contract code" in skipped["skipped"][0]


def test_a_run_is_never_refused_for_what_only_serve_reads(tmp_path: Path) -> None:
    """Alert sources' credentials and the Slack app's secrets are read by `serve`, not by a run started by hand."""
    from breakglass.flows.readiness import preflight
    from breakglass.flows.spec.validate import load_playbook

    inventory_path = REPO / "playbooks" / "inventories" / "example.yaml"
    playbook, inventory = load_playbook(REPO / "playbooks" / "active-drain.yaml", inventory_path)
    assert playbook.triggers, "the test needs a playbook with triggers"
    run_needs = preflight.needed_env(inventory, playbook, service=False)
    serve_needs = preflight.needed_env(inventory, playbook)
    only_serve = set(serve_needs) - set(run_needs)
    assert only_serve and all("alert source" in serve_needs[v] or "Slack app" in serve_needs[v] for v in only_serve)
    assert not any("alert source" in what for what in run_needs.values())
