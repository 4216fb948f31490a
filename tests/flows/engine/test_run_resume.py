"""Runs against a live-mode inventory on a test anvil: concurrency, timeouts, retries, conditions,
and kill -9 followed by `breakglass resume`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import REPO, cli, live_inventory


def _playbook(tmp: Path, body: str, name: str = "test-run") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"apiVersion: breakglass/v1\nkind: Playbook\nname: {name}\ndescription: test\nseverity: high\n{body}")
    return path


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def env(chain) -> dict[str, str]:
    return {"BG_TEST_RPC_URL": chain.url}


def test_independent_steps_run_concurrently_and_needs_wait(prefect_api, chain, env, tmp_path: Path) -> None:
    inventory = live_inventory(tmp_path, chain)
    playbook = _playbook(tmp_path, """steps:
  - {id: a, kind: wait, with: {seconds: 1.5}}
  - {id: b, kind: wait, with: {seconds: 1.5}}
  - {id: c, kind: snapshot, needs: [a, b], with: {chain: ethereum, paused: [vault]}}
""")
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    steps = {s["id"]: s for s in json.loads(result.stdout)["steps"]}
    a, b, c = steps["a"], steps["b"], steps["c"]
    assert _t(a["started_at"]) < _t(b["ended_at"]) and _t(b["started_at"]) < _t(a["ended_at"])  # overlapped
    assert _t(c["started_at"]) >= max(_t(a["ended_at"]), _t(b["ended_at"]))
    assert c["outputs"]["paused"] == {"vault": False}


def test_timeout_and_retries_are_honoured(prefect_api, chain, env, tmp_path: Path) -> None:
    inventory = live_inventory(tmp_path, chain)
    playbook = _playbook(tmp_path, """steps:
  - {id: slow, kind: wait, timeout: 0.3s, retries: 2, with: {seconds: 3}}
  - {id: after, kind: wait, needs: [slow], with: {seconds: 0.1}}
  - {id: independent, kind: snapshot, with: {chain: ethereum, paused: [bridge]}}
""")
    started = time.monotonic()
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 30
    record = json.loads(result.stdout)
    steps = {s["id"]: s for s in record["steps"]}
    assert record["status"] == "failed"
    assert steps["slow"]["status"] == "failed" and steps["slow"]["attempts"] == 3
    assert "timeout of 0.3s" in steps["slow"]["error"]
    assert steps["after"]["status"] == "skipped" and steps["after"]["reason"] == "needs 'slow', which failed"
    assert steps["independent"]["status"] == "completed"  # a failure elsewhere never blocks unrelated steps
    assert "Traceback" not in result.stderr


def test_if_is_evaluated_as_a_boolean(prefect_api, chain, env, tmp_path: Path) -> None:
    inventory = live_inventory(tmp_path, chain)
    playbook = _playbook(tmp_path, """inputs:
  deep: {type: bool, default: false}
steps:
  - {id: read, kind: snapshot, with: {chain: ethereum, paused: [vault]}}
  - {id: deep-read, kind: snapshot, needs: [read], if: "inputs.deep", with: {chain: ethereum, block: "{{ steps.read.outputs.block_number }}", paused: [bridge]}}
  - {id: when-unpaused, kind: wait, needs: [read], if: "{{ not steps.read.outputs.paused.vault }}", with: {seconds: 0.1}}
""")
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    steps = {s["id"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps["deep-read"]["status"] == "skipped" and steps["deep-read"]["reason"] == "if 'inputs.deep' is false"
    assert steps["when-unpaused"]["status"] == "completed"
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", "--input", "deep=true", env=env)
    steps = {s["id"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps["deep-read"]["outputs"]["block_number"] == steps["read"]["outputs"]["block_number"]


def test_live_run_needs_confirmation_when_not_interactive(prefect_api, chain, env, tmp_path: Path) -> None:
    inventory = live_inventory(tmp_path, chain)
    playbook = _playbook(tmp_path, "steps:\n  - {id: w, kind: wait, with: {seconds: 0.1}}\n")
    result = subprocess.run([sys.executable, "-m", "breakglass.flows.cli.main", "run", str(playbook), "--inventory", str(inventory)],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**os.environ, **env}, cwd=REPO)
    assert result.returncode == 1
    assert "LIVE run and stdin is not a terminal: pass --yes" in result.stderr


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_kill_9_between_steps_then_resume_skips_completed_steps(prefect_api, chain, env, home: Path, tmp_path: Path) -> None:
    inventory = live_inventory(tmp_path, chain)
    playbook = _playbook(tmp_path, """steps:
  - {id: before, kind: snapshot, with: {chain: ethereum, paused: [vault]}}
  - {id: hold, kind: wait, needs: [before], with: {seconds: 4}}
  - {id: after, kind: snapshot, needs: [hold], with: {chain: ethereum, paused: [vault]}}
""")
    incident = f"INC-kill-{os.getpid()}-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "breakglass.flows.cli.main", "run", str(playbook), "--inventory", str(inventory), "--yes",
         "--incident", incident], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env}, cwd=REPO)
    records = home / "incidents" / incident / "runs"

    def record() -> dict:
        paths = list(records.glob("*/record.json"))
        return json.loads(paths[0].read_text()) if paths else {}

    _wait_for(lambda: any(s["id"] == "hold" and s["status"] == "running" for s in record().get("steps", [])))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed = record()
    before = next(s for s in killed["steps"] if s["id"] == "before")
    assert killed["status"] == "running" and before["status"] == "completed"
    with chain.rpc() as rpc:  # the chain moves on: a re-run of 'before' would read a later block
        for _ in range(3):
            rpc.call("evm_mine")

    status = cli("status", incident, "--json")
    assert json.loads(status.stdout)["runs"][0]["runner_stale"] is True

    result = cli("resume", incident, "--json", env=env)
    assert result.returncode == 0, result.stderr
    resumed = json.loads(result.stdout)
    steps = {s["id"]: s for s in resumed["steps"]}
    assert resumed["status"] == "completed"
    assert steps["before"] == before  # not run again: same attempt count, times and block
    assert steps["hold"]["status"] == "completed" and steps["hold"]["attempts"] == 2
    assert steps["after"]["outputs"]["block_number"] >= before["outputs"]["block_number"] + 3
    assert [a["status"] for a in resumed["attempts"]] == ["crashed", "completed"]
    assert resumed["attempts"][0]["flow_run_id"] != resumed["attempts"][1]["flow_run_id"]

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        first = client.read_flow_run(resumed["attempts"][0]["flow_run_id"])
        assert first.state.type.value == "CRASHED"


def test_resume_refuses_while_the_runner_is_alive(prefect_api, chain, env, home: Path, tmp_path: Path) -> None:
    inventory = live_inventory(tmp_path, chain)
    playbook = _playbook(tmp_path, "steps:\n  - {id: hold, kind: wait, with: {seconds: 5}}\n")
    incident = f"INC-alive-{os.getpid()}-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "breakglass.flows.cli.main", "run", str(playbook), "--inventory", str(inventory), "--yes",
         "--incident", incident], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env}, cwd=REPO)
    try:
        _wait_for(lambda: any(p.read_text().count('"running"') >= 2 for p in (home / "incidents" / incident).glob("runs/*/record.json")))
        result = cli("resume", incident, env=env)
        assert result.returncode == 1
        assert "is being executed right now by pid" in result.stderr
    finally:
        process.wait(timeout=60)
    assert process.returncode == 0
