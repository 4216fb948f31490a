"""Recovery mid-incident: `resume` after the RPC comes back runs every step that was skipped only
because an ancestor failed, `resume --from` re-runs a step and its descendants without sending twice."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cli, dev_key, fresh_protocol, live_inventory
from tests.flows.gates.test_gates import Run, pause_transactions, roster
from tests.helpers.jsonhttp import Answer, JsonServer

pytestmark = pytest.mark.slow


class SwitchableRpc(JsonServer):
    """An RPC endpoint that forwards to the test's anvil, or answers 503 while ``down``."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.down, self.refused = upstream, True, 0
        super().__init__(self._forward)

    def _forward(self, body: Any) -> Answer:
        if self.down:
            self.refused += 1
            return 503, {"error": "upstream unavailable"}
        return 200, httpx.post(self.upstream, json=body).content


BOOK = """apiVersion: breakglass/v1
kind: Playbook
name: rpc-outage
description: test
severity: critical
steps:
  - {id: snapshot-detection, kind: snapshot, timeout: 5s, with: {chain: ethereum, paused: [vault]}}
  - {id: pause-all, kind: pause, timeout: 10s, with: {contracts: [vault], signer: guardian}}
  - id: gate
    kind: approval
    needs: [snapshot-detection]
    with: {approvers: responders, quorum: 1, exclude_initiator: true, timeout: 2m, on_timeout: abort, channels: [signed]}
  - {id: freeze, kind: notify, needs: [gate], timeout: 30s, with: {template: war-room-alert, to: [war-room], data: {summary: freeze}}}
  - {id: pause-bridge, kind: pause, needs: [gate], timeout: 30s, with: {contracts: [bridge], signer: guardian}}
  - {id: only-if-paused, kind: wait, needs: [snapshot-detection], if: "steps['snapshot-detection'].outputs.paused.vault", with: {seconds: 0.1}}
"""


@pytest.fixture
def outage(chain, tmp_path: Path) -> Any:
    import shutil

    from tests.conftest import REPO

    chain = fresh_protocol(chain)
    proxy = SwitchableRpc(chain.url)
    shutil.copytree(REPO / "playbooks" / "templates", tmp_path / "templates", dirs_exist_ok=True)
    book = tmp_path / "rpc-outage.yaml"
    book.write_text(BOOK)
    env = {"BG_TEST_RPC_URL": proxy.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), "BOB_KEY": dev_key("bob")}
    yield chain, proxy, book, live_inventory(tmp_path, chain, extra=roster(chain)), env
    proxy.close()


def _steps(record: dict) -> dict[str, dict]:
    return {s["id"]: s for s in record["steps"]}


def test_resume_after_the_rpc_comes_back_runs_every_remaining_step_once(prefect_api, outage, home: Path) -> None:
    chain, proxy, book, inventory, env = outage
    incident = f"INC-outage-{os.getpid()}-{time.monotonic_ns()}"
    first = cli("run", str(book), "--inventory", str(inventory), "--yes", "--incident", incident, "--as", "alice",
                "--json", env=env)
    assert first.returncode == 2, first.stderr
    assert proxy.refused > 0
    steps = _steps(json.loads(first.stdout))
    assert steps["snapshot-detection"]["status"] == "failed" and steps["pause-all"]["status"] == "failed"
    for sid in ("gate", "freeze", "pause-bridge", "only-if-paused"):
        assert steps[sid]["status"] == "skipped" and steps[sid]["skipped_reason"] == "ancestor_failed", steps[sid]
    assert pause_transactions(chain, chain.addresses["fixture:vault"]) == []

    proxy.down = False  # the RPC is fixed
    run = Run(home, incident, env)
    run.start("resume", incident, "--as", "carol", "--json")
    run.waiting()
    assert run.approve("bob", "BOB_KEY").returncode == 0
    code, out, err = run.finish()
    assert code == 0, err
    record = json.loads(out)
    steps = _steps(record)
    assert record["status"] == "completed"
    for sid in ("snapshot-detection", "pause-all", "gate", "freeze", "pause-bridge"):
        assert steps[sid]["status"] == "completed", steps[sid]
    # re-evaluated under first-run rules: its `if` is false now that its ancestor ran
    assert steps["only-if-paused"]["status"] == "skipped"
    assert steps["only-if-paused"]["skipped_reason"] == "condition_false"
    assert "not run again" not in err
    assert len(pause_transactions(chain, chain.addresses["fixture:vault"])) == 1
    assert len(pause_transactions(chain, chain.addresses["fixture:bridge"])) == 1
    outbox = list((run.run_dir() / "artifacts" / "outbox").glob("*.json"))
    assert len(outbox) == 1 and "freeze" in json.loads(outbox[0].read_text())["text"]
    events = [e["event"] for e in run.audit()]
    assert events.count("gate.opened") == 1 and events.count("gate.passed") == 1
    resumed = [e for e in run.audit() if e["event"] == "run.resumed"]
    assert len(resumed) == 1 and resumed[0]["by"] == "carol" and "gate" in resumed[0]["again"]

    # --from re-runs a completed step and what needs it: the journal reconciles, nothing is sent again
    again = cli("resume", incident, "--from", "pause-all", "--as", "dave", "--json", env=env)
    assert again.returncode == 0, again.stderr
    steps = _steps(json.loads(again.stdout))
    assert steps["pause-all"]["status"] == "completed"
    assert steps["pause-all"]["outputs"]["results"][0]["tx_hash"] == record["steps"][1]["outputs"]["results"][0]["tx_hash"]
    assert steps["freeze"] == _steps(record)["freeze"]  # not a descendant: untouched
    assert len(pause_transactions(chain, chain.addresses["fixture:vault"])) == 1
    resumed = [e for e in run.audit() if e["event"] == "run.resumed"]
    assert resumed[-1]["by"] == "dave" and resumed[-1]["from_step"] == "pause-all" and resumed[-1]["again"] == ["pause-all"]


