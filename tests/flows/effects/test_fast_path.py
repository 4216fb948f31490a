"""Pre-signed pauses: broadcast by the run entry point before Prefect, never when stale."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from breakglass.flows.errors import SpecError
from breakglass.flows.spec.validate import load_playbook
from tests.conftest import cli, dev_key, fresh_protocol, live_inventory, mined

PREPARED = """apiVersion: breakglass/v1
kind: Playbook
name: fast
description: t
severity: critical
steps:
  - {id: pause, kind: pause, timeout: 60s, with: {contracts: [vault, bridge], signer: guardian, prepared: true}}
"""


def _setup(chain, tmp: Path) -> tuple[Path, Path, dict[str, str]]:
    inventory = live_inventory(tmp, chain)
    playbook = tmp / "fast.yaml"
    playbook.write_text(PREPARED)
    return playbook, inventory, {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")}


def _count(chain, who: str = "fixture:guardian") -> int:
    with chain.rpc() as rpc:
        return int(rpc.call("eth_getTransactionCount", [chain.addresses[who], "latest"]), 16)


def _prepare(playbook: Path, inventory: Path, env: dict[str, str]) -> dict:
    result = cli("prepare", str(playbook), "--inventory", str(inventory), "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_prepared_pauses_go_out_from_the_entry_point_and_are_reconciled(prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    playbook, inventory, env = _setup(chain, tmp_path)
    prepared = _prepare(playbook, inventory, env)
    start = _count(chain)
    assert prepared["prepared"][0]["steps"][0]["prepared"] == [["vault", start], ["bridge", start + 1]]
    stored = list((home / "prepared" / "test-live" / "fast").glob("*.bin"))
    assert stored and b'"raw"' not in stored[0].read_bytes() and b'"nonce"' not in stored[0].read_bytes()  # encrypted at rest
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    results = record["steps"][0]["outputs"]["results"]
    assert all(r["fast_path"].startswith("sent from the prepared transaction") for r in results)
    assert _count(chain) == start + 2
    run_dir = home / "incidents" / record["incident"] / "runs" / record["run_id"]
    report = json.loads((run_dir / "fastpath.json").read_text())
    assert [s["contract"] for s in report["sent"]] == ["vault", "bridge"] and report["stale"] == []
    assert [r["tx_hash"] for r in results] == [s["hash"] for s in report["sent"]]


def test_a_used_nonce_makes_the_prepared_pause_stale_and_the_step_signs_afresh(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    playbook, inventory, env = _setup(chain, tmp_path)
    _prepare(playbook, inventory, env)
    with chain.rpc() as rpc:  # the guardian sends something else: the prepared nonce is gone
        mined(rpc, {"from": chain.addresses["fixture:guardian"], "to": chain.addresses["fixture:bob"], "value": "0x1"})
    start = _count(chain)
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["steps"][0]["outputs"]["results"]
    assert all("is no longer next" in r["fast_path"] for r in results)
    assert all(r["status"] == "paused" for r in results)
    assert _count(chain) == start + 2


def test_fee_cap_below_base_fee_is_never_broadcast(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    inventory = live_inventory(tmp_path, chain, chain_extra="    fees: {max_fee_gwei: 50, priority_fee_gwei: 1}\n")
    playbook = tmp_path / "fast.yaml"
    playbook.write_text(PREPARED)
    env = {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")}
    _prepare(playbook, inventory, env)
    with chain.rpc() as rpc:
        rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(60 * 10**9)])
        rpc.call("evm_mine")
        start = _count(chain)
        result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
        rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(10**9)])
        rpc.call("evm_mine")
    record = json.loads(result.stdout)
    step = record["steps"][0]
    assert step["status"] == "failed", step
    results = step["outputs"]["results"]
    assert all("is below the base fee" in r["fast_path"] for r in results)
    assert _count(chain) == start  # nothing prepared went out, and a fresh pause cannot pay either
    assert result.returncode == 2


def test_kill_9_after_the_fast_path_then_resume_records_exactly_one_pause_each(prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    playbook, inventory, env = _setup(chain, tmp_path)
    _prepare(playbook, inventory, env)
    start = _count(chain)
    incident = f"INC-fast-{time.monotonic_ns()}"
    killed = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--incident", incident,
                 env={**env, "BREAKGLASS_TEST_CRASH_AT": "fastpath.after_broadcast"})
    assert killed.returncode == -9
    result = cli("resume", incident, "--json", env=env)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["steps"][0]["outputs"]["results"]
    assert [r["status"] for r in results] == ["paused", "paused"]
    assert _count(chain) == start + 2  # the vault's prepared pause (sent before the kill), then the bridge's


def test_tampered_prepared_file_is_never_used(prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    playbook, inventory, env = _setup(chain, tmp_path)
    _prepare(playbook, inventory, env)
    path = next((home / "prepared" / "test-live" / "fast").glob("*.bin"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["steps"][0]["outputs"]["results"]
    assert all("nothing prepared" in r["fast_path"] for r in results)


def test_a_prepared_pause_can_wait_only_for_gates(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PREPARED.replace("{id: pause, kind: pause,", "{id: pause, kind: pause, needs: [w],")
                    + "  - {id: w, kind: wait, with: {seconds: 1}}\n")
    with pytest.raises(SpecError, match="a prepared pause may wait only for approval gates"):
        load_playbook(path)


def test_staleness_rules() -> None:
    from breakglass.flows.effects.prepared import PreparedTx, _stale
    from breakglass.flows.language.inventory import Inventory

    inventory = Inventory.model_validate({"apiVersion": "breakglass/v1", "kind": "Inventory", "name": "t", "chains": {
        "ethereum": {"chain_id": 1, "block_time": 12, "rpc": [{"env": "X"}]}}})
    genesis = "0x" + "44" * 32
    tx = PreparedTx("vault", "ethereum", 1, "0x" + "11" * 20, "0x" + "22" * 20, "0x8456cb59", 7, 50_000, 100 * 10**9,
                    10**9, "0x00", "0x" + "33" * 32, "now", genesis=genesis)
    second = PreparedTx("bridge", "ethereum", 1, "0x" + "11" * 20, "0x" + "55" * 20, "0x8456cb59", 8, 50_000, 100 * 10**9,
                        10**9, "0x00", "0x" + "66" * 32, "now", genesis=genesis)
    block, block0 = {"baseFeePerGas": hex(10**9)}, {"hash": genesis}
    group = [tx, second]
    assert _stale(tx, group, "0x1", "0x7", block, block0, inventory) is None
    assert _stale(second, group, "0x1", "0x7", block, block0, inventory) is None
    assert "the RPC answers 10" in _stale(tx, group, "0xa", "0x7", block, block0, inventory)
    assert "nonce 7 is no longer next" in _stale(tx, group, "0x1", "0x8", block, block0, inventory)
    # each contract's note quotes its own prepared nonce, never the first contract's
    assert "nonce 8 is no longer next" in _stale(second, group, "0x1", "0x8", block, block0, inventory)
    assert "below the base fee" in _stale(tx, group, "0x1", "0x7", {"baseFeePerGas": hex(101 * 10**9)}, block0, inventory)
    # a fork or a reset chain answers the same chain id with another genesis hash: never sent there
    assert "another instance of chain 1" in _stale(tx, group, "0x1", "0x7", block, {"hash": "0x" + "99" * 32}, inventory)
