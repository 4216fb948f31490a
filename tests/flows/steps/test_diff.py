"""The diff step: the comparison itself, its validation, a drill run on the fixture chain, tampering and fail_on."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path

import pytest
from eth_utils import keccak

from breakglass.flows.errors import BreakglassError, SpecError
from breakglass.flows.run.context import Bindings, StepContext
from breakglass.flows.spec.loader import load, require
from breakglass.flows.spec.validate import load_playbook
from breakglass.flows.steps.diff import HANDLER, DiffFailed, DiffStep, compare
from breakglass.flows.steps.snapshot import SnapshotParams, take
from breakglass.integrations.chain import abi
from tests.conftest import cli, fresh_protocol, live_inventory, mined

ADMIN_ROLE = "0x" + "00" * 32
GUARDIAN_ROLE = "0x" + keccak(text="GUARDIAN_ROLE").hex()
A, B, C = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20


def _doc(block: int, *, balances=(), paused=(), roles=(), calls=(), storage=()) -> dict:
    """A document in the snapshot step's artifact format (see snapshot.take)."""
    return {"kind": "breakglass/snapshot", "incident": "INC-t", "run": "r", "step": f"s{block}", "mode": "live",
            "chain": "ethereum", "chain_id": 31337, "block_number": block, "block_hash": "0x" + f"{block:064x}",
            "block_timestamp": "2026-04-01T00:00:00+00:00", "taken_at": "2026-04-01T00:00:01+00:00",
            "endpoint": "env:RPC#0", "method": "multicall3", "read_seconds": 0.01, "balances": list(balances),
            "paused": list(paused), "roles": list(roles), "calls": list(calls), "storage": list(storage)}


def _bal(account: str, token: str, raw: int | None, ref: str | None = None) -> dict:
    entry = {"account": account, "ref": ref or account, "token": token}
    if token != "native":
        entry["token_address"] = C
    return {**entry, "raw": str(raw)} if raw is not None else {**entry, "error": "reverted"}


def test_compare_lists_changes_counts_the_rest_and_applies_tolerance() -> None:
    before = _doc(100, balances=[_bal(A, "native", 10**18), _bal(A, "token", 5 * 10**24, ref="attacker"),
                                 _bal(B, "native", 7), _bal(B, "token", None), _bal(C, "token", 1)],
                  paused=[{"contract": "vault", "address": C, "paused": False}, {"contract": "bridge", "address": B, "paused": True}],
                  roles=[{"contract": "vault", "role": "GUARDIAN_ROLE", "role_id": GUARDIAN_ROLE, "account": A, "has_role": False},
                         {"contract": "vault", "role": "DEFAULT_ADMIN_ROLE", "role_id": ADMIN_ROLE, "account": B, "has_role": True}],
                  calls=[{"contract": "vault", "signature": "totalAssets()(uint256)", "args": [], "label": "assets", "result": [3]},
                         {"contract": "vault", "signature": "balanceOf(address)(uint256)", "args": [A], "label": None, "result": [1]}],
                  storage=[{"contract": "vault", "slot": "0x1", "label": "paused", "value": "0x" + "0" * 64}])
    after = copy.deepcopy(before) | {"block_number": 105}
    after["balances"] = [_bal(A, "native", 10**18 - 3 * 10**15), _bal(A, "token", 0, ref="attacker"), _bal(B, "native", 7),
                         _bal(B, "token", 4), _bal(A, "token-l2", 9)]
    after["paused"][0]["paused"] = True
    after["roles"][0]["has_role"] = True
    after["roles"][1]["has_role"] = False
    after["calls"][0]["result"] = [2]
    after["storage"][0]["value"] = "0x" + "0" * 63 + "1"

    result = compare(before, after, {"native": 10**16})

    assert [b.model_dump() for b in result["balances"]] == [
        {"account": A, "ref": "attacker", "token": "token", "before": str(5 * 10**24), "after": "0", "delta": str(-5 * 10**24)}]
    assert [(p.contract, p.before, p.after) for p in result["paused"]] == [("vault", False, True)]
    assert [(r.role, r.account, r.change) for r in result["roles"]] == [("GUARDIAN_ROLE", A, "granted"), ("DEFAULT_ADMIN_ROLE", B, "revoked")]
    assert [(c.label, c.before, c.after) for c in result["calls"]] == [("assets", [3], [2])]
    assert [(s.slot, s.after) for s in result["storage"]] == [("0x1", "0x" + "0" * 63 + "1")]
    assert result["changed"] == 6
    # A native moved by less than the tolerance, B native, bridge paused, balanceOf(A): the same
    assert result["unchanged"] == 4
    assert [(n["key"], n["reason"]) for n in result["not_compared"]] == [
        ([B, "token"], "read failed in 'before': reverted"), ([C, "token"], "only in 'before'"), ([A, "token-l2"], "only in 'after'")]
    assert compare(before, after)["changed"] == 7  # without the tolerance, the gas spent counts
    assert result["balances"][0].line() == f"balance of attacker ({A}) in token: {5 * 10**24} -> 0 ({-5 * 10**24:+d})"
    assert compare(before, before) == {"balances": [], "paused": [], "roles": [], "calls": [], "storage": [], "changed": 0,
                                       "unchanged": 11, "not_compared": [{"section": "balances", "key": [B, "token"],
                                                                          "reason": "read failed in 'before': reverted; "
                                                                                    "read failed in 'after': reverted"}]}


