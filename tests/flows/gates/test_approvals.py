"""Vote verification and gate validation, without a chain: every refusal the issue names, one by one."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from eth_account import Account

from breakglass.flows.gates import rules as approvals
from breakglass.flows.run import audit
from tests.conftest import REPO, cli, dev_key

DIGEST = "0x" + "ab" * 32
ALICE, BOB, CAROL, MALLORY = (Account.from_key(dev_key(n)) for n in ("alice", "bob", "carol", "attacker"))


def _rules(**overrides) -> approvals.Rules:
    base = {"incident": "INC-1", "run_key": "INC-1/pb/abc", "step": "gate", "digest": DIGEST,
            "eligible": {"alice": ALICE.address, "bob": BOB.address, "carol": CAROL.address},
            "initiator": "alice", "exclude_initiator": True, "channels": ("signed",), "quorum": 2, "ttl": 600.0,
            "drill": False, "roster": frozenset({"alice", "bob", "carol", "dave"})}
    return approvals.Rules(**{**base, **overrides})


def _vote(name: str, account=None, **overrides) -> approvals.Vote:
    fields = {"incident": "INC-1", "run_key": "INC-1/pb/abc", "step": "gate", "digest": DIGEST, "decision": "approve",
              "name": name, "channel": "signed" if account else "cli-unsigned", "cast_at": int(time.time())}
    vote = approvals.Vote(**{**fields, **overrides})
    return approvals.sign(vote, account) if account is not None else vote


def test_a_signed_vote_from_the_roster_address_counts() -> None:
    assert approvals.judge(_vote("bob", BOB), _rules(), set()) is None
    assert _vote("bob", BOB).signer_address() == BOB.address


@pytest.mark.parametrize(("vote", "decided", "expected"), [
    (lambda: _vote("bob"), set(), "votes via cli-unsigned do not count"),
    (lambda: _vote("bob", MALLORY), set(), "which is not bob's roster address"),
    (lambda: _vote("bob", BOB, digest="0x" + "cd" * 32), set(), "another digest"),
    (lambda: _vote("mallory", MALLORY), set(), "'mallory' is not on the roster"),
    (lambda: _vote("dave", MALLORY), set(), "not among this gate's approvers"),
    (lambda: _vote("bob", BOB), {"bob"}, "already voted"),
    (lambda: _vote("alice", ALICE), set(), "excludes the initiator"),
    (lambda: _vote("bob", BOB, cast_at=int(time.time()) - 601), set(), "expired"),
    (lambda: _vote("bob", BOB, cast_at=int(time.time()) + 3600), set(), "in the future"),
    (lambda: _vote("bob", BOB, channel="auto-approve"), set(), "only in drills"),
    (lambda: _vote("bob", BOB, step="other"), set(), "not this gate"),
], ids=["unsigned", "foreign-signature", "other-digest", "not-on-roster", "not-an-approver", "second-vote",
        "initiator", "expired", "future", "auto-approve-live", "other-gate"])
def test_each_attack_is_refused_with_its_reason(vote, decided, expected) -> None:
    reason = approvals.judge(vote(), _rules(), decided)
    assert reason is not None and expected in reason


def test_a_tampered_signed_vote_is_refused() -> None:
    signed = _vote("bob", BOB)
    flipped = signed.model_copy(update={"decision": "reject"})  # the signature covers the decision
    assert "not bob's roster address" in approvals.judge(flipped, _rules(), set())
    garbage = signed.model_copy(update={"signature": "0x1234"})
    assert approvals.judge(garbage, _rules(), set()) == "the signature cannot be read"


def test_unsigned_votes_count_only_in_drills_with_quorum_one() -> None:
    unsigned = _vote("bob")
    channels = ("cli-unsigned",)
    assert approvals.judge(unsigned, _rules(channels=channels, drill=True, quorum=1), set()) is None
    assert "only in drills with quorum 1" in approvals.judge(unsigned, _rules(channels=channels, drill=True, quorum=2), set())
    assert "only in drills with quorum 1" in approvals.judge(unsigned, _rules(channels=channels, drill=False, quorum=1), set())


def test_the_digest_covers_every_field_of_the_intent() -> None:
    intent = [{"step": "pause", "item": "vault", "target": "0x1", "fee_cap_gwei": 500}]
    base = approvals.digest_of("INC-1", "k", "gate", intent)
    assert approvals.digest_of("INC-1", "k", "gate", [dict(intent[0])]) == base
    assert approvals.digest_of("INC-1", "k", "gate", [{**intent[0], "target": "0x2"}]) != base
    assert approvals.digest_of("INC-1", "k", "gate", [{**intent[0], "fee_cap_gwei": 501}]) != base
    assert approvals.digest_of("INC-2", "k", "gate", intent) != base  # never replayable into another incident
    assert approvals.changes(intent, [{**intent[0], "target": "0x2"}]) == ['pause/vault: target "0x1" -> "0x2"']


def test_the_audit_log_is_a_hash_chain(tmp_path: Path) -> None:
    for n in range(3):
        audit.append(tmp_path, "vote.refused", name=f"p{n}", reason="test")
    assert audit.verify(tmp_path) == []
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"p1"', '"px"')
    (tmp_path / "audit.jsonl").write_text("\n".join(lines) + "\n")
    problems = audit.verify(tmp_path)
    assert len(problems) == 1 and ":2: entry 2 was changed" in problems[0]  # the edited entry is named


GATE = """apiVersion: breakglass/v1
kind: Playbook
name: gated
description: test
severity: high
steps:
  - id: gate
    kind: approval
    with: {{approvers: responders, quorum: {quorum}, timeout: 1m, on_timeout: {on_timeout}, channels: {channels}}}
  - id: guarded
    kind: {kind}
    needs: [gate]
    with: {with_}
