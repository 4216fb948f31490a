"""Nonce gaps on a real anvil: `check` names the signer while one exists, `status` shows the pause waiting
behind it, and the run heals it: the pause is re-signed at the lowest missing nonce and lands exactly once.
Also: a signer record whose transaction no node knows is stale and never signed above."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account

from breakglass.flows.effects import chainkey, fixture, noncegap, signerlock
from breakglass.integrations.chain import anvil
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc
from tests.conftest import REPO, Chain, cli, dev_key, live_inventory, wait_for

PAUSE = ("apiVersion: breakglass/v1\nkind: Playbook\nname: gap\ndescription: t\nseverity: critical\nsteps:\n"
         "  - {id: pause, kind: pause, timeout: 90s, with: {contracts: [vault], signer: guardian}}\n")
PAUSED = "0x5c975abb"


@pytest.fixture
def own_chain(tmp_path: Path):
    node = anvil.start(log_dir=tmp_path / "anvil")
    try:
        with JsonRpc([Endpoint("t", node.url)]) as rpc:
            deployed = fixture.deploy(rpc, library=False)
        yield Chain(node.url, deployed.addresses, deployed.attack_tx, node)
    finally:
        node.stop()


def _nonce(rpc: JsonRpc, address: str, tag: str = "latest") -> int:
    return int(rpc.call("eth_getTransactionCount", [address, tag]), 16)


def _queue_above_the_chain(rpc: JsonRpc, key: str, gap: int) -> tuple[str, int]:
    """A transaction of the guardian ``gap`` nonces above the chain's: the node holds it queued."""
    account = Account.from_key(key)
    nonce = _nonce(rpc, account.address) + gap
    signed = account.sign_transaction({"type": 2, "chainId": 31337, "nonce": nonce, "to": account.address, "value": 0,
                                       "gas": 21_000, "maxFeePerGas": 50 * 10**9, "maxPriorityFeePerGas": 10**9})
    return rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()]), nonce


def _env(chain: Chain) -> dict[str, str]:
    return {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")}


def _nonce_rows(result: subprocess.CompletedProcess[str]) -> list[dict]:
    return [f for f in json.loads(result.stdout)["findings"] if f["subject"] == "signer guardian"
            and f["check"] in ("nonce", "queued behind a gap", "signer record", "pending too long")]


@pytest.mark.slow
def test_a_nonce_gap_is_named_by_check_shown_by_status_and_healed_with_one_pause(prefect_api, own_chain, home,
                                                                                  tmp_path) -> None:
    chain = own_chain
    guardian, vault = chain.addresses["fixture:guardian"], chain.addresses["fixture:vault"]
    inventory = live_inventory(tmp_path, chain)
    inventory.write_text(inventory.read_text().replace("block_time: 1s", "block_time: 5s"))  # a gap is healed after 10 s
    playbook = tmp_path / "gap.yaml"
    playbook.write_text(PAUSE)
    with chain.rpc() as rpc:
        start = _nonce(rpc, guardian)
        queued_hash, queued_nonce = _queue_above_the_chain(rpc, dev_key("guardian"), 1)  # nonce start stays empty
        # ...and the signer record names it: proven (the pool shows it), so the run signs above it, behind the gap
        key = chainkey.key(rpc, 31337)
        signerlock.record_path(home, key, guardian).parent.mkdir(parents=True, exist_ok=True)
        signerlock.record_path(home, key, guardian).write_text(json.dumps(
            {"next": queued_nonce + 1, "hash": queued_hash, "at": time.time(), "block": 0}))

        before = cli("check", str(inventory), "--json", env=_env(chain))
        assert before.returncode == 2, before.stdout + before.stderr
        gap = next(f for f in _nonce_rows(before) if f["check"] == "queued behind a gap")
        assert gap["status"] == "fail" and f"at nonce {queued_nonce} wait behind a gap" in gap["detail"]
        assert f"the chain's nonce is {start}" in gap["detail"] and guardian in gap["detail"]

        incident = f"INC-gap-{time.monotonic_ns()}"
        process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "run", str(playbook), "--inventory",
                                    str(inventory), "--yes", "--json", "--incident", incident],
                                   env={**os.environ, **_env(chain)}, cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        journal_path = lambda: next((home / "incidents" / incident).glob("runs/*/journal.jsonl"), None)  # noqa: E731
        wait_for(lambda: journal_path() and '"behind_gap": true' in journal_path().read_text(), timeout=90,
                 what="the pause noted as waiting behind the gap")
        shown = cli("status", incident)
        text = " ".join(shown.stdout.split())  # rich wraps long lines at 80 columns off a terminal
        assert "QUEUED BEHIND A GAP" in text, shown.stdout + shown.stderr
        assert f"nonce {queued_nonce + 1}," in text and f"the chain's nonce is {start}" in text
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr[-3000:]
        result = json.loads(stdout)["steps"][0]["outputs"]["results"][0]
        assert result["status"] == "paused"
        assert int(rpc.call("eth_call", [{"to": vault, "data": PAUSED}, "latest"]), 16) == 1
        entries = [json.loads(line) for line in journal_path().read_text().splitlines()]
        signed = [e for e in entries if e["event"] in ("signed", "replacement")]
        assert [e["nonce"] for e in signed] == [queued_nonce + 1, start]  # above the gap, then re-signed at its bottom
        superseded = next(e for e in entries if e["event"] == "superseded")
        assert (superseded["hash"], superseded["by_nonce"]) == (signed[0]["hash"], start)
        cancel = next(e for e in entries if e["event"] == "cancel")
        assert cancel["nonce"] == queued_nonce + 1
        landed = [e["hash"] for e in signed if rpc.call("eth_getTransactionReceipt", [e["hash"]])]
        assert landed == [signed[1]["hash"]] == [result["tx_hash"]]  # exactly one pause landed
        # the queued transaction, then the no-op that took the superseded pause's nonce, landed after it
        wait_for(lambda: _nonce(rpc, guardian) == queued_nonce + 2, what="the gap filled")
        noop = rpc.call("eth_getTransactionReceipt", [cancel["hash"]])
        assert noop is not None and noop["to"].lower() == guardian.lower()

        after = cli("check", str(inventory), "--json", env=_env(chain))
        assert [f["status"] for f in _nonce_rows(after)] == ["ok"], after.stdout


