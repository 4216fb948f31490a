"""The playbook library: every shipped playbook has a drill spec, and every drill passes end to end
(real anvils, the real Prefect server, alerts in their monitors' real formats) with the effects
that its scenario promises, read back from the chain's own answers in the run's snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, cli

LIBRARY = ("guardian-key-compromise", "bridge-validation-exploit", "oracle-manipulation",
           "malicious-governance-proposal", "frontend-compromise", "active-drain", "unpause-and-recover")
SHIPPED = sorted(p.stem for p in (REPO / "playbooks").glob("*.yaml"))
DRILLED = [name for name in SHIPPED if name != "guardian-key-compromise"]  # the flagship has tests/flows/drills/test_drill.py


def test_every_shipped_playbook_has_a_drill_spec_and_a_docs_page() -> None:
    for name in SHIPPED:
        assert (REPO / "playbooks" / "drills" / f"{name}.yaml").is_file(), name
        page = REPO / "docs" / "playbooks" / f"{name}.md"
        assert page.is_file(), f"{name}: no {page.relative_to(REPO)}"


def test_the_library_is_complete() -> None:
    assert sorted(LIBRARY) == SHIPPED


@pytest.fixture(scope="module")
def drills(prefect_api, home: Path) -> dict[str, Any]:
    """Each library drill once: (completed process, run record, run dir)."""
    out: dict[str, Any] = {}
    for name in DRILLED:
        result = cli("drill", f"playbooks/{name}.yaml", "--auto-approve", "--json", timeout=240)
        record = json.loads(result.stdout) if result.stdout.strip() else {}
        run_dir = home / "incidents" / record.get("incident", "?") / "runs" / record.get("run_id", "?")
        out[name] = (result, record, run_dir)
    # the way back, in an incident the flagship contained: one of its two watch-list entries (the admin key
    # believed compromised) turned out to be a false positive; the attacker stays listed
    flagship = cli("drill", "playbooks/guardian-key-compromise.yaml", "--auto-approve", "--json", timeout=240)
    assert flagship.returncode == 0, flagship.stderr[-3000:]
    contained = json.loads(flagship.stdout)
    contained_dir = home / "incidents" / contained["incident"] / "runs" / contained["run_id"]
    admin = json.loads((contained_dir / "bindings.json").read_text())["addresses"]["fixture:admin"]
    result = cli("drill", "playbooks/unpause-and-recover.yaml", "--auto-approve", "--json", "--incident",
                 contained["incident"], "--input", f"retract={admin}", timeout=240)
    record = json.loads(result.stdout) if result.stdout.strip() else {}
    out["closing"] = (result, record, home / "incidents" / contained["incident"] / "runs" / record.get("run_id", "?"), admin)
    return out


def _steps(record: dict[str, Any]) -> dict[str, Any]:
    return {s["id"]: s for s in record["steps"]}


def _ints(call: dict[str, Any]) -> list[int]:
    """A view call's result; integers too large for JSON numbers are kept as decimal strings."""
    return [int(v) for v in call["result"]]


