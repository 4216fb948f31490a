"""The run entry point before Prefect (``engine/entry.begin``) as a unit: what it refuses before anything
exists, and what it creates. The chain is the in-process JSON-RPC node of ``tests/helpers/fakechain``;
Prefect is never asked (``begin`` runs before the API is called).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from breakglass.flows.engine import entry
from breakglass.flows.errors import BreakglassError
from tests.helpers.fakechain import FakeChain

VAULT = "0x1111111111111111111111111111111111111111"
GUARDIAN = "0x2222222222222222222222222222222222222222"
INVENTORY = f"""\
apiVersion: breakglass/v1
kind: Inventory
name: unit
chains:
  ethereum:
    chain_id: 31337
    block_time: 1s
    rpc:
      - env: BG_UNIT_RPC_URL
contracts:
  vault: {{chain: ethereum, address: "{VAULT}", guardian: guardian}}
signers:
  guardian: {{kind: env, env: BG_UNIT_GUARDIAN_KEY, address: "{GUARDIAN}"}}
roster:
  people:
    alice: {{address: "0x5555555555555555555555555555555555555555"}}
    bob: {{address: "0x6666666666666666666666666666666666666666"}}
  groups:
    responders: [alice, bob]
"""
PLAYBOOK = """\
apiVersion: breakglass/v1
kind: Playbook
name: unit-pause
description: a pause behind a gate, for the entry point's unit tests
severity: critical
inputs:
  attacker: {type: address}
steps:
  - id: approve
    kind: approval
    with: {approvers: responders, quorum: 1, exclude_initiator: true, timeout: 5m, on_timeout: abort, channels: [signed]}
  - id: pause-vault
    kind: pause
    needs: [approve]
    with: {contracts: [vault], signer: guardian}
"""
ATTACKER = "0x9999999999999999999999999999999999999999"


@pytest.fixture
def node() -> Iterator[FakeChain]:
    chain = FakeChain(chain_id=31337)
    chain.code[VAULT] = "0x6080604052"
    yield chain
    chain.close()


@pytest.fixture
def files(tmp_path: Path, node: FakeChain, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BG_UNIT_RPC_URL", node.url)
    monkeypatch.setenv("BG_UNIT_GUARDIAN_KEY", "set")  # only its presence is checked before the run exists
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "playbook.yaml").write_text(PLAYBOOK)
    return tmp_path


def _begin(files: Path, **overrides: Any) -> Any:
    args: dict[str, Any] = {"playbook_path": files / "playbook.yaml", "inventory_path": files / "inventory.yaml",
                            "given": {"attacker": ATTACKER}, "incident": "INC-entry", "home": files / "home",
                            "initiator": "alice", **overrides}
    return entry.begin(**args)


def _nothing_created(files: Path) -> bool:
    return not (files / "home" / "INC-entry").exists()


def test_begin_creates_the_run_with_its_inputs_and_initiator_and_sends_nothing(files: Path, node: FakeChain) -> None:
    handle, report = _begin(files)
    record = handle.load()
    assert (record.incident, record.mode, record.playbook.name, record.initiator) == ("INC-entry", "live", "unit-pause",
                                                                                      "alice")
    assert (handle.dir / "playbook.yaml").read_text() == PLAYBOOK  # the run keeps its own copy of what it runs
    assert (handle.dir / "inventory.yaml").read_text() == INVENTORY
    assert record.inputs == {"attacker": ATTACKER}
    assert [(s.id, s.status) for s in record.steps] == [("approve", "pending"), ("pause-vault", "pending")]
    assert report is None  # no prepared pause in this playbook
    assert node.count("eth_getCode") == 1 and node.count("eth_sendRawTransaction") == 0


def test_every_missing_variable_is_named_at_once_and_nothing_is_created(files: Path, node: FakeChain,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BG_UNIT_RPC_URL")
    monkeypatch.delenv("BG_UNIT_GUARDIAN_KEY")
    with pytest.raises(BreakglassError) as err:
        _begin(files)
    text = str(err.value)
    assert text.startswith("refusing to start playbook 'unit-pause': 2 environment variable(s) it needs are not set: ")
    assert "BG_UNIT_GUARDIAN_KEY" in text and "BG_UNIT_RPC_URL" in text and text.endswith("nothing was signed or sent")
    assert _nothing_created(files) and node.methods == []


def test_a_contract_without_code_refuses_the_start_by_name(files: Path, node: FakeChain) -> None:
    node.code.clear()  # the inventory's vault address is an EOA on this chain
    with pytest.raises(BreakglassError, match=rf"no contract code at vault \({VAULT} on ethereum\)"):
        _begin(files)
    assert _nothing_created(files) and node.count("eth_sendRawTransaction") == 0


def test_a_gate_that_excludes_the_initiator_needs_to_know_who_that_is(files: Path, node: FakeChain) -> None:
    with pytest.raises(BreakglassError, match=r"gate\(s\) approve exclude the person who starts the run: say who you are "
                                              r"with --as NAME"):
        _begin(files, initiator=None)
    with pytest.raises(BreakglassError, match=r"--as mallory: not on the roster of inventory 'unit' \(roster: alice, bob\)"):
        _begin(files, initiator="mallory")
    assert _nothing_created(files) and node.methods == []


def test_bad_inputs_and_a_live_inventory_in_a_drill_are_refused_before_anything(files: Path, node: FakeChain) -> None:
    with pytest.raises(BreakglassError, match="input 'attacker' \\(address\\)"):
        _begin(files, given={"attacker": "0xnope"})
    with pytest.raises(BreakglassError, match="is a live inventory .* drills refuse it"):
        _begin(files, expect_mode="drill")
    assert _nothing_created(files) and node.methods == []
