"""Ending a response on purpose: `breakglass close` stops a runner waiting at a gate in another process,
Ctrl-C and SIGTERM stop a run cleanly with one line of what to do next, and a drill's anvils die with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, cli, dev_key, live_inventory
from tests.flows.gates.test_gates import SIGNED_2_OF_3, Run, incident, playbook, roster
from tests.flows.service.test_intake import intake  # noqa: F401,F811  (fixture)

pytestmark = pytest.mark.slow

HINT = "interrupted; `breakglass resume {0}` continues, `breakglass close {0}` ends it"


@pytest.fixture
def env(chain) -> dict[str, str]:
    return {"BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), "BOB_KEY": dev_key("bob")}


def _flow_run_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.type.value


def _listed(*args: str) -> set[str]:
    result = cli("status", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {doc["incident"] for doc in json.loads(result.stdout)["runs"]}


def test_close_cancels_a_run_waiting_at_a_gate_in_another_process(prefect_api, chain, env, home, tmp_path) -> None:
    inventory = live_inventory(tmp_path, chain, extra=roster(chain))
    run = Run(home, incident("close"), env)
    run.start("run", str(playbook(tmp_path, SIGNED_2_OF_3, "{contracts: [vault], signer: guardian}")), "--inventory",
              str(inventory), "--yes", "--incident", run.incident, "--as", "alice", "--json")
    run.waiting()
    assert run.incident in _listed()
    started = time.monotonic()
    closed = cli("close", run.incident, "--as", "carol", "--reason", "the alert was a test transaction",
                 "--resolution", "false-positive", "--json", env=env)
    assert closed.returncode == 0, closed.stderr
    run.process.wait(timeout=10)
    assert time.monotonic() - started < 60
    stopped = json.loads(closed.stdout)["runs"][0]["runner"]
    assert stopped["signal"] == "SIGTERM" and stopped["seconds"] < 5, stopped  # from the signal to the lock's release
    assert run.process.returncode == 130
    assert "Traceback" not in closed.stderr
    record = run.record()
    assert record["status"] == "cancelled"
    assert record["error"] == "incident closed by carol: the alert was a test transaction"
    assert {s["id"]: s["status"] for s in record["steps"]} == {"gate": "failed", "guarded": "pending"}
    assert _flow_run_state(record["attempts"][-1]["flow_run_id"]) == "CANCELLED"
    assert run.gate()["status"] == "cancelled"
    events = [e["event"] for e in run.audit()]
    assert events.count("incident.closed") == 1 and "run.cancelled" in events
    closing = next(e for e in run.audit() if e["event"] == "incident.closed")
    assert closing["by"] == "carol" and closing["resolution"] == "false-positive"

    refusal = f"incident {run.incident} was closed by carol at"
    resumed = cli("resume", run.incident, env=env)
    assert resumed.returncode == 1 and refusal in resumed.stderr and "false-positive" in resumed.stderr
    voted = run.approve("bob", "BOB_KEY")
    assert voted.returncode == 1 and refusal in voted.stderr
    acked = cli("ack", run.incident, "--as", "bob", env=env)
    assert acked.returncode == 1 and refusal in acked.stderr
    assert run.incident not in _listed() and run.incident in _listed("--all")
    again = cli("close", run.incident, "--as", "bob", "--reason", "twice", env=env)
    assert again.returncode == 0 and "already closed by carol" in again.stderr
    assert [e["event"] for e in run.audit()].count("incident.closed") == 1


DRILL_GATE = """apiVersion: breakglass/v1
kind: Playbook
name: drill-gate
description: test
severity: high
steps:
  - id: gate
    kind: approval
    with: {approvers: responders, quorum: 1, timeout: 2m, on_timeout: abort, channels: [cli-unsigned]}
  - {id: after, kind: pause, needs: [gate], timeout: 60s, with: {contracts: [vault], signer: guardian}}
"""


def _anvils_of(pid: int) -> list[int]:
    """The anvil processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if comm == "anvil" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _drill_at_gate(home: Path, tmp_path: Path, tag: str) -> tuple[subprocess.Popen[str], str, list[int]]:
    book = tmp_path / "drill-gate.yaml"
    book.write_text(DRILL_GATE)
    name = f"DRILL-{tag}-{os.getpid()}-{time.monotonic_ns()}"
    process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "drill", str(book), "--inventory",
                                "playbooks/inventories/drill.yaml", "--incident", name, "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    gate = home / "incidents" / name / "runs"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        states = list(gate.glob("*/gates/gate.json"))
        if states and json.loads(states[0].read_text())["status"] == "waiting":
            break
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)
    else:
        raise AssertionError("the drill's gate did not open")
    anvils = _anvils_of(process.pid)
    assert anvils  # one per chain of the drill inventory
    return process, name, anvils


