"""Key-compromise response through a 2-of-3 Safe on anvil: roles revoked from the compromised admin,
and the compromised Safe owner swapped out without its own signature counting."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak

from breakglass.flows.effects import fixture
from breakglass.flows.errors import SpecError
from breakglass.flows.spec.validate import load_playbook
from breakglass.integrations.chain import abi
from breakglass.integrations.chain import safe as safe_tx
from tests.conftest import cli, dev_key, fresh_protocol, live_inventory, mined

HAS_ROLE = abi.parse("hasRole(bytes32,address)(bool)")
OWNERS = ("alice", "bob", "carol", "backup-guardian")


def _call(rpc, to: str, fn: abi.Function, args: list) -> tuple:
    return fn.decode(bytes.fromhex(rpc.call("eth_call", [{"to": to, "data": "0x" + fn.encode(args).hex()}, "latest"])[2:]))


def _inventory(tmp: Path, chain, safe: str, owners: list[str], executor: str) -> Path:
    a = chain.addresses
    extra = "".join(f'  {o}: {{kind: env, env: BG_TEST_{o.upper().replace("-", "_")}_KEY, address: "{a[f"fixture:{o}"]}"}}\n'
                    for o in OWNERS)
    extra += (f'  admin-safe: {{kind: safe, address: "{safe}", chain: ethereum, owners: [{", ".join(owners)}], '
              f'executor: {executor}}}\n')
    return live_inventory(tmp, chain, extra=extra)


def _env(chain, **extra: str) -> dict[str, str]:
    keys = {f"BG_TEST_{o.upper().replace('-', '_')}_KEY": dev_key(o) for o in OWNERS}
    return {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), **keys, **extra}


def _playbook(tmp: Path, steps: str) -> Path:
    path = tmp / "compromise.yaml"
    path.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: compromise\ndescription: t\nseverity: critical\n"
                    "inputs:\n  compromised_signer: {type: address}\n" f"steps:\n{steps}")
    return path


def _journal(home: Path, record: dict) -> list[dict]:
    path = home / "incidents" / record["incident"] / "runs" / record["run_id"] / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


REVOKE = ('  - {{id: {id}, kind: revoke, timeout: 60s, {needs}with: {{contracts: [vault, bridge], roles: [DEFAULT_ADMIN_ROLE, '
          'GUARDIAN_ROLE], account: "{{{{ inputs.compromised_signer }}}}", signer: admin-safe}}}}\n')


def test_revoke_through_the_safe_lands_once_across_a_crash_and_a_rerun(prefect_api, chain, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    a = chain.addresses
    admin, vault, bridge = a["fixture:admin"], a["fixture:vault"], a["fixture:bridge"]
    with chain.rpc() as rpc:
        safe = fixture.deploy_safe(rpc, [a["fixture:alice"], a["fixture:bob"], a["fixture:carol"]], 2)
        for contract in (vault, bridge):
            mined(rpc, {"from": admin, "to": contract, "data": "0x" + abi.parse("grantRole(bytes32,address)").encode([bytes(32), safe]).hex()})
    inventory = _inventory(tmp_path, chain, safe, ["alice", "bob"], "alice")
    playbook = _playbook(tmp_path, REVOKE.format(id="revoke", needs="") + REVOKE.format(id="again", needs="needs: [revoke], "))
    incident = f"INC-revoke-{time.monotonic_ns()}"
    args = ["--inventory", str(inventory), "--input", f"compromised_signer={admin}", "--yes", "--incident", incident]
    # killed right after the first revocation's receipt: the resume must not send it again
    killed = cli("run", str(playbook), *args, env=_env(chain, BREAKGLASS_TEST_CRASH_AT="tx.after_receipt"))
    assert killed.returncode == -9, killed.stderr
    result = cli("resume", incident, "--json", env=_env(chain))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    first, again = (s["outputs"] for s in record["steps"])
    assert [(r["contract"], r["role"]) for r in first["revoked"]] == [("vault", "DEFAULT_ADMIN_ROLE"), ("bridge", "DEFAULT_ADMIN_ROLE")]
    assert [(r["contract"], r["role"]) for r in first["not_held"]] == [("vault", "GUARDIAN_ROLE"), ("bridge", "GUARDIAN_ROLE")]
    assert first["verified"] is True and len(first["transactions"]) == 2
    assert (again["revoked"], again["transactions"], again["verified"]) == ([], [], True)
    assert len(again["not_held"]) == 4
    with chain.rpc() as rpc:
        for contract in (vault, bridge):
            assert _call(rpc, contract, HAS_ROLE, [bytes(32), admin]) == (False,)
            assert _call(rpc, contract, HAS_ROLE, [bytes(32), safe]) == (True,)
        assert _call(rpc, safe, safe_tx.NONCE, []) == (2,)  # exactly two Safe transactions, one per held role
    journal = _journal(home, record)
    assert len([e for e in journal if e["event"] == "signed"]) == 2
    assert len([e for e in journal if e["event"] == "safe_proposed"]) == 2
    assert [r["tx_hash"] for r in first["revoked"]] == [e["hash"] for e in journal if e["event"] == "signed"]


def test_rotate_swaps_the_compromised_owner_without_its_signature(prefect_api, chain, home, tmp_path) -> None:
    a = chain.addresses
    compromised, backup = a["fixture:alice"], a["fixture:backup-guardian"]
    with chain.rpc() as rpc:
        safe = fixture.deploy_safe(rpc, [compromised, a["fixture:bob"], a["fixture:carol"]], 2)
    # breakglass holds every owner key, the compromised one included (its address sorts first, so without the
    # exclusion its signature would be one of the two used)
    inventory = _inventory(tmp_path, chain, safe, ["alice", "bob", "carol", "backup-guardian"], "bob")
    rotate = '  - {{id: {id}, kind: rotate, {needs}with: {{safe: admin-safe, remove: "{{{{ inputs.compromised_signer }}}}", add: backup-guardian{extra}}}}}\n'
    playbook = _playbook(tmp_path, rotate.format(id="rotate", needs="", extra="")
                         + rotate.format(id="again", needs="needs: [rotate], ", extra="")
                         + rotate.format(id="raise", needs="needs: [again], ", extra=", threshold: 3"))
    result = cli("run", str(playbook), "--inventory", str(inventory), "--input", f"compromised_signer={compromised}",
                 "--yes", "--json", env=_env(chain))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    first, again, raised = (s["outputs"] for s in record["steps"])
    by_int = sorted([a["fixture:bob"], a["fixture:carol"]], key=lambda x: int(x, 16))
    assert first["status"] == "rotated" and first["owners_before"] == [compromised, a["fixture:bob"], a["fixture:carol"]]
    assert first["owners_after"] == [backup, a["fixture:bob"], a["fixture:carol"]] and first["threshold"] == 2
    assert sorted(first["safe_owners_signed"], key=lambda x: int(x, 16)) == by_int and first["excluded_owner"] == compromised
    assert (again["status"], again["tx_hash"], again["transactions"]) == ("already_rotated", None, [])
    assert raised["threshold"] == 3 and raised["threshold_tx_hash"] and raised["tx_hash"] is None
    with chain.rpc() as rpc:
        assert _call(rpc, safe, safe_tx.OWNERS, [])[0] == tuple(o.lower() for o in first["owners_after"])
        assert _call(rpc, safe, safe_tx.NONCE, []) == (2,)  # the swap and the threshold change, nothing else
    journal = _journal(home, record)
    proposal = next(e for e in journal if e["event"] == "safe_proposed" and "swapOwner" in e["intent"])
    assert proposal["excluded"] == [compromised] and proposal["data"].startswith("0x" + abi.parse("swapOwner(address,address,address)").selector.hex())
    assert not [e for e in journal if e["event"] == "safe_signature" and e["owner"] == compromised]
    # the compromised key cannot slip a signature in through `breakglass sign` either
    signed = Account.from_key(dev_key("alice")).unsafe_sign_hash(bytes.fromhex(proposal["safe_tx_hash"][2:]))
    refused = cli("sign", record["incident"], proposal["safe_tx_hash"], "--signature",
                  "0x" + signed.r.to_bytes(32, "big").hex() + signed.s.to_bytes(32, "big").hex() + bytes([signed.v]).hex())
    assert refused.returncode == 1 and "is excluded from" in refused.stderr


@pytest.mark.parametrize(("steps", "expected"), [
    ("  - {id: r, kind: revoke, with: {contracts: [vault, valt], roles: [DEFAULT_ADMIN_ROLE], account: '0x3333333333333333333333333333333333333333', signer: admin-saf}}\n",
     ["compromise.yaml:9:53: step 'r': with.contracts[1]: unknown contract 'valt' (not in inventory.yaml). Did you mean 'vault'?",
      "compromise.yaml:9:152: step 'r': with.signer: unknown signer 'admin-saf' (not in inventory.yaml). Did you mean 'admin-safe'?"]),
    ("  - {id: r, kind: rotate, with: {safe: guardian, remove: '0x3333333333333333333333333333333333333333', add: backup-guardan}}\n",
     ["compromise.yaml:9:40: step 'r': with.safe: signer 'guardian' is of kind env, not a Safe. rotate changes the owners "
      "of a Safe: name a signer of kind safe.",
      "compromise.yaml:9:109: step 'r': with.add: unknown contract or signer 'backup-guardan' (not in inventory.yaml). "
      "Did you mean 'backup-guardian'?"]),
    ("  - {id: r, kind: revoke, with: {contracts: [vault], roles: [not a role], account: 'bob', signer: admin-safe}}\n",
     ["compromise.yaml:9:62: step 'r': with.roles[0]: expected 0x followed by 64 hex digits.",
      "compromise.yaml:9:84: step 'r': with.account: not an address: expected 0x followed by 40 hex digits."]),
])
def test_validation_errors_point_at_the_line(chain, tmp_path, steps, expected) -> None:
    inventory = _inventory(tmp_path, chain, chain.addresses["fixture:alice"], ["alice"], "alice")
    with pytest.raises(SpecError) as caught:
        load_playbook(_playbook(tmp_path, steps), inventory)
    got = [str(d).replace(str(tmp_path) + "/", "") for d in caught.value.diagnostics]
    assert got == expected


def test_role_names_hash_like_access_control() -> None:
    from breakglass.flows.steps.revoke import role_id

    assert role_id("DEFAULT_ADMIN_ROLE") == bytes(32) and role_id("GUARDIAN_ROLE") == keccak(text="GUARDIAN_ROLE")
    assert role_id("0x" + "ab" * 32) == bytes.fromhex("ab" * 32)


def test_a_gate_in_front_shows_and_digests_the_exact_calls(chain, tmp_path, monkeypatch) -> None:
    import hashlib
    import logging

    from breakglass.flows.effects import unlock as signers
    from breakglass.flows.effects.engines import wire
    from breakglass.flows.gates import intents
    from breakglass.flows.language import templating
    from breakglass.flows.run.context import Bindings, StepContext
    from breakglass.flows.run.journal import Journal

    a = chain.addresses
    compromised, backup = a["fixture:alice"], a["fixture:backup-guardian"]
    with chain.rpc() as rpc:
        safe = fixture.deploy_safe(rpc, [compromised, a["fixture:bob"], a["fixture:carol"]], 2)
    for name, value in _env(chain).items():
        monkeypatch.setenv(name, value)
    playbook, inventory = load_playbook(_playbook(tmp_path, REVOKE.format(id="revoke", needs="") + (
        '  - {id: rotate, kind: rotate, with: {safe: admin-safe, remove: "{{ inputs.compromised_signer }}", '
        'add: backup-guardian, threshold: 2}}\n')), _inventory(tmp_path, chain, safe, ["bob"], "bob"))
    ctx = wire(StepContext(incident="INC-gate", run_id="run", run_key="INC-gate/run/x", mode="live", step_id="rotate",
                      inventory=inventory, bindings=Bindings(), artifacts_dir=tmp_path / "artifacts", home=tmp_path,
                      log=logging.getLogger("test"), signers=signers.unlock(inventory, ["admin-safe"]),
                      journal=Journal(tmp_path / "journal.jsonl")))
    context = {"inputs": {"compromised_signer": compromised}, "alert": templating.NO_ALERT, "steps": {}}
    revoke, rotate = (intents.of_step(ctx, step, context) for step in playbook.steps)
    assert [i["item"] for i in revoke] == ["vault:DEFAULT_ADMIN_ROLE", "vault:GUARDIAN_ROLE", "bridge:DEFAULT_ADMIN_ROLE",
                                           "bridge:GUARDIAN_ROLE"]
    call = abi.parse("revokeRole(bytes32,address)").encode([bytes(32), compromised])
    assert revoke[0]["calldata_sha256"] == hashlib.sha256(call).hexdigest() and revoke[0]["signer"] == f"safe:{safe}"
    swap = abi.parse("swapOwner(address,address,address)").encode(["0x" + "00" * 19 + "01", compromised, backup])
    assert [i["item"] for i in rotate] == ["admin-safe:swapOwner", "admin-safe:changeThreshold"]
    assert rotate[0]["calldata_sha256"] == hashlib.sha256(swap).hexdigest() and rotate[0]["target"] == safe
    line = intents.describe(rotate[0])
    assert f"swapOwner(0x0000000000000000000000000000000000000001, {compromised}, {backup})" in line
    assert f"signed by safe:{safe}" in line and f"owners other than {compromised}" in line