@pytest.mark.slow
def test_a_signer_record_no_node_can_show_is_stale_and_never_signed_above(prefect_api, own_chain, home,
                                                                          tmp_path) -> None:
    chain = own_chain
    guardian = chain.addresses["fixture:guardian"]
    inventory = live_inventory(tmp_path, chain, chain_extra="    submit: [{env: BG_TEST_RPC_URL}]\n")
    playbook = tmp_path / "gap.yaml"
    playbook.write_text(PAUSE)
    with chain.rpc() as rpc:
        start = _nonce(rpc, guardian)
        key = chainkey.key(rpc, 31337)
        record = signerlock.record_path(home, key, guardian)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"next": start + 3, "hash": "0x" + "ab" * 32, "at": time.time(), "block": 0}))
        check = cli("check", str(inventory), "--json", env=_env(chain))
        assert check.returncode == 2
        stale = next(f for f in _nonce_rows(check) if f["check"] == "signer record")
        assert f"claims nonce {start + 3} is next, above the chain's {start}" in stale["detail"]
        result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
        assert result.returncode == 0, result.stderr[-3000:]
        assert _nonce(rpc, guardian) == start + 1  # signed at the chain's nonce, landed at once
    record_doc = json.loads(result.stdout)
    journal = home / "incidents" / record_doc["incident"] / "runs" / record_doc["run_id"] / "journal.jsonl"
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    note = next(e for e in entries if e["event"] == "stale_nonce_record")
    assert (note["claimed_next"], note["chain_nonce"]) == (start + 3, start)
    audit = (home / "incidents" / record_doc["incident"] / "audit.jsonl").read_text()
    assert "journal.stale_nonce_record" in audit
    assert [e["nonce"] for e in entries if e["event"] == "signed"] == [start]