INVENTORY = """apiVersion: breakglass/v1
kind: Inventory
name: two-chains
mode: drill
chains:
  ethereum: {chain_id: 31337, block_time: 1s, rpc: [{fixture: anvil}], multicall3: fixture:multicall}
  l2: {chain_id: 31338, block_time: 1s, rpc: [{fixture: anvil}], multicall3: fixture:multicall}
contracts:
  vault: {chain: ethereum, address: fixture:vault, guardian: guardian}
  token: {chain: ethereum, address: fixture:token}
signers:
  guardian: {kind: fixture, account: guardian}
"""


def _book(tmp: Path, steps: str) -> Path:
    path = tmp / "diff.yaml"
    path.write_text(f"apiVersion: breakglass/v1\nkind: Playbook\nname: diffs\ndescription: t\nseverity: high\nsteps:\n{steps}")
    (tmp / "inv.yaml").write_text(INVENTORY)
    return path


SNAPSHOTS = """  - {id: snap-detection, kind: snapshot, with: {chain: ethereum, paused: [vault], balances: {accounts: [vault], tokens: [token]}}}
  - {id: pause, kind: pause, with: {contracts: [vault], signer: guardian}}
  - {id: snap-later, kind: snapshot, needs: [pause, snap-detection], with: {chain: ethereum, paused: [vault], balances: {accounts: [vault], tokens: [token]}}}
  - {id: snap-l2, kind: snapshot, with: {chain: l2, paused: [vault]}}
"""


