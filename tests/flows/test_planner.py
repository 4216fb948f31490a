"""The planner as a unit: the order of steps, the plan of the shipped playbooks, templates rendered
into concrete step parameters, and the scheduler's decision (``planner.ready``) that the runner acts on.

No Prefect, no chain, no subprocess: the planner is a pure function of its arguments.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from breakglass.flows import planner
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language import inputs, templating
from breakglass.flows.spec.validate import load_playbook
from tests.conftest import REPO

EXAMPLE = REPO / "playbooks" / "inventories" / "example.yaml"
DRILL = REPO / "playbooks" / "inventories" / "drill.yaml"
LIVE = {"compromised_signer": "0x3333333333333333333333333333333333333333",
        "attacker": "0x9999999999999999999999999999999999999999", "attack_tx": "0x" + "ab" * 32,
        "exploit_contract": "0x8888888888888888888888888888888888888888"}
VAULT = "0x1111111111111111111111111111111111111111"  # the example inventory's vault


BY_TYPE = {"address": "0x7777777777777777777777777777777777777777", "tx_hash": "0x" + "cd" * 32, "int": "1",
           "bool": "true", "string": "an example", "list[address]": "0x7777777777777777777777777777777777777777"}


def _plan(name: str, inventory: Path) -> planner.Plan:
    pb, inv = load_playbook(REPO / "playbooks" / f"{name}.yaml", inventory)
    assert inv is not None
    given = {k: LIVE.get(k, BY_TYPE.get(spec.type)) for k, spec in pb.inputs.items()
             if spec.is_required and spec.default is None}
    return planner.plan(pb, inv, inputs.resolve(pb, given, inv))


@pytest.fixture(autouse=True)
def _no_rpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning resolves no RPC endpoint: with the inventory's RPC variables unset it still plans."""
    for name in ("ETH_RPC_URL", "ETH_RPC_URL_BACKUP", "L2_RPC_URL", "ARB_RPC_URL"):
        monkeypatch.delenv(name, raising=False)


# --- the shipped playbooks ------------------------------------------------------------------------

def test_the_flagship_plan_orders_waves_by_the_longest_chain_of_needs() -> None:
    plan = _plan("guardian-key-compromise", EXAMPLE)
    assert plan.waves == [["snapshot-detection", "pause-all", "alert-war-room"], ["watchlist", "confirmations"],
                          ["approve-external"],
                          ["freeze-request", "seal-911", "bridge-rate-limit-zero", "revoke-compromised"],
                          ["rotate-safe"], ["snapshot-followup"]]
    waves = {s.id: s.wave for s in plan.steps}
    for step in plan.steps:  # every step comes after all of its needs, one wave further at least
        assert all(waves[n] < step.wave for n in step.needs), step.id
    assert (plan.playbook, plan.severity, plan.inventory, plan.mode) == (
        "guardian-key-compromise", "critical", "example", "live")


def test_the_plan_names_targets_gates_and_time_limits() -> None:
    steps = {s.id: s for s in _plan("guardian-key-compromise", EXAMPLE).steps}
    pause = steps["pause-all"]
    assert pause.targets == (f"pause() on vault ({VAULT}, chain ethereum) via signer guardian",
                             "pause() on bridge (0x2222222222222222222222222222222222222222, chain ethereum) via signer guardian")
    assert (pause.gate, pause.timeout, pause.retries) == (False, 120.0, 2)
    gate = steps["approve-external"]
    assert gate.gate is True and gate.kind == "approval" and gate.timeout is None
    assert gate.targets == ("2 of roster group responders, not the initiator; signed, slack; timeout 600s then escalate",)
    assert [s.id for s in steps.values() if s.gate] == ["approve-external"]
    revoke = steps["revoke-compromised"]  # an input is rendered into the targets before anything runs
    assert all("from 0x3333333333333333333333333333333333333333" in t for t in revoke.targets)
    assert steps["snapshot-followup"].needs == ("confirmations", "bridge-rate-limit-zero", "rotate-safe")


def test_the_drill_inventory_plans_the_same_graph_with_placeholders_for_addresses() -> None:
    live, drill = _plan("guardian-key-compromise", EXAMPLE), _plan("guardian-key-compromise", DRILL)
    assert drill.mode == "drill" and drill.inventory == "drill"
    assert drill.waves == live.waves
    assert [(s.gate, s.timeout, s.retries) for s in drill.steps] == [(s.gate, s.timeout, s.retries) for s in live.steps]
    pause = next(s for s in drill.steps if s.id == "pause-all")
    assert pause.targets[0] == "pause() on vault (fixture:vault, chain ethereum) via signer guardian"