def _calls(run_dir: Path, step: dict[str, Any]) -> dict[str, Any]:
    """A snapshot step's view-call results by label, from its artifact (checked against its recorded hash)."""
    import hashlib

    home = run_dir.parents[3]
    data = (home / step["outputs"]["artifact"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == step["outputs"]["sha256"]
    return {c["label"]: c for c in json.loads(data)["calls"]}


@pytest.mark.parametrize("name", DRILLED)
def test_each_library_drill_passes_its_scorecard(drills, name: str) -> None:
    result, record, run_dir = drills[name]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert record["status"] == "completed" and record["mode"] == "drill"
    card = json.loads((run_dir / "artifacts" / "scorecard.json").read_text())
    assert card["gaps"] == [], card["gaps"]
    assert card["expectations"] and all(e["met"] for e in card["expectations"])


def test_bridge_drill_closes_both_ends_on_two_chains(drills) -> None:
    _, record, run_dir = drills["bridge-validation-exploit"]
    steps = _steps(record)
    assert steps["pause-destination"]["outputs"]["paused"] == {"bridge-l2": True}
    assert steps["pause-source"]["outputs"]["paused"] == {"bridge": True}
    destination, source = steps["snapshot-destination"]["outputs"], steps["snapshot-source"]["outputs"]
    assert (destination["chain_id"], source["chain_id"]) == (31338, 31337)  # two chains, really
    assert _calls(run_dir, steps["snapshot-destination"])["destination release limit"]["result"] == [0]
    assert _calls(run_dir, steps["snapshot-source"])["source release limit"]["result"] == [0]
    # the forged release happened on the destination chain, and the receiver is on the watch list
    released = _calls(run_dir, steps["snapshot-destination"])["released in the current window"]
    assert _ints(released) == [100 * 10**18]
    assert steps["watchlist"]["outputs"]["active"] == 1


def test_oracle_drill_keeps_the_evidence_and_pauses_the_market_not_the_feed(drills) -> None:
    _, record, run_dir = drills["oracle-manipulation"]
    steps = _steps(record)
    calls = _calls(run_dir, steps["snapshot-detection"])
    assert _ints(calls["oracle price (fUSD per fETH)"]) == [100_000 * 10**18]
    assert _ints(calls["attacker debt"]) == [90_000 * 10**18]
    assert _ints(calls["attacker collateral"]) == [10 * 10**18]
    assert steps["pause-market"]["outputs"]["paused"] == {"market": True}
    after = json.loads((run_dir.parents[3] / steps["snapshot-paused"]["outputs"]["artifact"]).read_text())
    paused = {p["contract"]: p["paused"] for p in after["paused"]}
    assert paused == {"market": True, "oracle": False}


def test_governance_drill_vetoes_the_queued_proposal_and_extends_the_delay(drills) -> None:
    _, record, run_dir = drills["malicious-governance-proposal"]
    steps = _steps(record)
    before = _calls(run_dir, steps["snapshot-detection"])
    after = _calls(run_dir, steps["snapshot-after"])
    assert _ints(before[next(k for k in before if k.startswith("proposal state"))]) == [2]  # queued
    assert _ints(after["proposal state"]) == [4]  # vetoed
    assert _ints(before["timelock delay (s)"]) == [3_600]
    assert _ints(after["timelock delay (s)"]) == [86_400]
    votes = steps["approve-veto"]["outputs"]["votes"]
    assert len(votes) == 2 and "alice" not in {v["name"] for v in votes}  # two, never the initiator


def test_frontend_drill_warns_users_first_and_pauses_nothing(drills) -> None:
    _, record, run_dir = drills["frontend-compromise"]
    steps = _steps(record)
    assert steps["approve-pause"]["status"] == "skipped" and steps["pause-if-approvals"]["status"] == "skipped"
    outbox = sorted((run_dir / "artifacts" / "outbox").rglob("*"))
    assert outbox, "no message was written"
    sent = {s: steps[s]["outputs"]["deliveries"][0]["recipient"] for s in ("status-webhook", "wallet-providers")}
    assert sent == {"status-webhook": "status-page", "wallet-providers": "wallet-provider-a"}


def test_active_drain_pauses_before_anything_else_happens(drills) -> None:
    _, record, run_dir = drills["active-drain"]
    pause = _steps(record)["pause-all"]["outputs"]
    assert all(r["fast_path"].startswith("sent from the prepared transaction") for r in pause["results"])
    audit = [json.loads(line) for line in (run_dir.parents[1] / "audit.jsonl").read_text().splitlines()]
    first_broadcast = next(i for i, e in enumerate(audit) if e["event"] == "journal.broadcast")
    first_step = next(i for i, e in enumerate(audit) if e["event"] == "step.started")
    assert first_broadcast < first_step  # both pauses were on the wire before the run's first task began
    assert {e["to"] for e in audit[:first_step] if e["event"] == "journal.broadcast"} == {
        r["address"] for r in pause["results"]}


def test_unpause_needs_two_signed_votes_proves_nothing_moved_and_reopens_vault_before_bridge(drills) -> None:
    _, record, _ = drills["unpause-and-recover"]
    steps = _steps(record)
    gate = steps["approve-unpause"]["outputs"]
    assert gate["decision"] == "approved" and len(gate["votes"]) == 2
    # the drill's auto-approver signs each vote with the voter's fixture key: a gate with channels [signed] counts
    # only votes whose EIP-712 signature recovers to the roster address
    assert all(v["address"] for v in gate["votes"]) and "alice" not in {v["name"] for v in gate["votes"]}
    assert steps["nothing-moved"]["outputs"]["changed"] == 0
    checked = steps["vault-checked"]["outputs"]
    assert checked["changed"] == 1 and checked["paused"][0]["contract"] == "vault"
    assert checked["paused"][0]["before"] is True and checked["paused"][0]["after"] is False
    blocks = [steps[s]["outputs"]["block_number"] for s in ("unpause-vault", "bridge-limit", "unpause-bridge")]
    assert blocks == sorted(blocks) and blocks[0] < blocks[2]  # vault, then the new limit, then the bridge
    assert all(steps[s]["outputs"]["safe_tx_hash"] for s in ("unpause-vault", "bridge-limit", "unpause-bridge"))


def test_closing_an_incident_retracts_false_positives_and_keeps_the_rest(drills) -> None:
    result, record, run_dir, admin = drills["closing"]
    assert result.returncode == 0, result.stderr[-3000:]
    watch = _steps(record)["watchlist"]["outputs"]
    assert (watch["version"], watch["active"], watch["retracted"]) == (2, 1, 1)
    latest = json.loads((run_dir.parents[3] / watch["json_file"]).read_text())
    status = {e["address"].lower(): e["status"] for e in latest["entries"]}
    assert status[admin.lower()] == "retracted" and list(status.values()).count("active") == 1
    closing = (run_dir / "artifacts" / "outbox")
    assert any("1 active, 1 retracted" in p.read_text(errors="replace") for p in closing.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", LIBRARY)
def test_each_docs_page_names_every_gate_of_its_playbook_and_why(name: str) -> None:
    import yaml

    book = yaml.safe_load((REPO / "playbooks" / f"{name}.yaml").read_text())
    gates = [s["id"] for s in book["steps"] if s["kind"] == "approval"]
    page = (REPO / "docs" / "playbooks" / f"{name}.md").read_text()
    assert "## Gates and why they are there" in page
    section = page.split("## Gates and why they are there", 1)[1].split("\n## ", 1)[0]
    assert gates, f"{name} has no approval gate"
    for gate in gates:
        assert f"`{gate}`" in section, f"{name}: the page's gate section does not name {gate}"
    assert "Why" in section or "why" in section