def test_validate_names_the_field_and_line_of_each_bad_reference(tmp_path: Path) -> None:
    path = _book(tmp_path, SNAPSHOTS + """  - id: typo
    kind: diff
    needs: [snap-later]
    with: {before: snap-detecton, after: snap-later}
  - id: not-a-snapshot
    kind: diff
    needs: [snap-later]
    with: {before: pause, after: snap-later}
  - id: not-an-ancestor
    kind: diff
    needs: [snap-detection]
    with: {before: snap-detection, after: snap-later}
  - id: same
    kind: diff
    needs: [snap-later]
    with: {before: snap-later, after: snap-later}
  - id: swapped
    kind: diff
    needs: [snap-later, snap-l2]
    with: {before: snap-later, after: snap-detection}
  - id: chains
    kind: diff
    needs: [snap-later, snap-l2]
    with: {before: snap-later, after: snap-l2, fail_on: [unpaused, role_granted], tolerance: {tokn: 5}}
""")
    with pytest.raises(SpecError) as info:
        load_playbook(path, tmp_path / "inv.yaml")
    p = str(path)
    assert str(info.value).splitlines() == [
        f"{p}:14:20: step 'typo': with.before: no step 'snap-detecton'. Did you mean 'snap-detection'?",
        f"{p}:18:20: step 'not-a-snapshot': with.before: 'pause' is a pause step; a diff compares two snapshot steps. "
        "Snapshot steps: snap-detection, snap-later, snap-l2.",
        f"{p}:22:43: step 'not-an-ancestor': with.after: snapshot 'snap-later' is not among this step's needs. "
        "Add 'snap-later' to needs of 'not-an-ancestor', so it is taken before the diff runs.",
        f"{p}:26:39: step 'same': with.after: 'before' and 'after' are the same step 'snap-later'. "
        "Compare two different snapshots, e.g. the one at detection and one taken before unpausing.",
        f"{p}:30:39: step 'swapped': with.after: 'snap-detection' is taken before 'snap-later' (it is among "
        "its needs). Swap 'before' and 'after'.",
        f"{p}:34:39: step 'chains': with.after: 'snap-later' reads chain 'ethereum' and 'snap-l2' reads chain 'l2'. "
        "A diff compares two reads of the same chain.",
        f"{p}:34:68: step 'chains': with.fail_on[1]: fail_on 'role_granted' can never fire: 'snap-later' and 'snap-l2' do not "
        "both read roles. Add roles to both snapshots, or drop the rule.",
        f"{p}:34:101: step 'chains': with.tolerance.tokn: tolerance for 'tokn', which neither snapshot reads a balance in. "
        "Did you mean 'token'?",
    ]


def test_a_well_formed_diff_validates_and_its_outputs_are_referenceable(tmp_path: Path) -> None:
    path = _book(tmp_path, SNAPSHOTS + """  - id: d
    kind: diff
    needs: [snap-later]
    with: {before: snap-detection, after: snap-later, fail_on: [unpaused, balance_drop, any_change], tolerance: {token: 1}}
  - {id: after, kind: wait, needs: [d], if: "{{ steps.d.outputs.changed == 0 }}", with: {seconds: 0.1}}
  - {id: typo, kind: wait, needs: [d], if: "{{ steps.d.outputs.chnged == 0 }}", with: {seconds: 0.1}}
""")
    with pytest.raises(SpecError) as info:
        load_playbook(path, tmp_path / "inv.yaml")
    assert str(info.value).splitlines() == [
        f"{path}:16:44: step 'typo': if: steps.d.outputs.chnged: a diff step has no output 'chnged'. Did you mean 'changed'?"]


# --- on a real anvil: snapshots taken by the snapshot step's own code, then compared by the diff step's run()

PAUSE, UNPAUSE = abi.parse("pause()"), abi.parse("unpause()")
GRANT, TRANSFER = abi.parse("grantRole(bytes32,address)"), abi.parse("transfer(address,uint256)(bool)")


def _ctx(inventory: Path, tmp: Path, step: str) -> StepContext:
    return StepContext(incident="INC-diff", run_id="run", run_key="INC-diff/run/x", mode="live", step_id=step,
                       inventory=require(load(inventory)), bindings=Bindings(), artifacts_dir=tmp / "artifacts",
                       home=tmp, log=logging.getLogger("test"))


def _send(rpc, sender: str, to: str, data: bytes) -> None:
    assert int(mined(rpc, {"from": sender, "to": to, "data": "0x" + data.hex()})["status"], 16) == 1