def test_the_active_drain_plan_puts_the_pause_first_and_no_gate_before_it() -> None:
    plan = _plan("active-drain", EXAMPLE)
    assert plan.waves == [["pause-all", "snapshot-detection", "alert-war-room"], ["watchlist"], ["approve-external"],
                          ["freeze-request", "seal-911"]]
    assert plan.steps[0].id == "pause-all" and plan.steps[0].needs == ()
    doc = plan.to_json()
    assert doc["inputs"]["chain"] == "ethereum"  # the default was applied
    assert doc["steps"][0] == {"id": "pause-all", "kind": "pause", "wave": 0, "needs": [], "if": None,
                               "targets": list(plan.steps[0].targets), "gate": False, "timeout": 120.0, "retries": 2}


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "playbooks").glob("*.yaml")))
def test_every_library_playbook_plans_against_the_example_inventory(name: str) -> None:
    plan = _plan(name, EXAMPLE)
    ids = [s.id for s in plan.steps]
    assert len(ids) == len(set(ids)) >= 3
    assert [s.wave for s in plan.steps] == sorted(s.wave for s in plan.steps)
    seen: set[str] = set()
    for step in plan.steps:
        assert set(step.needs) <= seen, f"{step.id} is planned before one of its needs"
        assert step.targets, f"{step.id} has no targets"
        seen.add(step.id)


# --- order ---------------------------------------------------------------------------------------

def _book(*steps: tuple[str, list[str]]) -> Any:
    return SimpleNamespace(steps=[SimpleNamespace(id=sid, needs=needs) for sid, needs in steps])


def test_order_keeps_file_order_within_a_wave() -> None:
    book = _book(("z", []), ("late", ["a"]), ("a", []), ("m", []))
    assert [(s.id, w) for s, w in planner.order(book)] == [("z", 0), ("a", 0), ("m", 0), ("late", 1)]


def test_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        planner.order(_book(("a", ["b"]), ("b", ["a"]), ("c", [])))


# --- resolve_step --------------------------------------------------------------------------------

SEAM = """\
apiVersion: breakglass/v1
kind: Playbook
name: seam
description: a playbook for the planner's unit tests
severity: high
inputs:
  chain: {type: chain, default: ethereum}
  suspect: {type: address}
steps:
  - id: snap
    kind: snapshot
    with:
      chain: "{{ inputs.chain }}"
      balances: {accounts: ["{{ inputs.suspect }}", vault], tokens: [native]}
  - id: later
    kind: snapshot
    needs: [snap]
    with:
      chain: "{{ inputs.chain }}"
      block: "{{ steps.snap.outputs.block_number }}"
      balances: {accounts: ["{{ alert.raw.to }}"], tokens: [native]}
"""
SUSPECT = "0x" + "34" * 20


@pytest.fixture
def seam(tmp_path: Path) -> Any:
    path = tmp_path / "seam.yaml"
    path.write_text(SEAM)
    pb, inv = load_playbook(path, EXAMPLE)
    return SimpleNamespace(playbook=pb, inventory=inv)


def test_templates_render_from_inputs_the_alert_and_earlier_outputs_into_concrete_values(seam: Any) -> None:
    step = seam.playbook.step("later")
    to = "0x" + "12" * 20
    resolved = planner.resolve_step(step, {"inputs": {"chain": "ethereum"}, "alert": {"raw": {"to": to}},
                                           "steps": {"snap": {"outputs": {"block_number": 123}}}})
    assert (resolved.with_.chain, resolved.with_.block, resolved.with_.balances.accounts) == ("ethereum", 123, [to])
    assert step.with_.block == "{{ steps.snap.outputs.block_number }}"  # the playbook's own step is untouched


def test_a_rendered_value_of_the_wrong_type_is_an_error_that_names_the_field(seam: Any) -> None:
    step = seam.playbook.step("later")
    with pytest.raises(BreakglassError) as err:
        planner.resolve_step(step, {"inputs": {"chain": "ethereum"}, "alert": {"raw": {"to": SUSPECT}},
                                    "steps": {"snap": {"outputs": {"block_number": "soon"}}}})
    text = str(err.value)
    assert text.startswith("after rendering templates: with.block: ")
    assert "valid integer" in text and "{{" not in text.split("with.block:")[0]


def test_a_missing_output_is_a_template_error_not_an_empty_value(seam: Any) -> None:
    with pytest.raises(templating.TemplateError, match=r"steps\.snap\.outputs\.block_number"):
        planner.resolve_step(seam.playbook.step("later"), {"inputs": {"chain": "ethereum"}, "alert": templating.NO_ALERT,
                                                           "steps": {}})


