"""Pause and emergency transactions on a real anvil: exactly once across kill -9 at every point,
stuck transactions replaced at the same nonce, racing guardians, decoded reverts, and `check`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from eth_utils import keccak

from breakglass.flows.effects import fixture
from breakglass.integrations.chain import abi, anvil
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc
from tests.conftest import Chain, cli, dev_key, fresh_protocol, live_inventory, mined

PAUSED = abi.parse("paused()(bool)")


def _playbook(tmp: Path, body: str, name: str = "guard") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"apiVersion: breakglass/v1\nkind: Playbook\nname: {name}\ndescription: t\nseverity: critical\nsteps:\n{body}")
    return path


PAUSE_VAULT = "  - {id: pause, kind: pause, timeout: 60s, with: {contracts: [vault], signer: guardian}}\n"


def _is_paused(rpc: JsonRpc, address: str) -> bool:
    raw = rpc.call("eth_call", [{"to": address, "data": "0x" + PAUSED.encode().hex()}, "latest"])
    return PAUSED.decode(bytes.fromhex(raw[2:]))[0]


def _count(rpc: JsonRpc, address: str) -> int:
    return int(rpc.call("eth_getTransactionCount", [address, "latest"]), 16)


def _env(chain: Chain, **extra: str) -> dict[str, str]:
    return {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), **extra}


def _journal(home: Path, record: dict) -> list[dict]:
    path = home / "incidents" / record["incident"] / "runs" / record["run_id"] / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("point", ["tx.after_sign", "tx.after_broadcast", "tx.after_receipt"])
def test_kill_9_at_each_point_then_resume_lands_exactly_one_pause(point, prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    inventory = live_inventory(tmp_path, chain)
    playbook = _playbook(tmp_path, PAUSE_VAULT)
    guardian, vault = chain.addresses["fixture:guardian"], chain.addresses["fixture:vault"]
    incident = f"INC-kill-{point.replace('.', '-')}-{time.monotonic_ns()}"
    with chain.rpc() as rpc:
        before = _count(rpc, guardian)
        killed = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--incident", incident,
                     env=_env(chain, BREAKGLASS_TEST_CRASH_AT=point))
        assert killed.returncode == -9, killed.stderr
        if point == "tx.after_sign":
            assert _count(rpc, guardian) == before and not _is_paused(rpc, vault)
        result = cli("resume", incident, "--json", env=_env(chain))
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert _count(rpc, guardian) == before + 1  # exactly one transaction from the guardian
        assert _is_paused(rpc, vault)
    outputs = record["steps"][0]["outputs"]
    assert outputs["results"][0]["status"] == "paused" and outputs["results"][0]["tx_hash"]
    journal = _journal(home, record)
    assert len([e for e in journal if e["event"] == "signed"]) == 1
    assert not [e for e in journal if e["event"] == "replacement"]
    assert outputs["results"][0]["tx_hash"] == next(e["hash"] for e in journal if e["event"] == "signed")


def test_already_paused_contract_gets_no_transaction(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    inventory = live_inventory(tmp_path, chain)
    with chain.rpc() as rpc:
        mined(rpc, {"from": chain.addresses["fixture:guardian"], "to": chain.addresses["fixture:vault"],
                    "data": "0x" + abi.parse("pause()").encode().hex()})
        before = _count(rpc, chain.addresses["fixture:guardian"])
        result = cli("run", str(_playbook(tmp_path, PAUSE_VAULT)), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
        assert _count(rpc, chain.addresses["fixture:guardian"]) == before
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)["steps"][0]["outputs"]["results"][0]
    assert (out["status"], out["paused"], out["tx_hash"]) == ("already_paused", True, None)


def test_signer_without_the_role_fails_with_the_decoded_reason(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    inventory = live_inventory(tmp_path, chain, extra=f'  intruder: {{kind: env, env: BG_TEST_INTRUDER_KEY, address: "{a["fixture:attacker"]}"}}\n')
    playbook = _playbook(tmp_path, "  - {id: pause, kind: pause, with: {contracts: [vault], signer: intruder}}\n")
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json",
                 env=_env(chain, BG_TEST_INTRUDER_KEY=dev_key("attacker")))
    assert result.returncode == 2
    step = json.loads(result.stdout)["steps"][0]
    guardian_role = "0x" + keccak(text="GUARDIAN_ROLE").hex()
    assert step["status"] == "failed"
    assert f"AccessControlUnauthorizedAccount({a['fixture:attacker']}, {guardian_role})" in step["error"]
    assert step["outputs"]["results"][0]["status"] == "failed"


@pytest.fixture
def own_chain(tmp_path: Path):
    """A private anvil for tests that change how it mines (the core protocol only: these tests fill blocks by
    gas, and the library's contracts are not what they are about)."""
    node = anvil.start(log_dir=tmp_path / "anvil")
    try:
        with JsonRpc([Endpoint("t", node.url)]) as rpc:
            deployed = fixture.deploy(rpc, library=False)
        yield Chain(node.url, deployed.addresses, deployed.attack_tx, node)
    finally:
        node.stop()


def test_stuck_pause_is_replaced_at_the_same_nonce_and_lands(prefect_api, own_chain, home, tmp_path) -> None:
    chain = own_chain
    a = chain.addresses
    fees = "    fees: {max_fee_gwei: 5000, priority_fee_gwei: 1, bump_after_blocks: 2, bump_percent: 200}\n"
    inventory = live_inventory(tmp_path, chain, chain_extra=fees)
    stop = threading.Event()
    senders = [a[f"fixture:{n}"] for n in ("user", "alice", "bob", "carol", "relayer", "deployer")]

    def traffic() -> None:  # higher-tip transfers that fill every block (anvil orders its pool by max fee: these
        # stay below what the bumped pause reaches under its cap, so it outbids them within a few bumps)
        with JsonRpc([Endpoint("t", chain.url)]) as rpc:
            while not stop.is_set():
                for sender in senders:
                    rpc.call("eth_sendTransaction", [{"from": sender, "to": a["fixture:bob"], "value": "0x1", "gas": hex(21000),
                                                      "maxPriorityFeePerGas": hex(2 * 10**9), "maxFeePerGas": hex(300 * 10**9)}])
                time.sleep(0.3)

    with chain.rpc() as rpc:
        rpc.call("evm_setBlockGasLimit", [hex(100_000)])
        rpc.call("evm_setAutomine", [False])
        rpc.call("evm_setIntervalMining", [1])
        before = _count(rpc, a["fixture:guardian"])
        worker = threading.Thread(target=traffic, daemon=True)
        worker.start()
        try:
            result = cli("run", str(_playbook(tmp_path, PAUSE_VAULT)), "--inventory", str(inventory), "--yes", "--json",
                         env=_env(chain), timeout=120)
        finally:
            stop.set()
            worker.join()
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        out = record["steps"][0]["outputs"]["results"][0]
        journal = _journal(home, record)
        signed = [e for e in journal if e["event"] in ("signed", "replacement")]
        assert len(signed) >= 2, journal
        assert len({e["nonce"] for e in signed}) == 1  # every replacement at the same nonce
        assert out["tx_hash"] in [e["hash"] for e in signed[1:]]  # a replacement is what landed
        assert out["transactions"] == [e["hash"] for e in signed]
        for older, newer in zip(signed, signed[1:], strict=False):
            assert newer["tip"] >= older["tip"] * 1.125 and newer["max_fee"] >= older["max_fee"] * 1.125
        assert _count(rpc, a["fixture:guardian"]) == before + 1
        assert _is_paused(rpc, a["fixture:vault"])


def test_two_guardians_racing_end_with_one_pause(prefect_api, own_chain, tmp_path) -> None:
    chain = own_chain
    a = chain.addresses
    role = keccak(text="GUARDIAN_ROLE")
    grant = abi.parse("grantRole(bytes32,address)").encode([role, a["fixture:backup-guardian"]])
    extra = f'  backup: {{kind: env, env: BG_TEST_BACKUP_KEY, address: "{a["fixture:backup-guardian"]}"}}\n'
    inventory = live_inventory(tmp_path, chain, extra=extra)
    playbook = _playbook(tmp_path, "  - {id: a, kind: pause, timeout: 60s, with: {contracts: [vault], signer: guardian}}\n"
                                   "  - {id: b, kind: pause, timeout: 60s, with: {contracts: [vault], signer: backup}}\n")
    with chain.rpc() as rpc:
        mined(rpc, {"from": a["fixture:admin"], "to": a["fixture:vault"], "data": "0x" + grant.hex()})
        rpc.call("evm_setAutomine", [False])
        rpc.call("evm_setIntervalMining", [2])
        result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json",
                     env=_env(chain, BG_TEST_BACKUP_KEY=dev_key("backup-guardian")))
        assert result.returncode == 0, result.stderr
        steps = json.loads(result.stdout)["steps"]
        results = [s["outputs"]["results"][0] for s in steps]
        assert sorted(r["status"] for r in results) == ["already_paused", "paused"]
        assert all(r["paused"] for r in results)
        landed_ok = [r for r in results if r["tx_hash"] and int(rpc.call("eth_getTransactionReceipt", [r["tx_hash"]])["status"], 16)]
        assert len(landed_ok) == 1
        assert _is_paused(rpc, a["fixture:vault"])


