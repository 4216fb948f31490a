"""The tx engine as a unit, with a fake at the wire: ``ctx.tx.send_once`` (``effects/onchain``) signs with
a real local key and talks JSON-RPC over HTTP to an in-process node (``tests/helpers/fakechain``).

What the fake sees is the proof: the journal holds the signed bytes before they arrive, a retry
after the receipt sends nothing again, and a refusal (a reverting simulation, a fee above the cap)
reaches the node as reads only, with nothing signed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from breakglass.flows.effects.engines import wire
from breakglass.flows.run.context import Bindings, StepContext
from breakglass.flows.run.journal import Journal
from breakglass.flows.run.ports import FeeCapTooLow, Intent, TxRejected
from breakglass.flows.spec.loader import load, require
from breakglass.integrations.chain.signers import LocalSigner, Signed
from tests.helpers.fakechain import GWEI, FakeChain

VAULT = "0x1111111111111111111111111111111111111111"
PAUSE = keccak(text="pause()")[:4]
INVENTORY = """\
apiVersion: breakglass/v1
kind: Inventory
name: unit
chains:
  ethereum:
    chain_id: 31337
    block_time: 0.1s
    rpc:
      - env: BG_UNIT_RPC_URL
    fees: {%s}
contracts:
  vault: {chain: ethereum, address: "%s", guardian: guardian}
signers:
  guardian: {kind: env, env: BG_UNIT_GUARDIAN_KEY, address: "%s"}