"""


def _validate(tmp_path: Path, inventory: Path, **fields) -> str:
    values = {"quorum": 1, "on_timeout": "abort", "channels": "[signed]", "kind": "snapshot",
              "with_": "{chain: ethereum, paused: [vault]}", **fields}
    shutil.copytree(REPO / "playbooks" / "templates", tmp_path / "templates", dirs_exist_ok=True)
    (tmp_path / "gated.yaml").write_text(GATE.format(**values))
    result = cli("validate", str(tmp_path / "gated.yaml"), "--inventory", str(inventory))
    return result.stderr if result.returncode else ""


DRILL_INVENTORY = REPO / "playbooks" / "inventories" / "drill.yaml"
LIVE_INVENTORY = REPO / "playbooks" / "inventories" / "example.yaml"


def test_proceed_is_refused_in_front_of_a_transaction_or_an_external_message(tmp_path: Path) -> None:
    transact = _validate(tmp_path, DRILL_INVENTORY, on_timeout="proceed", kind="transact",
                         with_="{contract: bridge, function: 'setRateLimit(uint256)', args: [0], signer: guardian}")
    assert "gated.yaml:9:" in transact and "on_timeout: proceed, but 'guarded' is a transact step" in transact
    external = _validate(tmp_path, DRILL_INVENTORY, on_timeout="proceed", kind="notify",
                         with_="{template: war-room-alert, to: [exchanges]}")
    assert "tells external contacts (exchange-a, exchange-b)" in external
    assert _validate(tmp_path, DRILL_INVENTORY, on_timeout="proceed") == ""
    assert _validate(tmp_path, DRILL_INVENTORY, on_timeout="proceed", kind="notify",
                     with_="{template: war-room-alert, to: [war-room]}") == ""
    assert _validate(tmp_path, DRILL_INVENTORY, on_timeout="proceed", kind="pause",
                     with_="{contracts: [vault], signer: guardian}") == ""


def test_unsigned_channels_need_quorum_one_and_a_drill_inventory(tmp_path: Path) -> None:
    several = _validate(tmp_path, DRILL_INVENTORY, quorum=2, channels="[signed, cli-unsigned]")
    assert "cli-unsigned votes are unverified, so they are allowed only with quorum 1" in several
    live = _validate(tmp_path, LIVE_INVENTORY, channels="[prefect-ui]")
    assert "count only in drill inventories" in live
    assert _validate(tmp_path, DRILL_INVENTORY, channels="[cli-unsigned, prefect-ui]") == ""


def test_escalate_needs_its_block_and_the_quorum_must_be_reachable(tmp_path: Path) -> None:
    assert "'escalate' is required with on_timeout: escalate" in _validate(tmp_path, DRILL_INVENTORY, on_timeout="escalate")
    assert "quorum 4 but roster group 'responders' has only 3 people" in _validate(tmp_path, DRILL_INVENTORY, quorum=4)
