"""Approval gates end to end: a runner in its own process on a live-mode inventory, votes through
`breakglass approve` and the Prefect API, timeouts, digest binding, and kill -9 at every point of a gate."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breakglass.flows.run import audit
from tests.conftest import REPO, cli, dev_key, fresh_protocol, live_inventory

PAUSE_SELECTOR = "0x8456cb59"


def roster(chain) -> str:
    a = chain.addresses
    return f"""roster:
  people:
    alice: {{address: "{a['fixture:alice']}"}}
    bob: {{address: "{a['fixture:bob']}"}}
    carol: {{address: "{a['fixture:carol']}"}}
    dave: {{}}
  groups:
    responders: [alice, bob, carol]
    pair: [alice, bob]
    leads: [carol]
channels:
  outbox: {{kind: outbox}}
contacts:
  war-room: {{kind: internal, channels: [{{via: outbox}}], last_verified: 2026-11-01}}
templates:
  gate-escalation: {{approved: true}}
"""


def playbook(tmp: Path, gate: str, guarded: str, name: str = "gated") -> Path:
    shutil.copytree(REPO / "playbooks" / "templates", tmp / "templates", dirs_exist_ok=True)
    path = tmp / f"{name}.yaml"
    path.write_text(f"""apiVersion: breakglass/v1
kind: Playbook
name: {name}
description: test
severity: critical
steps:
  - id: gate
    kind: approval
    with: {gate}
  - id: guarded
    kind: pause
    needs: [gate]
    timeout: 60s
    with: {guarded}