def test_the_plan_renders_inputs_now_and_leaves_later_outputs_as_templates(seam: Any) -> None:
    plan = planner.plan(seam.playbook, seam.inventory, {"chain": "ethereum", "suspect": SUSPECT})
    snap, later = plan.steps
    assert snap.targets == ("chain ethereum at block latest", "balances of 2 account(s) in native")
    assert later.targets[0] == "chain {{ inputs.chain }} at block {{ steps.snap.outputs.block_number }}"
    assert (later.wave, later.needs) == (1, ("snap",))


# --- the scheduler's decision --------------------------------------------------------------------

def _ready(book: Any, completed: set[str] = frozenset(), skipped: set[str] = frozenset(),  # type: ignore[assignment]
           failed: set[str] = frozenset(), running: set[str] = frozenset(),  # type: ignore[assignment]
           stopping: bool = False) -> tuple[list[str], list[tuple[str, str, str]]]:
    start, skips = planner.ready(planner.order(book), completed, skipped, failed, running, stopping=stopping)
    return start, [(s.step, s.blocker, s.why) for s in skips]


DIAMOND = _book(("root", []), ("left", ["root"]), ("right", ["root"]), ("join", ["left", "right"]), ("solo", []))


def test_a_diamond_starts_its_roots_then_both_sides_then_the_join() -> None:
    assert _ready(DIAMOND) == (["root", "solo"], [])
    assert _ready(DIAMOND, running={"root", "solo"}) == ([], [])
    assert _ready(DIAMOND, completed={"root"}, running={"solo"}) == (["left", "right"], [])
    assert _ready(DIAMOND, completed={"root", "left", "solo"}, running={"right"}) == ([], [])
    assert _ready(DIAMOND, completed={"root", "left", "right", "solo"}) == (["join"], [])
    assert _ready(DIAMOND, completed={"root", "left", "right", "solo", "join"}) == ([], [])


def test_a_failed_root_skips_its_descendants_transitively_with_the_right_blocker() -> None:
    start, skips = _ready(DIAMOND, failed={"root"}, running={"solo"})
    assert start == []
    assert skips == [("left", "root", "failed"), ("right", "root", "failed"), ("join", "left", "was skipped")]
    skip = planner.ready(planner.order(DIAMOND), set(), set(), {"root"}, set())[1][2]
    assert skip.reason == "needs 'left', which was skipped"  # the words the run record and the log carry


def test_one_failed_side_skips_the_join_and_lets_the_other_side_finish() -> None:
    assert _ready(DIAMOND, completed={"root", "solo"}, failed={"left"}, running={"right"}) == (
        [], [("join", "left", "failed")])
    assert _ready(DIAMOND, completed={"root", "solo", "right"}, skipped={"left"}) == (
        [], [("join", "left", "was skipped")])


def test_the_blocker_is_the_first_need_in_the_order_written() -> None:
    book = _book(("a", []), ("b", []), ("c", ["b", "a"]))
    assert _ready(book, failed={"a"}, skipped={"b"}) == ([], [("c", "b", "was skipped")])


def test_a_gate_holds_its_dependents_while_it_waits_and_skips_them_when_it_is_refused() -> None:
    book = load_playbook(REPO / "playbooks" / "guardian-key-compromise.yaml", EXAMPLE)[0]
    before = {"snapshot-detection", "pause-all", "alert-war-room", "watchlist", "confirmations"}
    start, skips = planner.ready(planner.order(book), before, set(), set(), {"approve-external"})
    assert start == [] and skips == []  # the gate is waiting for votes: nothing behind it starts, nothing is skipped
    start, skips = planner.ready(planner.order(book), before, set(), {"approve-external"}, set())
    assert start == []
    assert [(s.step, s.blocker, s.why) for s in skips] == [
        ("freeze-request", "approve-external", "failed"), ("seal-911", "approve-external", "failed"),
        ("bridge-rate-limit-zero", "approve-external", "failed"), ("revoke-compromised", "approve-external", "failed"),
        ("rotate-safe", "revoke-compromised", "was skipped"), ("snapshot-followup", "bridge-rate-limit-zero", "was skipped")]
    start, _ = planner.ready(planner.order(book), before | {"approve-external"}, set(), set(), set())
    assert start == ["freeze-request", "seal-911", "bridge-rate-limit-zero", "revoke-compromised"]


def test_a_stopping_run_starts_nothing_and_skips_nothing() -> None:
    assert _ready(DIAMOND, stopping=True) == ([], [])
    assert _ready(DIAMOND, failed={"root"}, stopping=True) == ([], [])  # what never ran stays pending for a resume


def test_ready_does_not_change_the_sets_it_is_given() -> None:
    skipped: set[str] = set()
    planner.ready(planner.order(DIAMOND), set(), skipped, {"root"}, set())
    assert skipped == set()
