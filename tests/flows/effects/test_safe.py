"""Guardian actions through a 2-of-3 Safe (the contracts that ship with safe-eth-py) on anvil."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak

from breakglass.flows.effects import fixture
from breakglass.integrations.chain import abi
from breakglass.integrations.chain import safe as safe_tx
from tests.conftest import REPO, cli, dev_key, fresh_protocol, live_inventory, mined

PAUSED = abi.parse("paused()(bool)")


@pytest.fixture
def protocol(chain):
    chain = fresh_protocol(chain)
    a = chain.addresses
    with chain.rpc() as rpc:
        safe = fixture.deploy_safe(rpc, [a["fixture:alice"], a["fixture:bob"], a["fixture:carol"]], 2,
                                   grant_on=[a["fixture:vault"]])
    return chain, safe


def _inventory(tmp: Path, chain, safe: str, owners: list[str]) -> Path:
    a = chain.addresses
    extra = "".join(f'  {o}: {{kind: env, env: BG_TEST_{o.upper()}_KEY, address: "{a[f"fixture:{o}"]}"}}\n'
                    for o in ("alice", "bob"))
    extra += f'  guardian-safe: {{kind: safe, address: "{safe}", chain: ethereum, owners: [{", ".join(owners)}], executor: alice}}\n'
    path = live_inventory(tmp, chain, extra=extra)
    path.write_text(path.read_text().replace(f'address: "{a["fixture:vault"]}", guardian: guardian', f'address: "{a["fixture:vault"]}", guardian: guardian-safe'))
    return path


def _env(chain) -> dict[str, str]:
    return {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"),
            "BG_TEST_ALICE_KEY": dev_key("alice"), "BG_TEST_BOB_KEY": dev_key("bob")}


def _playbook(tmp: Path) -> Path:
    path = tmp / "safe.yaml"
    path.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: safe-pause\ndescription: t\nseverity: critical\n"
                    "steps:\n  - {id: pause, kind: pause, timeout: 60s, with: {contracts: [vault], signer: guardian-safe}}\n")
    return path


def _paused(chain) -> bool:
    with chain.rpc() as rpc:
        raw = rpc.call("eth_call", [{"to": chain.addresses["fixture:vault"], "data": "0x5c975abb"}, "latest"])
    return PAUSED.decode(bytes.fromhex(raw[2:]))[0]


def _start(tmp: Path, inventory: Path, chain, incident: str) -> subprocess.Popen[str]:
    """A run in the background, which will wait for owner signatures."""
    return subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "run", str(_playbook(tmp)), "--inventory",
                             str(inventory), "--yes", "--json", "--incident", incident],
                            env={**os.environ, **_env(chain)}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_proposal(home: Path, incident: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "no Safe proposal appeared"
        for journal in (home / "incidents" / incident).glob("runs/*/journal.jsonl"):
            for line in journal.read_text().splitlines():
                if '"safe_proposed"' in line:
                    return json.loads(line)
        time.sleep(0.1)


def test_two_held_owners_pause_the_vault_through_the_safe(prefect_api, protocol, home, tmp_path) -> None:
    chain, safe = protocol
    inventory = _inventory(tmp_path, chain, safe, ["alice", "bob"])
    result = cli("run", str(_playbook(tmp_path)), "--inventory", str(inventory), "--yes", "--json", env=_env(chain))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    out = record["steps"][0]["outputs"]["results"][0]
    a = chain.addresses
    assert out["status"] == "paused" and _paused(chain)
    assert out["safe_owners_signed"] == sorted([a["fixture:alice"], a["fixture:bob"]], key=lambda x: int(x, 16))
    with chain.rpc() as rpc:
        receipt = rpc.call("eth_getTransactionReceipt", [out["tx_hash"]])
        assert receipt["to"].lower() == safe.lower() and receipt["from"].lower() == a["fixture:alice"].lower()
        nonce = safe_tx.NONCE.decode(bytes.fromhex(rpc.call("eth_call", [{"to": safe, "data": "0x" + safe_tx.NONCE.encode().hex()}, "latest"])[2:]))[0]
    assert nonce == 1  # exactly one Safe transaction executed
    # the hash owners were shown is the one safe-eth-py computes for the same transaction
    from safe_eth.eth import EthereumClient
    from safe_eth.safe.safe_tx import SafeTx

    expected = SafeTx(EthereumClient(chain.url), safe, a["fixture:vault"], 0, abi.parse("pause()").encode(), 0, 0, 0, 0,
                      None, None, safe_nonce=0, safe_version="1.4.1", chain_id=31337).safe_tx_hash
    assert out["safe_tx_hash"] == expected.to_0x_hex()
    assert "Owners: verify this safeTxHash" in result.stderr and out["safe_tx_hash"][2:] in result.stderr


def test_a_remote_owner_signs_with_breakglass_sign_and_forgeries_are_refused(prefect_api, protocol, home, tmp_path) -> None:
    chain, safe = protocol
    inventory = _inventory(tmp_path, chain, safe, ["alice"])
    incident = f"INC-safe-{time.monotonic_ns()}"
    process = _start(tmp_path, inventory, chain, incident)
    try:
        proposal = _wait_for_proposal(home, incident)
        digest = bytes.fromhex(proposal["safe_tx_hash"][2:])
        forged = Account.from_key(dev_key("attacker")).unsafe_sign_hash(digest)
        refused = cli("sign", incident, proposal["safe_tx_hash"], "--signature",
                      forged.r.to_bytes(32, "big").hex() + forged.s.to_bytes(32, "big").hex() + bytes([forged.v]).hex())
        assert refused.returncode == 1 and "is not an owner of Safe" in refused.stderr
        other = Account.from_key(dev_key("bob")).unsafe_sign_hash(keccak(b"another transaction"))
        wrong_hash = cli("sign", incident, proposal["safe_tx_hash"], "--signature",
                         "0x" + other.r.to_bytes(32, "big").hex() + other.s.to_bytes(32, "big").hex() + bytes([other.v]).hex())
        assert wrong_hash.returncode == 1 and "signature refused" in wrong_hash.stderr
        assert process.poll() is None and not _paused(chain)  # still waiting for a second owner
        a = chain.addresses
        deadline = time.monotonic() + 30
        while True:  # the held owner's signature is journaled just after the proposal
            shown = json.loads(cli("status", incident, "--json").stdout)["runs"][0]["safe_transactions"]
            if shown and shown[0]["signatures"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert shown == [{"safe": safe, "nonce": 0, "safe_tx_hash": proposal["safe_tx_hash"], "call": proposal["call"],
                          "to": proposal["to"], "threshold": 2, "signatures": [a["fixture:alice"]], "submitted": [],
                          "may_still_sign": [o for o in proposal["owners"] if o != a["fixture:alice"]], "excluded": [],
                          "status": "waiting for owners",
                          "sign": f"breakglass sign {incident} {proposal['safe_tx_hash']} --signature 0x…"}]
        text = cli("status", incident).stdout
        assert f"safeTxHash {proposal['safe_tx_hash']}" in text and "signatures 1 of 2" in text
        bob = cli("sign", incident, proposal["safe_tx_hash"], "--with", "bob", "--inventory", str(inventory), env=_env(chain))
        assert bob.returncode == 0, bob.stderr
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    out = json.loads(stdout)["steps"][0]["outputs"]["results"][0]
    assert out["status"] == "paused" and len(out["safe_owners_signed"]) == 2 and _paused(chain)


def test_an_owner_signs_from_another_machine_through_the_prefect_api(prefect_api, protocol, home, tmp_path) -> None:
    """No shell on the runner's host and no shared home: only the Prefect API, the way votes travel."""
    from tests.helpers.slack_server import SlackServer

    chain, safe = protocol
    slack = SlackServer()
    inventory = _inventory(tmp_path, chain, safe, ["alice"])
    inventory.write_text(inventory.read_text() + f"""channels:
  slack: {{kind: slack, token_env: SLACK_BOT_TOKEN, base_url: "{slack.base_url}"}}
slack_app: {{channel: slack, post_to: C0WARROOM, signing_secret_env: SLACK_SIGNING_SECRET, app_id: A0APP, team_id: T0TEST}}
""")
    os.environ["SLACK_BOT_TOKEN"] = slack.token  # for the runner started below
    incident = f"INC-remote-{time.monotonic_ns()}"
    elsewhere = {"BREAKGLASS_HOME": str(tmp_path / "owner-laptop")}  # knows nothing of the incident
    try:
        process = _start(tmp_path, inventory, chain, incident)
    finally:
        os.environ.pop("SLACK_BOT_TOKEN", None)

    def sign(key: str) -> subprocess.CompletedProcess[str]:
        made = Account.from_key(dev_key(key)).unsafe_sign_hash(bytes.fromhex(proposal["safe_tx_hash"][2:]))
        raw = made.r.to_bytes(32, "big").hex() + made.s.to_bytes(32, "big").hex() + bytes([made.v]).hex()
        return cli("sign", incident, proposal["safe_tx_hash"], "--signature", "0x" + raw, "--json", env=elsewhere)

    try:
        proposal = _wait_for_proposal(home, incident)
        forged = sign("attacker")  # filed, then refused by the runner: it never counts
        assert forged.returncode == 0 and json.loads(forged.stdout)["status"] == "submitted", forged.stderr
        journal = next((home / "incidents" / incident).glob("runs/*/journal.jsonl"))
        deadline = time.monotonic() + 30
        while '"safe_signature_refused"' not in journal.read_text():
            assert time.monotonic() < deadline, "the runner did not judge the remote signature"
            time.sleep(0.2)
        assert "breakglass sign (remote)" in journal.read_text() and process.poll() is None and not _paused(chain)
        bob = sign("bob")
        assert bob.returncode == 0, bob.stderr
        assert json.loads(bob.stdout)["owner"] == chain.addresses["fixture:bob"]
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    out = json.loads(stdout)["steps"][0]["outputs"]["results"][0]
    assert out["status"] == "paused" and chain.addresses["fixture:bob"] in out["safe_owners_signed"] and _paused(chain)
    assert not (tmp_path / "owner-laptop" / "incidents" / incident).exists()
    posted = [m for m in slack.messages["C0WARROOM"] if "Safe transaction needs" in m["text"]]
    slack.close()
    assert len(posted) == 1, slack.messages  # the war room sees what to verify and how to sign, once
    text = posted[0]["blocks"][0]["text"]["text"]
    assert f"safeTxHash `{proposal['safe_tx_hash']}`" in text and f"breakglass sign {incident} " in text
    assert f"Safe `{safe}` · nonce 0" in text