@pytest.fixture
def two_snapshots(chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh protocol, paused; a snapshot; then the admin unpauses, makes the attacker a guardian, and the
    attacker moves its tokens; a second snapshot. Returns the diff step's context and how to build the step."""
    chain = fresh_protocol(chain)
    monkeypatch.setenv("BG_TEST_RPC_URL", chain.url)
    inventory, a = live_inventory(tmp_path, chain), chain.addresses
    params = SnapshotParams(chain="ethereum", paused=["vault", "bridge"], balances={"accounts": [a["fixture:attacker"], "vault"], "tokens": ["token"]},
                            roles=[{"contract": "vault", "role": "GUARDIAN_ROLE", "accounts": [a["fixture:attacker"], "guardian"]}],
                            storage=[{"contract": "vault", "slot": "0x1", "label": "_paused"}])
    with chain.rpc() as rpc:
        _send(rpc, a["fixture:guardian"], a["fixture:vault"], PAUSE.encode())
        first = take(_ctx(inventory, tmp_path, "snap-a"), params)
        _send(rpc, a["fixture:admin"], a["fixture:vault"], UNPAUSE.encode())
        _send(rpc, a["fixture:admin"], a["fixture:vault"], GRANT.encode([keccak(text="GUARDIAN_ROLE"), a["fixture:attacker"]]))
        _send(rpc, a["fixture:attacker"], a["fixture:token"], TRANSFER.encode([a["fixture:bob"], 400 * 10**18]))
        rpc.call("evm_mine")
        second = take(_ctx(inventory, tmp_path, "snap-b"), params)
    ctx = _ctx(inventory, tmp_path, "d")
    ctx.outputs = {"snap-a": first.model_dump(mode="json"), "snap-b": second.model_dump(mode="json")}

    def step(**with_) -> DiffStep:
        return DiffStep.model_validate({"id": "d", "kind": "diff", "needs": ["snap-b"], "with": {"before": "snap-a", "after": "snap-b", **with_}})

    return ctx, step, a


def test_fail_on_names_every_entry_that_broke_each_rule(two_snapshots) -> None:
    ctx, step, a = two_snapshots
    attacker = a["fixture:attacker"]
    first = json.loads((ctx.home / ctx.outputs["snap-a"]["artifact"]).read_text())
    held = next(int(b["raw"]) for b in first["balances"] if b["account"] == attacker)
    with pytest.raises(DiffFailed) as info:
        HANDLER.run(ctx, step(fail_on=["unpaused", "role_granted", "balance_drop"]))
    assert str(info.value) == (
        f"fail_on: 3 violation(s): unpaused: vault ({a['fixture:vault']}) paused: true -> false; "
        f"role_granted: GUARDIAN_ROLE on vault granted to {attacker}; "
        f"balance_drop: balance of {attacker} in token: {held} -> {held - 400 * 10**18} ({-400 * 10**18:+d})")
    out = info.value.outputs
    assert out.violations == str(info.value).removeprefix("fail_on: 3 violation(s): ").split("; ")
    assert (out.changed, out.unchanged, out.not_compared) == (4, 3, 0)  # + the _paused slot; bridge, vault's balance, guardian
    # the evidence is written before failing
    assert json.loads((ctx.home / out.artifact).read_text())["violations"] == out.violations
    assert "**violated**" in (ctx.home / out.summary).read_text()
    # a tolerance above the move, and rules that did not break, pass
    ok = HANDLER.run(ctx, step(fail_on=["balance_drop"], tolerance={"token": 400 * 10**18}))
    assert ok.violations == [] and ok.balances == []


def test_a_snapshot_artifact_changed_after_the_fact_is_refused(two_snapshots) -> None:
    ctx, step, _ = two_snapshots
    path = ctx.home / ctx.outputs["snap-a"]["artifact"]
    assert HANDLER.run(ctx, step()).changed == 4  # untouched: compared
    doc = json.loads(path.read_text())
    doc["paused"][0]["paused"] = False  # rewrite history: "the vault was never paused"
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    with pytest.raises(BreakglassError) as info:
        HANDLER.run(ctx, step())
    recorded, now = ctx.outputs["snap-a"]["sha256"], hashlib.sha256(path.read_bytes()).hexdigest()
    assert str(info.value) == (
        f"snapshot 'snap-a': artifact {ctx.outputs['snap-a']['artifact']} has sha256 {now}, but the snapshot step recorded "
        f"{recorded}: the file changed after it was taken. Not compared; keep the file as evidence of tampering.")
    path.unlink()
    with pytest.raises(BreakglassError, match="snapshot 'snap-a': cannot read its artifact .*snap-a.snapshot.json"):
        HANDLER.run(ctx, step())


def test_a_drill_that_pauses_the_vault_between_two_snapshots_reports_exactly_that(prefect_api, home: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "drill.yaml"
    inventory.write_text("""apiVersion: breakglass/v1
kind: Inventory
name: diff-drill
mode: drill
chains:
  ethereum: {chain_id: 31337, block_time: 1s, rpc: [{fixture: anvil}], multicall3: fixture:multicall}
contracts:
  vault: {chain: ethereum, address: fixture:vault, guardian: guardian}
  bridge: {chain: ethereum, address: fixture:bridge, guardian: guardian}
  token: {chain: ethereum, address: fixture:token}
signers:
  guardian: {kind: fixture, account: guardian}
""")
    reads = """      paused: [vault, bridge]
      balances: {accounts: ["{{ inputs.attacker }}", guardian, vault], tokens: [native, token]}
      roles: [{contract: vault, role: GUARDIAN_ROLE, accounts: [guardian, "{{ inputs.attacker }}"]}]
      calls: [{contract: vault, signature: "totalAssets()(uint256)", label: vault assets}]
      storage: [{contract: vault, slot: "0x1", label: _paused}]
"""
    playbook = tmp_path / "diff-drill.yaml"
    playbook.write_text("""apiVersion: breakglass/v1
kind: Playbook
name: diff-drill
description: the vault is paused between two snapshots, and the diff says so
severity: high
inputs:
  attacker: {type: address, drill: "fixture:attacker"}
steps:
  - id: snapshot-detection
    kind: snapshot
    with:
      chain: ethereum
READS  - {id: pause-vault, kind: pause, needs: [snapshot-detection], with: {contracts: [vault], signer: guardian}}
  - id: snapshot-before-unpause
    kind: snapshot
    needs: [pause-vault]
    with:
      chain: ethereum
READS  - id: changes
    kind: diff
    needs: [snapshot-before-unpause]
    with:
      before: snapshot-detection
      after: snapshot-before-unpause
      fail_on: [unpaused, role_granted, balance_drop]
      tolerance: {native: 10000000000000000}  # the guardian's gas for the pause
  - {id: only-if-one-flag, kind: wait, needs: [changes], if: "{{ steps.changes.outputs.paused | length == 1 }}", with: {seconds: 0.1}}
""".replace("READS", reads))
    result = cli("drill", str(playbook), "--inventory", str(inventory), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    steps = {s["id"]: s for s in record["steps"]}
    assert [s["status"] for s in record["steps"]] == ["completed"] * 5
    out = steps["changes"]["outputs"]
    vault = steps["pause-vault"]["outputs"]["results"][0]["address"]
    assert out["paused"] == [{"contract": "vault", "address": vault, "before": False, "after": True}]
    # slot 1 packs the token's address above the pause flag: only the lowest byte moved
    assert [(s["label"], int(s["after"], 16) - int(s["before"], 16), int(s["after"], 16) & 0xFF) for s in out["storage"]] == [
        ("_paused", 1, 1)]
    assert out["balances"] == out["roles"] == out["calls"] == [] and out["violations"] == []
    # 6 balances, the bridge's flag, 2 role checks, totalAssets
    assert (out["changed"], out["unchanged"], out["not_compared"]) == (2, 10, 0)
    detection, later = steps["snapshot-detection"]["outputs"], steps["snapshot-before-unpause"]["outputs"]
    assert (out["before_block"], out["after_block"]) == (detection["block_number"], later["block_number"])
    assert out["before_block"] < out["after_block"]
    artifact = (home / out["artifact"]).read_bytes()
    assert hashlib.sha256(artifact).hexdigest() == out["sha256"]
    doc = json.loads(artifact)
    assert doc["before"]["sha256"] == detection["sha256"] and doc["after"]["sha256"] == later["sha256"]
    summary = (home / out["summary"]).read_text()
    assert f"- vault ({vault}) paused: false -> true" in summary and "**2 changed**, 10 unchanged" in summary
    assert out["headline"].startswith(f"2 changed, 10 unchanged between blocks {out['before_block']} and {out['after_block']}")