def test_steps_behind_an_aborted_gate_stay_skipped_on_resume(prefect_api, outage, home: Path) -> None:
    chain, proxy, book, inventory, env = outage
    proxy.down = False
    book.write_text(BOOK.replace("timeout: 2m, on_timeout: abort", "timeout: 1s, on_timeout: abort"))
    incident = f"INC-aborted-{os.getpid()}-{time.monotonic_ns()}"
    first = cli("run", str(book), "--inventory", str(inventory), "--yes", "--incident", incident, "--as", "alice",
                "--json", env=env)
    assert first.returncode == 2, first.stderr
    steps = _steps(json.loads(first.stdout))
    assert steps["gate"]["status"] == "failed"
    assert steps["freeze"]["skipped_reason"] == "gate_aborted" and steps["pause-bridge"]["skipped_reason"] == "gate_aborted"
    again = cli("resume", incident, "--json", env=env)
    assert again.returncode == 2, again.stderr
    steps = _steps(json.loads(again.stdout))
    assert steps["gate"]["status"] == "failed"
    assert steps["freeze"]["status"] == "skipped" and steps["freeze"]["skipped_reason"] == "gate_aborted"
    assert pause_transactions(chain, chain.addresses["fixture:bridge"]) == []


def test_a_run_failing_its_pre_flight_is_failed_not_running_and_says_so_once(prefect_api, outage, home: Path) -> None:
    chain, proxy, book, inventory, env = outage
    proxy.down = False
    incident = f"INC-preflight-{os.getpid()}-{time.monotonic_ns()}"
    unset = cli("run", str(book), "--inventory", str(inventory), "--yes", "--incident", incident, "--as", "alice",
                env={**env, "BG_TEST_GUARDIAN_KEY": ""})
    assert unset.returncode == 1, unset.stderr  # the pre-flight refuses before anything exists: no incident at all
    assert unset.stderr.count("BG_TEST_GUARDIAN_KEY") == 1 and "nothing was signed or sent" in unset.stderr
    assert not (home / "incidents" / incident).exists()
    # a key that is set but does not unlock passes the pre-flight and fails the start: a failed run, said once
    result = cli("run", str(book), "--inventory", str(inventory), "--yes", "--incident", incident, "--as", "alice",
                 env={**env, "BG_TEST_GUARDIAN_KEY": "0x" + "zz" * 32})
    assert result.returncode == 1, result.stderr
    problem = "the value is not a hex private key"
    assert result.stderr.count(problem) == 1, result.stderr
    assert result.stderr.rstrip().endswith(f"`breakglass close {incident} --as NAME --reason TEXT` ends it")
    assert f"`breakglass resume {incident}` continues it" in result.stderr
    status = json.loads(cli("status", incident, "--json").stdout)["runs"][0]
    assert status["status"] == "failed" and status["runner_stale"] is False
    record = json.loads(next((home / "incidents" / incident / "runs").glob("*/record.json")).read_text())
    assert record["error"].startswith("pre-flight: ") and problem in record["error"]


def test_the_default_retry_policy_rides_out_an_rpc_down_for_30s(prefect_api, outage, home: Path, tmp_path: Path) -> None:
    import threading

    from tests.flows.gates.test_gates import Run

    chain, proxy, _, inventory, env = outage
    book = tmp_path / "blip.yaml"
    book.write_text("""apiVersion: breakglass/v1
kind: Playbook
name: blip
description: test
severity: high
steps:
  - {id: read, kind: snapshot, with: {chain: ethereum, paused: [vault]}}
  - {id: pause-all, kind: pause, needs: [read], with: {contracts: [vault], signer: guardian}}
""")
    incident = f"INC-blip-{os.getpid()}-{time.monotonic_ns()}"
    run = Run(home, incident, env)
    run.start("run", str(book), "--inventory", str(inventory), "--yes", "--incident", incident, "--json")
    run.wait_for(lambda: any(s["status"] == "running" for s in run.record().get("steps", [])), what="the snapshot")
    up = threading.Timer(30.0, lambda: setattr(proxy, "down", False))
    up.start()
    try:
        shown = json.loads(cli("status", incident, "--json").stdout)["runs"][0]
        assert set(shown["deadlines"]) == {"read"}  # every running step has a deadline: a snapshot's is 2 min
        code, out, err = run.finish(timeout=150)
    finally:
        up.cancel()
    assert code == 0, err
    steps = _steps(json.loads(out))
    assert steps["read"]["status"] == "completed" and steps["read"]["attempts"] == 1
    assert steps["pause-all"]["status"] == "completed"
    assert proxy.refused >= 5  # it kept asking, backing off, through the outage
    assert len(pause_transactions(chain, chain.addresses["fixture:vault"])) == 1