""")
    return path


SIGNED_2_OF_3 = "{approvers: responders, quorum: 2, exclude_initiator: true, timeout: 2m, on_timeout: abort, channels: [signed]}"
PAUSE_VAULT = "{contracts: [vault], signer: guardian}"


@pytest.fixture
def env(chain) -> dict[str, str]:
    return {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), "ALICE_KEY": dev_key("alice"),
            "BOB_KEY": dev_key("bob"), "CAROL_KEY": dev_key("carol"), "MALLORY_KEY": dev_key("attacker")}


class Run:
    """`breakglass run` (or `resume`) in the background, and what it left under the home."""

    def __init__(self, home: Path, incident: str, env: dict[str, str]) -> None:
        self.home, self.incident, self.env = home, incident, env
        self.process: subprocess.Popen[str] | None = None

    def start(self, *args: str, failpoint: str | None = None) -> Run:
        extra = {"BREAKGLASS_TEST_CRASH_AT": failpoint} if failpoint else {}
        self.process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env={**os.environ, **self.env, **extra}, cwd=REPO)
        return self

    def run_dir(self) -> Path:
        found = list((self.home / "incidents" / self.incident / "runs").glob("*"))
        return found[0] if found else Path("/nonexistent")

    def gate(self) -> dict:
        path = self.run_dir() / "gates" / "gate.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def record(self) -> dict:
        path = self.run_dir() / "record.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process is not None and self.process.poll() is not None and not predicate():
                out, err = self.process.communicate()
                raise AssertionError(f"runner exited {self.process.returncode} before {what}:\n{err[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{what} not reached in {timeout}s")

    def waiting(self, approvals: int = 0) -> None:
        self.wait_for(lambda: self.gate().get("status") == "waiting" and
                      len([v for v in self.gate().get("votes", []) if v.get("counted")]) >= approvals,
                      what=f"gate waiting with {approvals} approval(s)")

    def finish(self, timeout: float = 90) -> tuple[int, str, str]:
        assert self.process is not None
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def approve(self, name: str, key: str | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["approve", self.incident, "gate", "--as", name, "--json", *extra]
        if key:
            args += ["--sign-with", f"env:{key}"]
        return cli(*args, env=self.env)

    def audit(self) -> list[dict]:
        return audit.entries(self.home / "incidents" / self.incident)


def incident(tag: str) -> str:
    return f"INC-{tag}-{os.getpid()}-{time.monotonic_ns()}"


def pause_transactions(chain, contract: str) -> list[str]:
    """Every transaction on the chain that called pause() on ``contract``."""
    found = []
    with chain.rpc() as rpc:
        latest = int(rpc.call("eth_blockNumber"), 16)
        for number in range(latest + 1):
            block = rpc.call("eth_getBlockByNumber", [hex(number), True])
            for tx in block["transactions"]:
                if (tx.get("to") or "").lower() == contract.lower() and tx["input"].startswith(PAUSE_SELECTOR):
                    found.append(tx["hash"])
    return found


def start_gated(home, chain, env, tmp_path, tag, gate=SIGNED_2_OF_3, guarded=PAUSE_VAULT, failpoint=None,
                initiator="alice") -> Run:
    inventory = live_inventory(tmp_path, chain, extra=roster(chain))
    book = playbook(tmp_path, gate, guarded)
    run = Run(home, incident(tag), env)
    args = ["run", str(book), "--inventory", str(inventory), "--yes", "--incident", run.incident, "--json"]
    return run.start(*args, *(["--as", initiator] if initiator else []), failpoint=failpoint)


def test_two_of_three_signed_votes_from_distinct_non_initiators_pass_the_gate(prefect_api, chain, env, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    run = start_gated(home, chain, env, tmp_path, "2of3")
    run.waiting()

    refused = {
        "initiator": run.approve("alice", "ALICE_KEY"),
        "unsigned": run.approve("bob"),
        "not on roster": run.approve("mallory", "MALLORY_KEY"),
        "foreign key": run.approve("bob", "CAROL_KEY"),
    }
    for what, result in refused.items():
        assert result.returncode == 1, (what, result.stdout, result.stderr)
        assert "vote refused" in result.stderr and "Traceback" not in result.stderr, what
    assert "started this run; the gate excludes the initiator" in refused["initiator"].stderr
    assert "requires a signature" in refused["unsigned"].stderr or "cli-unsigned do not count" in refused["unsigned"].stderr
    assert "'mallory' is not on the roster" in refused["not on roster"].stderr
    assert "which is not bob's roster address" in refused["foreign key"].stderr

    from breakglass.flows.gates import voting

    sneaky = voting.make_vote(voting.locate(home, run.incident, "gate"), "gate", "bob", reject=False, reason="",
                              channel="signed", account=None)  # unsigned but claiming 'signed', sent straight to Prefect
    voting.submit(prefect_api, voting.locate(home, run.incident, "gate"), sneaky)
    run.wait_for(lambda: any(v.get("id") == sneaky.id for v in run.gate()["votes"]), what="runner judged the sneaky vote")
    assert run.gate()["status"] == "waiting" and not any(v["counted"] for v in run.gate()["votes"])

    first = run.approve("bob", "BOB_KEY")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "counted" and json.loads(first.stdout)["approvals"] == 1

    state = json.loads(cli("status", run.incident, "--json").stdout)["runs"][0]
    gate = state["gates"][0]
    assert gate["status"] == "waiting" and gate["approvals"] == ["bob"] and gate["waiting_for"] == ["carol"]
    assert state["runner_stale"] is False and state["initiator"] == "alice"
    assert any("pause on vault" in line for line in gate["authorises"])
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run.record()["attempts"][-1]["flow_run_id"])
        assert flow_run.state.type.value == "PAUSED"  # the Prefect UI shows the gate

    again = run.approve("bob", "BOB_KEY")
    assert again.returncode == 1 and "already voted" in again.stderr
    assert pause_transactions(chain, chain.addresses["fixture:vault"]) == []  # nothing before quorum

    second = run.approve("carol", "CAROL_KEY")
    assert second.returncode == 0, second.stderr
    code, out, err = run.finish()
    assert code == 0, err
    record = json.loads(out)
    outputs = {s["id"]: s for s in record["steps"]}["gate"]["outputs"]
    assert outputs["decision"] == "approved" and sorted(outputs["approvers"]) == ["bob", "carol"]
    assert len(pause_transactions(chain, chain.addresses["fixture:vault"])) == 1

    events = run.audit()
    refused_reasons = [e["reason"] for e in events if e["event"] == "vote.refused"]
    assert len(refused_reasons) == 6  # five refused by `approve` (bob twice), one by the runner
    assert [e["name"] for e in events if e["event"] == "vote.counted"] == ["bob", "carol"]
    assert audit.verify(home / "incidents" / run.incident) == []
    decided = cli("approve", run.incident, "gate", "--as", "carol", "--sign-with", "env:CAROL_KEY", env=env)
    assert decided.returncode == 1 and "already decided (passed)" in decided.stderr

    outputs = [out, err, first.stdout, first.stderr, second.stdout, second.stderr, decided.stderr,
               *(r.stdout + r.stderr for r in refused.values())]
    outputs += [p.read_text(errors="replace") for p in (home / "incidents" / run.incident).rglob("*") if p.is_file()]
    for secret in (env["ALICE_KEY"], env["BOB_KEY"], env["CAROL_KEY"], env["MALLORY_KEY"], env["BG_TEST_GUARDIAN_KEY"]):
        assert not any(secret[2:].lower() in text.lower() for text in outputs)  # keys never reach outputs or files


@pytest.mark.parametrize("outcome", ["proceed", "abort"])
def test_on_timeout_proceed_and_abort(prefect_api, chain, env, home, tmp_path, outcome) -> None:
    chain = fresh_protocol(chain)
    gate = f"{{approvers: responders, quorum: 2, timeout: 1s, on_timeout: {outcome}, channels: [signed]}}"
    run = start_gated(home, chain, env, tmp_path, f"timeout-{outcome}", gate=gate, initiator=None)
    code, out, err = run.finish()
    record = json.loads(out)
    steps = {s["id"]: s for s in record["steps"]}
    paused = pause_transactions(chain, chain.addresses["fixture:vault"])
    if outcome == "proceed":
        assert code == 0, err
        assert steps["gate"]["outputs"]["decision"] == "proceeded" and steps["guarded"]["status"] == "completed"
        assert len(paused) == 1
    else:
        assert code == 2
        assert "timed out: 0 of 2 approvals" in steps["gate"]["error"]
        assert steps["guarded"]["status"] == "skipped" and paused == []
    assert run.gate()["status"] == ("proceeded" if outcome == "proceed" else "timed_out")


@pytest.mark.serial  # the early vote (a CLI process) must land within the 4 s gate
def test_on_timeout_escalate_tells_the_backup_and_lets_it_approve(prefect_api, chain, env, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    gate = ("{approvers: pair, quorum: 1, timeout: 4s, on_timeout: escalate, channels: [signed], "
            "escalate: {approvers: leads, notify: [war-room], template: gate-escalation, timeout: 60s}}")
    run = start_gated(home, chain, env, tmp_path, "escalate", gate=gate, initiator=None)
    run.waiting()
    early = run.approve("carol", "CAROL_KEY")
    assert early.returncode == 1 and "not among this gate's approvers" in early.stderr
    run.wait_for(lambda: run.gate().get("escalated") is True, what="escalation")
    outbox = list((run.run_dir() / "artifacts" / "outbox").rglob("*"))
    messages = [p.read_text() for p in outbox if p.is_file()]
    assert any("approval stuck at gate" in m and "carol" in m for m in messages), outbox
    late = run.approve("carol", "CAROL_KEY")
    assert late.returncode == 0, late.stderr
    code, out, err = run.finish()
    assert code == 0, err
    assert [e["event"] for e in run.audit() if e["event"].startswith("gate.")] == ["gate.opened", "gate.escalated", "gate.passed"]


def _edit_inventory(run: Run, old: str, new: str) -> None:
    path = run.run_dir() / "inventory.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_changed_target_voids_earlier_votes_but_a_fee_change_within_the_cap_does_not(prefect_api, chain, env, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    other = fresh_protocol(chain)
    run = start_gated(home, chain, env, tmp_path, "digest")
    run.waiting()
    assert run.approve("bob", "BOB_KEY").returncode == 0
    first_digest = run.gate()["digest"]

    run.kill()  # fees re-priced within the cap (500 gwei, the default): the approval stands
    _edit_inventory(run, "    block_time: 1s\n", "    block_time: 1s\n    fees: {max_fee_gwei: 500, priority_fee_gwei: 3}\n")
    run.start("resume", run.incident, "--json")
    run.wait_for(lambda: run.gate().get("attempt") == 2 and run.gate()["status"] == "waiting", what="second attempt")
    assert run.gate()["digest"] == first_digest and run.gate()["changes"] == []
    assert [v["name"] for v in run.gate()["votes"] if v["counted"]] == ["bob"]

    run.kill()  # the target changes: bob's approval no longer counts, and the change is shown
    _edit_inventory(run, chain.addresses["fixture:vault"], other.addresses["fixture:vault"])
    run.start("resume", run.incident, "--json")
    run.wait_for(lambda: run.gate().get("attempt") == 3 and run.gate()["status"] == "waiting", what="third attempt")
    assert run.gate()["digest"] != first_digest
    gate = json.loads(cli("status", run.incident, "--json").stdout)["runs"][0]["gates"][0]
    assert gate["approvals"] == [] and any("target" in c and other.addresses["fixture:vault"] in c for c in gate["changes"])
    assert run.approve("carol", "CAROL_KEY").returncode == 0
    assert run.approve("bob", "BOB_KEY").returncode == 0  # bob approves the new action
    code, out, err = run.finish()
    assert code == 0, err
    assert pause_transactions(chain, chain.addresses["fixture:vault"]) == []
    assert len(pause_transactions(chain, other.addresses["fixture:vault"])) == 1


PREPARED_VAULT = "{contracts: [vault], signer: guardian, prepared: true}"


@pytest.mark.parametrize("when", ["waiting", "after-pass", "mid-broadcast"])
def test_kill_9_at_a_gate_then_resume_pauses_exactly_once(prefect_api, chain, env, home, tmp_path, when) -> None:
    chain = fresh_protocol(chain)
    inventory = live_inventory(tmp_path, chain, extra=roster(chain))
    book = playbook(tmp_path, SIGNED_2_OF_3, PREPARED_VAULT)
    prepared = cli("prepare", str(book), "--inventory", str(inventory), "--json", env=env)
    assert prepared.returncode == 0, prepared.stderr
    failpoint = {"waiting": None, "after-pass": "gate.after_pass", "mid-broadcast": "fastpath.after_broadcast"}[when]
    run = Run(home, incident(f"kill-{when}"), env)
    run.start("run", str(book), "--inventory", str(inventory), "--yes", "--incident", run.incident, "--as", "alice",
              "--json", failpoint=failpoint)
    run.waiting()
    assert run.approve("bob", "BOB_KEY").returncode == 0
    if when == "waiting":
        run.waiting(approvals=1)
        run.kill()
        run.start("resume", run.incident, "--json")
        run.wait_for(lambda: run.gate().get("attempt") == 2, what="the resumed gate")
        assert [v["name"] for v in run.gate()["votes"] if v["counted"]] == ["bob"]  # bob's vote survived the crash
        assert run.approve("carol", "CAROL_KEY").returncode == 0
        code, out, err = run.finish()
    else:
        run.approve("carol", "CAROL_KEY")
        run.process.wait(timeout=60)
        assert run.process.returncode == -signal.SIGKILL
        resumed = cli("resume", run.incident, "--json", env=env)
        code, out, err = resumed.returncode, resumed.stdout, resumed.stderr
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "completed"
    assert len(pause_transactions(chain, chain.addresses["fixture:vault"])) == 1
    events = [e["event"] for e in run.audit() if e["event"].startswith("gate.")]
    if when == "waiting":
        assert events == ["gate.opened", "gate.reopened", "gate.passed"]
    elif when == "after-pass":  # passed before the crash, digest unchanged: checked again, not asked again
        assert events == ["gate.opened", "gate.passed", "gate.rechecked"], run.audit()
    else:  # killed while the pause went out, before the passing vote was written: it is read again from Prefect
        assert events == ["gate.opened", "gate.reopened", "gate.passed"], run.audit()
    if when != "waiting":
        assert [a["status"] for a in record["attempts"]] == ["crashed", "completed"]
    assert [e["name"] for e in run.audit() if e["event"] == "vote.counted"] == ["bob", "carol"]  # nobody voted twice


def test_a_drill_gate_can_be_approved_from_the_prefect_ui_form(prefect_api, home, tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    gate = "{approvers: responders, quorum: 1, timeout: 2m, on_timeout: abort, channels: [prefect-ui, cli-unsigned]}"
    book = playbook(tmp_path, gate, "{contracts: [vault], signer: guardian}")
    run = Run(home, incident("ui"), {})
    run.start("drill", str(book), "--inventory", str(REPO / "playbooks" / "inventories" / "drill.yaml"),
              "--incident", run.incident, "--json")
    run.waiting()
    flow_run_id = run.record()["attempts"][-1]["flow_run_id"]
    with get_client(sync_client=True) as client:
        run.wait_for(lambda: client.read_flow_run(flow_run_id).state.type.value == "PAUSED", what="Paused in Prefect")
        state = client.read_flow_run(flow_run_id).state
        assert state.state_details.pause_key.startswith("gate-a1-")
        from prefect.input.run_input import keyset_from_paused_state

        keyset = keyset_from_paused_state(state)  # the Resume form says what it authorises, and its digest
        text = json.loads(client.read_flow_run_input(flow_run_id, keyset["description"]))
        assert f"Digest: `{run.gate()['digest']}`" in text and "It authorises:" in text
        assert all(f"- {line}" in text for line in run.gate()["authorises"])
        assert "An unsigned vote from this form counts here" in text
        assert "name" in json.loads(client.read_flow_run_input(flow_run_id, keyset["schema"]))["properties"]
    unknown = run.approve("mallory")
    assert unknown.returncode == 1 and "'mallory' is not on the roster" in unknown.stderr
    resume_flow_run(flow_run_id, run_input={"name": "dave", "decision": "approve"})  # the UI form: not a roster name
    run.wait_for(lambda: any(v.get("channel") == "prefect-ui" for v in run.gate().get("votes", [])), what="UI vote judged")
    assert "not on the roster" in run.gate()["votes"][-1]["reason"] and run.gate()["status"] == "waiting"
    with get_client(sync_client=True) as client:  # asked again with a fresh pause key
        run.wait_for(lambda: client.read_flow_run(flow_run_id).state.type.value == "PAUSED", what="paused again")
        assert client.read_flow_run(flow_run_id).state.state_details.pause_key.startswith("gate-a1-")
    resume_flow_run(flow_run_id, run_input={"name": "bob", "decision": "approve"})
    code, out, err = run.finish()
    assert code == 0, err
    gate_out = {s["id"]: s for s in json.loads(out)["steps"]}["gate"]["outputs"]
    assert gate_out["votes"][0]["channel"] == "prefect-ui" and gate_out["approvers"] == ["bob"]


def test_approve_and_ack_refuse_unknown_incidents_steps_and_people(prefect_api, chain, env, home, tmp_path) -> None:
    chain = fresh_protocol(chain)
    run = start_gated(home, chain, env, tmp_path, "errors")
    run.waiting()
    cases = {
        ("approve", "INC-does-not-exist", "gate", "--as", "bob"): "no incident 'INC-does-not-exist'",
        ("approve", run.incident, "nope", "--as", "bob"): "has no step 'nope'; its gates: gate",
        ("approve", run.incident, "guarded", "--as", "bob"): "is a pause step, not an approval gate",
        ("approve", run.incident, "gate"): "say who you are: --as NAME",
        ("approve", run.incident, "gate", "--as", "bob", "--reject"): "--reject needs --reason",
        ("approve", run.incident, "gate", "--as", "bob", "--sign-with", "BOB_KEY"): "use env:VARIABLE",
        ("approve", run.incident, "gate", "--as", "bob", "--sign-with", "env:NOT_SET_ANYWHERE"): "is not set",
        ("ack", run.incident, "--as", "mallory"): "--as mallory: not on the roster",
    }
    for args, expected in cases.items():
        result = cli(*args, env=env)
        assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    first = cli("ack", run.incident, "--as", "carol", "--json", env=env)
    second = cli("ack", run.incident, "--as", "bob", "--json", env=env)
    assert first.returncode == 0 and second.returncode == 0
    assert json.loads(second.stdout)["first"]["name"] == "carol" and "already acknowledged by carol" in second.stderr
    assert json.loads(cli("status", run.incident, "--json").stdout)["runs"][0]["acknowledged"]["name"] == "carol"
    rejected = run.approve("bob", "BOB_KEY", "--reject", "--reason", "wrong vault")
    assert rejected.returncode == 0, rejected.stderr
    code, out, err = run.finish()
    assert code == 2
    steps = {s["id"]: s for s in json.loads(out)["steps"]}
    assert "rejected by bob: wrong vault" in steps["gate"]["error"] and steps["guarded"]["status"] == "skipped"
    assert pause_transactions(chain, chain.addresses["fixture:vault"]) == []
    events = [e["event"] for e in run.audit()]
    assert "ack.refused" in events and events.count("ack") == 2 and "gate.rejected" in events


def test_a_gate_that_needs_signed_votes_offers_no_unsigned_vote_in_the_prefect_ui() -> None:
    from types import SimpleNamespace

    from breakglass.flows.engine.gatehost import form_text

    state = SimpleNamespace(step="approve-external", quorum=2, eligible={"alice": None, "bob": None, "carol": None},
                            authorises=["bridge-rate-limit-zero: setRateLimit(0) on bridge"], digest="0x" + "ab" * 32,
                            channels=["signed", "prefect-ui"])
    text, counts = form_text(state, "live", "INC-1")
    assert counts is False and "This gate counts only signed votes, so this form offers none" in text
    assert "`breakglass approve INC-1 approve-external --as NAME --sign-with env:YOUR_KEY_VAR`" in text
    assert "- bridge-rate-limit-zero: setRateLimit(0) on bridge" in text and f"Digest: `{state.digest}`" in text
    text, counts = form_text(state, "drill", "DRILL-1")  # a drill, but quorum 2: still signed votes only
    assert counts is False and "--sign-with fixture:NAME" in text
