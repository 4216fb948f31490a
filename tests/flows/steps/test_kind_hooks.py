"""Step kinds own their rules outside `steps/` too: whether a kind is a gate, pauses contracts, tells people,
which messages and transactions its outputs hold, how many watch-list entries it made, whether its gate
excludes the initiator. Reports, scorecards, recovery, voting, the runner and the fast path ask these
hooks; nothing outside `steps/` compares a step's kind with a kind's name (a test holds it)."""

from __future__ import annotations

import re

import pytest

from breakglass.flows.engine import entry, recovery
from breakglass.flows.errors import BreakglassError
from breakglass.flows.evidence import report_parts, scorecard
from breakglass.flows.language.inventory import Inventory
from breakglass.flows.run.records import RunRecord, StepRecord
from breakglass.flows.steps import REGISTRY, is_gate
from breakglass.flows.steps.base import KindBase, StepKind
from tests.conftest import REPO

INVENTORY = Inventory.model_validate({
    "apiVersion": "breakglass/v1", "kind": "Inventory", "name": "hooks",
    "chains": {"ethereum": {"chain_id": 1, "block_time": 12, "rpc": [{"env": "RPC"}], "explorer": "https://etherscan.io"}},
    "roster": {"people": {"alice": {}}, "groups": {"ops": ["alice"]}}})
TX = "0x" + "ab" * 32


def record(*steps: StepRecord) -> RunRecord:
    ref = {"name": "p", "path": "playbook.yaml", "source": "p.yaml", "sha256": "0" * 64}
    return RunRecord.model_validate({
        "run_id": "p-1", "run_key": "i/p/x", "incident": "i", "mode": "live", "playbook": ref,
        "inventory": {**ref, "name": "hooks"}, "inputs": {}, "inputs_sha256": "x", "breakglass_version": "0",
        "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
        "steps": [s.model_dump() for s in steps]})


def test_every_kind_has_every_hook_the_protocol_declares() -> None:
    hooks = [name for name in dir(StepKind) if not name.startswith("_")]
    for kind, handler in REGISTRY.items():
        missing = [h for h in hooks if not hasattr(handler, h)]
        assert missing == [], f"{kind} lacks {missing}"
    assert {k for k, h in REGISTRY.items() if h.gate} == {"approval"}
    assert {k for k, h in REGISTRY.items() if h.pauses} == {"pause"}
    assert {k for k, h in REGISTRY.items() if h.notifies} == {"notify"}


def test_the_report_names_each_kinds_transactions_as_the_kind_says() -> None:
    paused = StepRecord(id="stop", kind="pause", status="completed", outputs={"results": [
        {"contract": "vault", "chain": "ethereum", "tx_hash": TX, "status": "confirmed", "function": "ignored"},
        {"contract": "bridge", "chain": "ethereum", "tx_hash": None, "status": "skipped"}]})
    called = StepRecord(id="call", kind="transact", status="completed", outputs={
        "contract": "vault", "function": "setLimit(uint256)", "chain": "ethereum", "tx_hash": TX, "status": "confirmed"})
    told = StepRecord(id="tell", kind="notify", status="completed", outputs={"deliveries": []})
    rows = report_parts.outputs_actions(record(paused, called, told), INVENTORY, REGISTRY)
    assert [(r["step"], r["what"]) for r in rows] == [("stop", "vault.pause()"), ("call", "vault.setLimit(uint256)")]
    assert rows[0]["url"] == f"https://etherscan.io/tx/{TX}"


def test_scorecards_count_what_each_kind_declares() -> None:
    delivered = {"recipient": "desk", "status": "delivered", "channel": "outbox"}
    run = record(StepRecord(id="tell", kind="notify", status="completed", outputs={"deliveries": [delivered]}),
                 StepRecord(id="post", kind="watchlist", status="completed", outputs={"entries": 7, "deliveries": [
                     {"recipient": "exchange", "status": "delivered"}]}),
                 StepRecord(id="look", kind="snapshot", status="completed", outputs={"entries": 99}))
    assert [REGISTRY[s.kind].deliveries(s.outputs or {}) for s in run.steps] == [[delivered], [], []]
    assert max(REGISTRY[s.kind].listed(s.outputs or {}) for s in run.steps) == 7
    entries = [{"event": "journal.delivered", "at": "2026-12-01T00:00:05Z", "intent": "i/p/x/post/k"},
               {"event": "journal.delivered", "at": "2026-12-01T00:00:09Z", "intent": "i/p/x/tell/k"},
               {"event": "journal.broadcast", "at": "2026-12-01T00:00:03Z", "intent": "i/p/x/call/1"},
               {"event": "journal.broadcast", "at": "2026-12-01T00:00:04Z", "intent": "i/p/x/stop/pause"}]
    kinds = {"post": "watchlist", "tell": "notify", "call": "transact", "stop": "pause"}
    found = scorecard.metrics(run, entries, kinds, response=False)
    assert found["first_notification"] == 9.0 and found["pause_submitted"] == 4.0