def test_check_reports_a_ready_pause_path_then_a_broken_one(chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    inventory = live_inventory(tmp_path, chain)
    ok = cli("check", str(inventory), "--json", env=_env(chain))
    assert ok.returncode == 0, ok.stderr + ok.stdout
    findings = json.loads(ok.stdout)["findings"]
    assert {(f["subject"], f["check"]) for f in findings if f["status"] == "ok"} >= {
        ("chain ethereum", "rpc"), ("signer guardian", "unlock"), ("contract vault", "guardian can pause"),
        ("contract vault", "guardian balance"), ("contract bridge", "not paused")}
    revoke = abi.parse("revokeRole(bytes32,address)").encode([keccak(text="GUARDIAN_ROLE"), a["fixture:guardian"]])
    with chain.rpc() as rpc:
        mined(rpc, {"from": a["fixture:admin"], "to": a["fixture:vault"], "data": "0x" + revoke.hex()})
    broken = cli("check", str(inventory), "--json", env=_env(chain))
    assert broken.returncode == 2
    failed = [f for f in json.loads(broken.stdout)["findings"] if f["status"] == "fail"]
    assert [(f["subject"], f["check"]) for f in failed] == [("contract vault", "guardian can pause")]
    assert "AccessControlUnauthorizedAccount(" in failed[0]["detail"]
    poor = cli("check", str(inventory), "--pauses", "10000000000", "--json", env=_env(chain))
    assert any(f["check"] == "guardian balance" and f["status"] == "fail" for f in json.loads(poor.stdout)["findings"])
    wrong_key = cli("check", str(inventory), "--json", env=_env(chain, BG_TEST_GUARDIAN_KEY=dev_key("attacker")))
    signer = next(f for f in json.loads(wrong_key.stdout)["findings"] if f["subject"] == "signer guardian")
    assert signer["status"] == "fail" and "key belongs to" in signer["detail"]
    assert dev_key("attacker")[2:] not in wrong_key.stdout + wrong_key.stderr


def test_check_catches_a_wrong_chain_id(chain, tmp_path) -> None:
    inventory = live_inventory(tmp_path, chain)
    inventory.write_text(inventory.read_text().replace("chain_id: 31337", "chain_id: 10"))
    result = cli("check", str(inventory), "--json", env=_env(chain))
    assert result.returncode == 2
    rpc = next(f for f in json.loads(result.stdout)["findings"] if f["check"] == "rpc")
    assert rpc["detail"] == "env:BG_TEST_RPC_URL#0 answers chain id 31337, expected 10"


def test_broadcasts_go_to_the_private_submission_endpoint_only(prefect_api, chain, tmp_path) -> None:
    from tests.helpers.rpc_proxy import RpcProxy

    chain = fresh_protocol(chain)
    reads, private = RpcProxy(chain.url), RpcProxy(chain.url)
    try:
        inventory = live_inventory(tmp_path, chain, chain_extra="    submit: [{env: BG_TEST_SUBMIT_URL}]\n")
        result = cli("run", str(_playbook(tmp_path, PAUSE_VAULT)), "--inventory", str(inventory), "--yes", "--json",
                     env=_env(chain, BG_TEST_RPC_URL=reads.url, BG_TEST_SUBMIT_URL=private.url))
    finally:
        reads.close()
        private.close()
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)["steps"][0]["outputs"]["results"][0]
    assert out["submitted_via"] == "submit:env:BG_TEST_SUBMIT_URL#0"
    assert private.methods.count("eth_sendRawTransaction") == 1
    assert "eth_sendRawTransaction" not in reads.methods and "eth_call" in reads.methods
    assert set(private.methods) == {"eth_sendRawTransaction"}