@pytest.mark.serial  # exits within 2 s of the signal
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_a_drill_gate_exits_130_within_2s_with_the_hint(prefect_api, home, tmp_path, signum) -> None:
    process, name, anvils = _drill_at_gate(home, tmp_path, "sig")
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    took = time.monotonic() - sent
    assert process.returncode == 130, err[-3000:]
    assert took < 2.0, took
    assert err.count(HINT.format(name)) == 1 and "Crash detected" not in err and "Traceback" not in err
    record = json.loads(next((home / "incidents" / name / "runs").glob("*/record.json")).read_text())
    assert record["status"] == "cancelled" and record["error"] == f"interrupted by {signal.Signals(signum).name}"
    assert _flow_run_state(record["attempts"][-1]["flow_run_id"]) == "CANCELLED"
    time.sleep(0.5)
    assert _alive(anvils) == []
    listed = json.loads(cli("status", name, "--json").stdout)["runs"][0]
    assert listed["status"] == "cancelled" and listed["runner_stale"] is False  # no zombie "running"


def test_kill_9_of_a_drill_leaves_no_anvil(prefect_api, home, tmp_path) -> None:
    process, name, anvils = _drill_at_gate(home, tmp_path, "kill")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while _alive(anvils) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_alive(anvils)) == 0
    closed = cli("close", name, "--as", "alice", "--reason", "drill killed")
    assert closed.returncode == 0, closed.stderr
    assert name not in _listed("--drills")


def test_the_same_alert_after_a_close_opens_a_new_incident(intake) -> None:  # noqa: F811
    from tests.flows.service.test_intake import DATA, oz, runs, wait_for

    body = (DATA / "oz_monitor_raw_evm_match.json").read_bytes()
    first = intake.post("oz", body, oz(body))
    assert first.status_code == 202, first.text
    old = first.json()["incidents"][0]
    wait_for(lambda: [r for r in runs(intake.home, old) if r["status"] == "completed"], what="the first run")
    closed = cli("close", old, "--as", "oncall", "--reason", "contained", env={"BREAKGLASS_HOME": str(intake.home)})
    assert closed.returncode == 0, closed.stderr
    again = intake.post("oz", body, oz(body))  # within the dedupe window, which would join the open incident
    assert again.status_code == 202 and again.json()["matched"] == ["on-oz"], again.text
    new = again.json()["incidents"][0]
    assert new != old
    record = wait_for(lambda: [r for r in runs(intake.home, new) if r["status"] == "completed"], what="the new run")[0]
    assert record["incident"] == new and len(runs(intake.home, old)) == 1


def test_closing_a_live_incident_tells_the_war_room_once(prefect_api, chain, home, tmp_path) -> None:
    from tests.helpers.slack_server import SlackServer

    slack = SlackServer()
    try:
        inventory = live_inventory(tmp_path, chain, extra=f"""channels:
  slack: {{kind: slack, token_env: SLACK_BOT_TOKEN, base_url: "{slack.base_url}"}}
slack_app: {{channel: slack, post_to: C0WARROOM1, signing_secret_env: SLACK_SIGNING_SECRET, app_id: A0B, team_id: T0B}}
""")
        book = tmp_path / "short.yaml"
        book.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: short\ndescription: t\nseverity: high\n"
                        "steps:\n  - {id: w, kind: wait, with: {seconds: 0.1}}\n")
        env = {"BG_TEST_RPC_URL": chain.url, "SLACK_BOT_TOKEN": slack.token}
        name = incident("warroom")
        assert cli("run", str(book), "--inventory", str(inventory), "--yes", "--incident", name, env=env).returncode == 0
        for attempt in ("first", "again"):
            closed = cli("close", name, "--as", "oncall", "--reason", f"all clear ({attempt})", env=env)
            assert closed.returncode == 0, closed.stderr
        posted = [m for m in slack.messages["C0WARROOM1"] if "closed by oncall" in (m["text"] or "")]
        assert len(posted) == 1 and "all clear (first)" in posted[0]["text"] and "(contained)" in posted[0]["text"]
    finally:
        slack.close()


@pytest.mark.serial  # exits within 2 s of the signal
def test_ctrl_c_at_a_live_gate_then_resume_finishes_with_one_pause(prefect_api, chain, env, home, tmp_path) -> None:
    from tests.conftest import fresh_protocol
    from tests.flows.gates.test_gates import pause_transactions

    chain = fresh_protocol(chain)
    env = {**env, "CAROL_KEY": dev_key("carol")}
    inventory = live_inventory(tmp_path, chain, extra=roster(chain))
    run = Run(home, incident("ctrl-c"), env)
    run.start("run", str(playbook(tmp_path, SIGNED_2_OF_3, "{contracts: [vault], signer: guardian}")), "--inventory",
              str(inventory), "--yes", "--incident", run.incident, "--as", "alice", "--json")
    run.waiting()
    assert run.approve("bob", "BOB_KEY").returncode == 0
    run.waiting(approvals=1)
    sent = time.monotonic()
    run.process.send_signal(signal.SIGINT)
    code, _, err = run.finish(timeout=30)
    assert code == 130 and time.monotonic() - sent < 2.0 and err.count(HINT.format(run.incident)) == 1
    assert run.record()["status"] == "cancelled"
    run.start("resume", run.incident, "--json")
    run.wait_for(lambda: run.gate().get("status") == "waiting" and run.gate().get("attempt") == 2, what="the gate again")
    assert [v["name"] for v in run.gate()["votes"] if v["counted"]] == ["bob"]  # the vote survived the interruption
    assert run.approve("carol", "CAROL_KEY").returncode == 0
    code, out, err = run.finish()
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"
    assert len(pause_transactions(chain, chain.addresses["fixture:vault"])) == 1