def test_gates_are_known_by_their_hook_even_from_a_record() -> None:
    assert is_gate("approval") and not is_gate("notify") and not is_gate("no-such-kind")
    failed_gate = StepRecord(id="ok", kind="approval", status="failed")
    failed_step = StepRecord(id="tell", kind="notify", status="failed")
    assert recovery.gate_aborted(REPO, failed_step) is False  # not a gate: never a gate's abort
    assert recovery.gate_aborted(REPO / "no-such-run", failed_gate) is False  # a gate without state


def test_a_gate_that_excludes_the_initiator_needs_to_know_who_that_is(tmp_path) -> None:
    from breakglass.flows.spec.playbook import Playbook

    book = Playbook.model_validate({
        "apiVersion": "breakglass/v1", "kind": "Playbook", "name": "p", "description": "d", "severity": "high",
        "steps": [{"id": "ok", "kind": "approval", "with": {"approvers": "ops", "quorum": 1,
                                                            "exclude_initiator": True, "timeout": 60,
                                                            "on_timeout": "abort"}}]})
    assert [REGISTRY[s.kind].excludes_initiator(s) for s in book.steps] == [True]
    with pytest.raises(BreakglassError, match="gate\\(s\\) ok exclude the person who starts the run"):
        entry.check_initiator(book, INVENTORY, None, "serve")
    entry.check_initiator(book, INVENTORY, "alice", "cli")


def test_the_fast_path_asks_the_step_whether_it_is_a_prepared_pause() -> None:
    from breakglass.flows.effects import prepared
    from breakglass.flows.spec.playbook import Playbook

    book = Playbook.model_validate({
        "apiVersion": "breakglass/v1", "kind": "Playbook", "name": "p", "description": "d", "severity": "high",
        "steps": [{"id": "fast", "kind": "pause", "with": {"contracts": ["vault"],
                                                          "signer": "guardian", "prepared": True}},
                  {"id": "slow", "kind": "pause", "with": {"contracts": ["vault"],
                                                          "signer": "guardian"}},
                  {"id": "tell", "kind": "notify", "with": {"template": "t", "to": ["x"]}}]})
    assert [s.id for s in prepared.prepared_steps(book)] == ["fast"]
    assert [s.prepared_pause() for s in book.steps] == [True, False, False]


def test_kind_base_defaults_say_nothing() -> None:
    base = KindBase()
    assert (base.gate, base.pauses, base.notifies, base.protective) == (False, False, False, False)
    assert base.deliveries({"deliveries": [{"x": 1}]}) == [] and base.listed({"entries": 3}) == 0
    assert base.transactions({"tx_hash": TX}) == [{"tx_hash": TX}] and base.transactions({}) == []


def test_no_module_outside_steps_compares_a_kind_with_a_kind_name() -> None:
    names = "|".join(map(re.escape, REGISTRY))
    # `kind == "approval"`, `kinds.get(step) != "pause"`, `s.kind in ("notify", ...)`, `{% if b.kind == 'approval' %}`
    compare = re.compile(rf"""kind[^=\n]*[!=]=\s*["']({names})["']|kind\w*\s+in\s*\(\s*["']({names})["']""")
    found = [f"{p.relative_to(REPO)}:{n}: {line.strip()}"
             for p in [*(REPO / "flows").rglob("*.py"), *(REPO / "flows").rglob("*.j2")]
             if "steps" not in p.relative_to(REPO / "flows").parts
             for n, line in enumerate(p.read_text().splitlines(), 1) if compare.search(line)]
    assert found == [], "\n".join(found)