@pytest.mark.slow
def test_check_names_a_signer_whose_transaction_is_pending_past_bump_after_blocks(own_chain, home, tmp_path) -> None:
    chain = own_chain
    guardian = chain.addresses["fixture:guardian"]
    inventory = live_inventory(tmp_path, chain, chain_extra="    fees: {max_fee_gwei: 500, bump_after_blocks: 3}\n")
    account = Account.from_key(dev_key("guardian"))
    with chain.rpc() as rpc:
        rpc.call("evm_setAutomine", [False])
        nonce = _nonce(rpc, guardian)
        signed = account.sign_transaction({"type": 2, "chainId": 31337, "nonce": nonce, "to": guardian, "value": 0,
                                           "gas": 21_000, "maxFeePerGas": 50 * 10**9, "maxPriorityFeePerGas": 10**9})
        tx_hash = rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        rpc.call("evm_setBlockGasLimit", [hex(20_000)])  # below a transfer's 21,000: it stays pending
        sent_at = int(rpc.call("eth_blockNumber"), 16)
        key = chainkey.key(rpc, 31337)
        record = signerlock.record_path(home, key, guardian)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"next": nonce + 1, "hash": tx_hash, "at": time.time(), "block": sent_at}))
        for _ in range(2):
            rpc.call("evm_mine")
        young = cli("check", str(inventory), "--json", env=_env(chain))
        assert [f["check"] for f in _nonce_rows(young)] == ["nonce"], young.stdout  # 2 blocks: not yet
        for _ in range(3):
            rpc.call("evm_mine")
        old = cli("check", str(inventory), "--json", env=_env(chain))
        assert old.returncode == 2
        late = next(f for f in _nonce_rows(old) if f["check"] == "pending too long")
        assert f"nonce {nonce}..{nonce} pending for 5 blocks (bump_after_blocks is 3)" in late["detail"]


def test_chain_instances_never_share_signer_state() -> None:
    genesis = "0x" + "ab" * 32
    live, fork_drill, other_drill = (chainkey.ChainKey(1, genesis), chainkey.ChainKey(1, genesis, "s1"),
                                     chainkey.ChainKey(1, genesis, "s2"))
    reset = chainkey.ChainKey(1, "0x" + "cd" * 32)
    stems = {k.stem for k in (live, fork_drill, other_drill, reset)}
    assert len(stems) == 4
    assert not live.stem.startswith("drill-") and fork_drill.stem.startswith("drill-s1-")
    address = "0x" + "11" * 20
    paths = {signerlock.record_path(Path("/h"), k, address) for k in (live, fork_drill, other_drill, reset)}
    assert len(paths) == 4
    assert chainkey.scope_of("live", None) == ""
    assert chainkey.scope_of("drill", None) == "unscoped"  # a drill is never in the live scope, even unscoped


def test_what_counts_as_known_below_a_waiting_transaction_and_what_status_says() -> None:
    me, other = "0x" + "11" * 20, "0x" + "22" * 20
    entries = [{"intent": "a", "event": "signed", "signer": me, "nonce": 5, "hash": "0xa5"},
               {"intent": "b", "event": "signed", "signer": other, "nonce": 6, "hash": "0xb6"},
               {"intent": "c", "event": "signed", "signer": me, "nonce": 9, "hash": "0xc9"},
               {"intent": "c", "event": "superseded", "nonce": 9, "hash": "0xc9"},
               {"intent": "c", "event": "cancel", "nonce": 9, "hash": "0xc9x"}]
    assert noncegap.journaled_at(entries, me, 5)  # this run's own open transaction
    assert not noncegap.journaled_at(entries, me, 6)  # another signer's nonce 6 is not ours
    assert noncegap.journaled_at(entries, me, 9)  # the no-op holds the superseded nonce
    assert not noncegap.journaled_at(entries[:4], me, 9)  # superseded and nothing in its place: a gap
    assert noncegap.recorded_hashes({"next": 8, "hash": "0xr"}, 7) == ["0xr"]
    assert noncegap.recorded_hashes({"next": 8, "hash": "0xr"}, 6) == []

    waiting = {"intent": "c", "event": "waiting", "nonce": 9, "chain_nonce": 7, "blocks": 4, "behind_gap": True,
               "label": "vault.pause()", "chain": "ethereum"}
    assert noncegap.waiting([*entries[:3], waiting]) == [waiting]
    assert noncegap.waiting([waiting, {"intent": "c", "event": "receipt"}]) == []
    line = noncegap.waiting_line(waiting)
    assert "vault.pause() on ethereum, nonce 9" in line and "the chain's nonce is 7" in line
    assert "QUEUED BEHIND A GAP" in line
    assert "GAP" not in noncegap.waiting_line({**waiting, "behind_gap": False})