def test_evicted_underpriced_pause_is_repriced_not_waited_on(prefect_api, own_chain, home, tmp_path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    chain = own_chain
    a = chain.addresses
    inventory = live_inventory(tmp_path, chain, chain_extra="    fees: {max_fee_gwei: 100000, priority_fee_gwei: 1, bump_after_blocks: 50}\n")
    incident = f"INC-evict-{time.monotonic_ns()}"
    with chain.rpc() as rpc:
        rpc.call("evm_setAutomine", [False])
        process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "run", str(_playbook(tmp_path, PAUSE_VAULT)),
                                    "--inventory", str(inventory), "--yes", "--incident", incident],
                                   env={**__import__("os").environ, **_env(chain)}, cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal_path = lambda: list((home / "incidents" / incident).glob("runs/*/journal.jsonl"))  # noqa: E731
        deadline = time.monotonic() + 60
        while not (journal_path() and '"broadcast"' in journal_path()[0].read_text()):
            assert time.monotonic() < deadline, "the pause was never broadcast"
            time.sleep(0.05)
        first = json.loads(journal_path()[0].read_text().splitlines()[0])
        rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(first["max_fee"] * 4)])  # the pause is now underpriced
        rpc.call("evm_mine")
        rpc.call("evm_setIntervalMining", [1])
        assert process.wait(timeout=90) == 0
        entries = [json.loads(line) for line in journal_path()[0].read_text().splitlines()]
        replacements = [e for e in entries if e["event"] == "replacement"]
        assert replacements and replacements[-1]["max_fee"] > first["max_fee"] * 4
        assert _is_paused(rpc, a["fixture:vault"])
        assert _count(rpc, a["fixture:guardian"]) == 1


def test_a_contract_without_a_pause_function_fails_clearly(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    inventory = live_inventory(tmp_path, chain)
    playbook = _playbook(tmp_path, "  - {id: pause, kind: pause, with: {contracts: [token], signer: guardian}}\n")
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert result.returncode == 2
    step = json.loads(result.stdout)["steps"][0]
    assert step["status"] == "failed" and step["error"].startswith("not paused: token: cannot read paused() on")
    assert "Traceback" not in result.stderr