def test_check_fails_when_one_host_holds_a_threshold_of_owner_keys(protocol, tmp_path) -> None:
    chain, safe = protocol
    held_two = cli("check", str(_inventory(tmp_path, chain, safe, ["alice", "bob"])), "--json", env=_env(chain))
    findings = json.loads(held_two.stdout)["findings"]
    custody = next(f for f in findings if f["check"] == "custody")
    assert held_two.returncode == 2 and custody["status"] == "fail" and "the multisig is one host" in custody["detail"]
    vault = next(f for f in findings if f["subject"] == "contract vault" and f["check"] == "guardian can pause")
    assert vault["status"] == "ok" and safe in vault["detail"]
    held_one = cli("check", str(_inventory(tmp_path, chain, safe, ["alice"])), "--json", env=_env(chain))
    assert held_one.returncode == 0, held_one.stdout


def test_a_safe_whose_threshold_changed_since_the_proposal_is_refused(prefect_api, protocol, home, tmp_path) -> None:
    chain, safe = protocol
    a = chain.addresses
    inventory = _inventory(tmp_path, chain, safe, ["alice"])
    incident = f"INC-safe-changed-{time.monotonic_ns()}"
    process = _start(tmp_path, inventory, chain, incident)
    try:
        proposal = _wait_for_proposal(home, incident)
        # Meanwhile the owners lower the threshold to 1 through the Safe itself.
        change = safe_tx.SafeTx(safe, 31337, safe, 0, abi.parse("changeThreshold(uint256)").encode([1]), 0)
        sigs = {}
        for owner in ("alice", "bob"):
            s = Account.from_key(dev_key(owner)).unsafe_sign_hash(change.hash())
            sigs[a[f"fixture:{owner}"]] = s.r.to_bytes(32, "big") + s.s.to_bytes(32, "big") + bytes([s.v])
        with chain.rpc() as rpc:
            mined(rpc, {"from": a["fixture:carol"], "to": safe, "data": "0x" + change.exec_call(sigs).hex()})
        assert cli("sign", incident, proposal["safe_tx_hash"], "--with", "bob", "--inventory", str(inventory),
                   env=_env(chain)).returncode == 0
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, stderr
    out = json.loads(stdout)["steps"][0]["outputs"]["results"][0]
    assert out["status"] == "failed" and "owners or threshold changed since the proposal" in out["note"]
    assert not _paused(chain)


def test_a_safe_guardian_cannot_be_prepared(protocol, tmp_path) -> None:
    from breakglass.flows.errors import SpecError
    from breakglass.flows.spec.validate import load_playbook

    chain, safe = protocol
    inventory = _inventory(tmp_path, chain, safe, ["alice"])
    playbook = _playbook(tmp_path)
    playbook.write_text(playbook.read_text().replace("signer: guardian-safe}", "signer: guardian-safe, prepared: true}"))
    with pytest.raises(SpecError, match="is a Safe: a Safe transaction needs its owners' signatures"):
        load_playbook(playbook, inventory)