"""
FEES = "max_fee_gwei: 50, priority_fee_gwei: 2"


class Counting:
    """A real local signer that counts what it was asked to sign."""

    def __init__(self, signer: LocalSigner) -> None:
        self.inner, self.address, self.label, self.signed = signer, signer.address, signer.label, 0

    def sign(self, tx: dict[str, Any]) -> Signed:
        self.signed += 1
        return self.inner.sign(tx)


@pytest.fixture
def node() -> Iterator[FakeChain]:
    chain = FakeChain(chain_id=31337, base_fee=10 * GWEI)
    yield chain
    chain.close()


@pytest.fixture
def signer() -> Counting:
    return Counting(LocalSigner(Account.create(), "guardian"))  # a throwaway key, never printed


@pytest.fixture
def make_ctx(node: FakeChain, signer: Counting, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BG_UNIT_RPC_URL", node.url)
    run_dir = tmp_path / "home" / "INC-unit" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    made: list[StepContext] = []

    def make(fees: str = FEES) -> StepContext:
        """A step context as the runner wires it; a new one (and a new Journal object) per attempt, as on a resume."""
        path = tmp_path / "inventory.yaml"
        path.write_text(INVENTORY % (fees, VAULT, signer.address))
        inventory = require(load(path))
        ctx = wire(StepContext(incident="INC-unit", run_id="r1", run_key="INC-unit/r1/x", mode="live", step_id="pause",
                               inventory=inventory, bindings=Bindings(), artifacts_dir=run_dir / "artifacts",
                               home=tmp_path / "home", log=logging.getLogger("test.onchain"),
                               journal=Journal(run_dir / "journal.jsonl")))
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


def _intent(key: str = "INC-unit/r1/pause/vault") -> Intent:
    return Intent(key=key, chain="ethereum", to=VAULT, data=PAUSE, label="pause() on vault")


def _journal_lines(ctx: StepContext) -> list[dict[str, Any]]:
    path = ctx.journal.path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_signed_bytes_are_journaled_before_they_reach_the_node(node: FakeChain, signer: Counting, make_ctx) -> None:
    ctx = make_ctx()
    on_disk_at_broadcast: list[list[dict[str, Any]]] = []
    node.on_broadcast = lambda raw: on_disk_at_broadcast.append(
        [e for e in _journal_lines(ctx) if e.get("raw") == raw])  # read the file, from the node's thread
    outcome = ctx.tx.send_once(ctx.tx.io("ethereum"), signer, _intent())

    assert outcome.status == "mined" and node.count("eth_sendRawTransaction") == 1
    assert [[e["event"] for e in seen] for seen in on_disk_at_broadcast] == [["signed"]]
    sent = node.sent[0]
    assert outcome.tx_hash == sent["hash"] == on_disk_at_broadcast[0][0]["hash"]
    assert (sent["from"], sent["to"], sent["data"], sent["nonce"], sent["chainId"]) == (
        signer.address, VAULT, "0x" + PAUSE.hex(), 0, 31337)
    assert sent["maxPriorityFeePerGas"] == 2 * GWEI and sent["maxFeePerGas"] == 2 * 10 * GWEI + 2 * GWEI
    assert sent["gas"] == int(46_000 * 1.25) + 10_000  # the estimate with headroom
    events = [e["event"] for e in _journal_lines(ctx)]
    assert events == ["signed", "broadcast", "receipt"]
    assert node.methods.index("eth_call") < node.methods.index("eth_estimateGas") < node.methods.index(
        "eth_sendRawTransaction")  # simulated before anything was signed


def test_the_same_intent_after_its_receipt_is_not_sent_again(node: FakeChain, signer: Counting, make_ctx) -> None:
    first = make_ctx()
    done = first.tx.send_once(first.tx.io("ethereum"), signer, _intent())
    again = make_ctx()  # a retry or a resume: a new context, the journal read back from disk
    repeat = again.tx.send_once(again.tx.io("ethereum"), signer, _intent())

    assert node.count("eth_sendRawTransaction") == 1 and signer.signed == 1
    assert (repeat.status, repeat.tx_hash, repeat.block_number) == ("mined", done.tx_hash, done.block_number)
    assert [e["event"] for e in _journal_lines(again)] == ["signed", "broadcast", "receipt", "reconcile", "receipt"]
    other = again.tx.send_once(again.tx.io("ethereum"), signer, _intent("INC-unit/r1/pause/bridge"))
    assert other.tx_hash != done.tx_hash and node.sent[1]["nonce"] == 1  # another intent is another transaction


def test_a_reverting_simulation_is_refused_with_its_reason_and_signs_nothing(node: FakeChain, signer: Counting,
                                                                            make_ctx) -> None:
    node.revert = "0x" + keccak(text="EnforcedPause()")[:4].hex()  # OpenZeppelin's: already paused
    ctx = make_ctx()
    with pytest.raises(TxRejected, match=r"^EnforcedPause\(\)$"):
        ctx.tx.send_once(ctx.tx.io("ethereum"), signer, _intent())
    assert signer.signed == 0 and node.count("eth_sendRawTransaction") == 0
    assert _journal_lines(ctx) == []


def test_a_revert_with_a_message_carries_the_message(node: FakeChain, signer: Counting, make_ctx) -> None:
    from eth_abi import encode

    node.revert = "0x08c379a0" + encode(["string"], ["only the guardian"]).hex()
    ctx = make_ctx()
    with pytest.raises(TxRejected, match="reverted: only the guardian"):
        ctx.tx.send_once(ctx.tx.io("ethereum"), signer, _intent())
    assert signer.signed == 0 and node.count("eth_sendRawTransaction") == 0


def test_a_base_fee_above_the_cap_is_refused_and_signs_nothing(node: FakeChain, signer: Counting, make_ctx) -> None:
    node.base_fee = 80 * GWEI  # the inventory caps maxFeePerGas at 50 gwei
    ctx = make_ctx()
    with pytest.raises(FeeCapTooLow) as err:
        ctx.tx.send_once(ctx.tx.io("ethereum"), signer, _intent())
    assert str(err.value) == ("pause() on vault: the base fee on ethereum is 80 gwei, above the fee cap of 50 gwei; "
                              "raise chains.ethereum.fees.max_fee_gwei to send now")
    assert signer.signed == 0 and node.count("eth_sendRawTransaction") == 0
    assert _journal_lines(ctx) == []
    node.base_fee = 10 * GWEI  # the fee falls back under the cap: the same intent goes out, once
    assert ctx.tx.send_once(ctx.tx.io("ethereum"), signer, _intent()).status == "mined"
    assert signer.signed == 1 and node.count("eth_sendRawTransaction") == 1


def test_a_skip_that_says_the_work_is_done_reaches_no_signer(node: FakeChain, signer: Counting, make_ctx) -> None:
    ctx = make_ctx()
    outcome = ctx.tx.send_once(ctx.tx.io("ethereum"), signer, _intent(), skip=lambda: True)
    assert outcome.status == "skipped" and signer.signed == 0 and node.count("eth_sendRawTransaction") == 0


# --- a transaction that does not land at once ----------------------------------------------------

def _in_background(ctx: StepContext, signer: Counting) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["outcome"] = ctx.tx.send_once(ctx.tx.io("ethereum"), signer, _intent())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, box


def _until(condition: Any, what: str, timeout: float = 20.0) -> None:
    """Poll every 10 ms; a condition that calls ``node.advance`` makes a block pass at each look."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_transaction_left_in_the_pool_is_replaced_at_its_nonce_with_higher_fees(node: FakeChain, signer: Counting,
                                                                               make_ctx) -> None:
    node.automine = False
    ctx = make_ctx(FEES + ", bump_after_blocks: 2, bump_percent: 20")
    thread, box = _in_background(ctx, signer)
    try:
        _until(lambda: len(node.sent) == 1, "the first broadcast")
        _until(lambda: node.advance(1) or len(node.sent) == 2, "a replacement")  # blocks pass without it
        first, second = node.sent
        assert second["nonce"] == first["nonce"] == 0 and second["data"] == first["data"]
        assert second["maxPriorityFeePerGas"] >= first["maxPriorityFeePerGas"] * 1.2
        assert second["maxFeePerGas"] >= first["maxFeePerGas"] * 1.2
        node.mine(second["hash"])
        thread.join(20)
    finally:
        ctx.cancel.set()
    assert "error" not in box, box.get("error")
    outcome = box["outcome"]
    assert (outcome.status, outcome.tx_hash, outcome.hashes) == ("mined", second["hash"], [first["hash"], second["hash"]])
    events = [e["event"] for e in _journal_lines(ctx)]
    assert events[:2] == ["signed", "broadcast"] and events[-1] == "receipt" and events.count("replacement") == 1
    assert signer.signed == 2


def test_a_replacement_never_goes_above_the_fee_cap(node: FakeChain, signer: Counting, make_ctx) -> None:
    node.automine = False  # the first transaction asks 2 x 10 + 2 = 22 gwei; a 12.5% bump would need 24.75
    ctx = make_ctx("max_fee_gwei: 23, priority_fee_gwei: 2, bump_after_blocks: 1")
    thread, box = _in_background(ctx, signer)
    try:
        _until(lambda: len(node.sent) == 1, "the first broadcast")
        _until(lambda: node.advance(1) or any(e.get("reason") == "fee cap reached" for e in _journal_lines(ctx)), "the cap to be reached")
        assert len(node.sent) == 1 and signer.signed == 1  # the same bytes again, nothing new signed
        assert node.sent[0]["maxFeePerGas"] <= 23 * GWEI
        node.mine(node.sent[0]["hash"])
        thread.join(20)
    finally:
        ctx.cancel.set()
    assert box["outcome"].status == "mined" and box["outcome"].tx_hash == node.sent[0]["hash"]
