"""`serve` restarted after a kill -9 continues what it owned: every accepted alert ends in exactly one pause
transaction with no manual `resume`, and a gate that was waiting passes on clicks after the restart."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from breakglass.flows.run import audit
from tests.conftest import REPO, dev_key, fresh_protocol, live_inventory, wait_for, wait_healthy
from tests.flows.gates.test_gates import pause_transactions
from tests.flows.service.test_serve import (
    USERS,
    WAR_ROOM,
    _gate,
    click,
    free_port,
    signed,
    start_gated_run,
    start_serve,
    stop_serve,
)

pytestmark = pytest.mark.slow

TOKEN = "restart-generic-token"
TRIALS = 10


def drain_book(n: int) -> str:
    return f"""apiVersion: breakglass/v1
kind: Playbook
name: on-drain-{n}
description: an alert pauses vault {n}
severity: critical
triggers:
  - source: generic
    match: {{title: "drain-{n} *"}}
steps:
  - {{id: pause, kind: pause, with: {{contracts: [vault{n}], signer: guardian}}}}
"""


class Service:
    """A `serve` process whose stderr goes to a file (a pipe nobody drains would block it); one unpaused
    vault and one playbook per trial, so that one process chain runs every trial."""

    def __init__(self, tmp: Path, chain, protocols: list, env: dict[str, str]) -> None:
        self.books = tmp / "books"
        self.books.mkdir(parents=True)
        for n in range(len(protocols)):
            (self.books / f"on-drain-{n}.yaml").write_text(drain_book(n))
        self.inventory = live_inventory(tmp, chain, extra="alert_sources:\n  generic: {kind: generic, token_env: GENERIC_TOKEN}\n")
        vaults = "".join(f'  vault{n}: {{chain: ethereum, address: "{p.addresses["fixture:vault"]}", guardian: guardian}}\n'
                         for n, p in enumerate(protocols))
        self.inventory.write_text(self.inventory.read_text().replace("contracts:\n", "contracts:\n" + vaults, 1))
        self.home, self.tmp = tmp / "home", tmp
        self.env = {**env, "BREAKGLASS_HOME": str(self.home), "GENERIC_TOKEN": TOKEN}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Service:
        self.starts += 1
        log = open(self.tmp / f"serve-{self.starts}.log", "w")  # noqa: SIM115 - the process owns it
        self.process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "serve", "--inventory",
                                         str(self.inventory), "--playbooks", str(self.books), "--port", str(self.port)],
                                        env=self.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log, text=True)
        wait_healthy(self.base, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def records(home: Path, incident: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in (home / "incidents" / incident).glob("runs/*/record.json")]


@pytest.mark.timeout(1500)
def test_kill_9_between_the_202_and_the_pause_then_a_plain_restart_pauses_exactly_once(prefect_api, chain, tmp_path) -> None:
    seed = int(os.environ.get("BG_KILL_SEED", time.time()))
    rng = random.Random(seed)
    protocols = [fresh_protocol(chain) for _ in range(TRIALS)]
    vaults = [p.addresses["fixture:vault"] for p in protocols]
    env = {**os.environ, "BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")}
    served = Service(tmp_path, protocols[0], protocols, env).start()
    outcomes = []
    try:
        for trial in range(TRIALS):
            body = json.dumps({"id": f"drain-{trial}-{time.monotonic_ns()}", "title": f"drain-{trial} of the vault"}).encode()
            answer = httpx.post(served.base + "/alerts/generic", content=body, timeout=30,
                                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            assert answer.status_code == 202 and answer.json()["matched"] == [f"on-drain-{trial}"], answer.text
            accepted = time.monotonic()
            incident = answer.json()["incidents"][0]
            time.sleep(rng.uniform(0.0, 2.5))  # the pause goes out from the flow run, about 1-3 s after the 202
            served.process.send_signal(signal.SIGKILL)
            served.process.wait(timeout=30)
            at_kill = {"ms": round((time.monotonic() - accepted) * 1000), "run": bool(records(served.home, incident)),
                       "paused": len(pause_transactions(protocols[trial], vaults[trial]))}
            served.start()  # a plain restart: no `breakglass resume`
            done = wait_for(lambda i=incident: [r for r in records(served.home, i) if r["status"] == "completed"],
                            timeout=120, what=f"trial {trial} ({at_kill}): the run completed after the restart")
            assert len(records(served.home, incident)) == 1 and done[0]["steps"][0]["status"] == "completed"
            resumed = [e for e in audit.entries(served.home / "incidents" / incident) if e["event"] == "run.resumed"]
            outcomes.append({**at_kill, "resumed": bool(resumed)})
        time.sleep(1)
        counts = [len(pause_transactions(p, v)) for p, v in zip(protocols, vaults, strict=True)]
        assert counts == [1] * TRIALS, (seed, counts, outcomes)  # exactly one pause per accepted alert
    finally:
        served.stop()
    print(f"kill -9 seed {seed}: {outcomes}")
    assert any(o["run"] and not o["paused"] for o in outcomes), outcomes  # some kills fell between the run and its pause


def test_a_gate_waiting_before_a_kill_9_passes_on_clicks_after_the_restart(prefect_api, chain, home, tmp_path) -> None:
    served = start_serve(fresh_protocol(chain), home, tmp_path)
    base, slack, chain_ = served["base"], served["slack"], served["chain"]
    try:
        incident, value = start_gated_run(served, "restart")

        def post(user: str) -> httpx.Response:
            body, headers = signed(click(USERS[user], value))
            return httpx.post(base + "/slack/interactivity", content=body, headers=headers, timeout=30)

        assert post("bob").status_code == 200
        wait_for(lambda: [v["name"] for v in _gate(home, incident)["votes"] if v.get("counted")] == ["bob"], what="bob")
        served["process"].send_signal(signal.SIGKILL)
        served["process"].wait(timeout=30)

        served["process"] = subprocess.Popen(served["command"], env=served["env"], cwd=REPO, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True)
        wait_healthy(base, served["process"])
        wait_for(lambda: _gate(home, incident).get("attempt") == 2 and _gate(home, incident)["status"] == "waiting",
                 timeout=60, what="the gate waiting again in the resumed run")
        assert [v["name"] for v in _gate(home, incident)["votes"] if v.get("counted")] == ["bob"]  # its votes kept
        assert pause_transactions(chain_, chain_.addresses["fixture:vault"]) == []

        assert post("carol").status_code == 200  # the quorum-completing click, after the restart
        wait_for(lambda: _gate(home, incident).get("status") == "passed", timeout=60, what="gate passed after restart")
        wait_for(lambda: len(pause_transactions(chain_, chain_.addresses["fixture:vault"])) == 1, what="the pause")
        wait_for(lambda: [r for r in records(home, incident) if r["status"] == "completed"], timeout=60, what="completed")
        counted = [e for e in audit.entries(home / "incidents" / incident) if e["event"] == "vote.counted"]
        assert sorted(e["name"] for e in counted) == ["bob", "carol"]
        gate_messages = [m for m in slack.messages[WAR_ROOM] if "Approval needed" in m["text"]]
        assert len(gate_messages) == 1  # the same message, found again and updated
        time.sleep(1)
        assert len(pause_transactions(chain_, chain_.addresses["fixture:vault"])) == 1
    finally:
        stop_serve(served)


BOTH = """apiVersion: breakglass/v1
kind: Playbook
name: on-both
description: one playbook, two monitors
severity: critical
inputs:
  tx: {type: string}
triggers:
  - source: oz
    match: {title: "Large Transfer*"}
    inputs: {tx: "{{ alert.tx_hash }}"}
  - source: generic
    inputs: {tx: "{{ alert.tx_hash }}"}
steps:
  - {id: look, kind: snapshot, with: {chain: ethereum, paused: [vault]}}
"""
ROUTER = "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"


def test_after_a_restart_an_alert_for_the_same_transaction_joins_the_open_incident(prefect_api, chain, tmp_path) -> None:
    from tests.flows.service.test_intake import DATA, OZ_SECRET, TENDERLY_KEY, oz
    from tests.flows.service.test_intake import TOKEN as GENERIC
    from tests.flows.service.test_intake import Serve as IntakeServe

    protocol = fresh_protocol(chain)
    env = {**os.environ, "BG_TEST_RPC_URL": protocol.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"),
           "OZ_SECRET": OZ_SECRET, "TENDERLY_KEY": TENDERLY_KEY, "GENERIC_TOKEN": GENERIC}
    served = IntakeServe(tmp_path, protocol, env)
    for path in served.books.glob("*.yaml"):
        path.unlink()
    (served.books / "on-both.yaml").write_text(BOTH)
    with open(served.inventory, "a") as fh:
        fh.write(f'never_correlate: {{universal-router: "{ROUTER}"}}\n')
    served.start()
    home = served.home
    generic = {"Authorization": f"Bearer {GENERIC}", "Content-Type": "application/json"}
    try:
        body = (DATA / "oz_monitor_raw_evm_match.json").read_bytes()
        first = served.post("oz", body, oz(body))
        assert first.status_code == 202, first.text
        incident = first.json()["incidents"][0]
        wait_for(lambda: [r for r in records(home, incident) if r["status"] == "completed"], what="the oz run")
        tx = json.loads(body)["EVM"]["transaction"]["hash"].lower()
    finally:
        served.stop()  # SIGTERM here; a kill -9 loses nothing more: the intake log is fsynced before each 202

    served.start()
    try:
        same_tx = json.dumps({"id": "generic-same-tx", "title": "outflow", "tx_hash": tx}).encode()
        joined = served.post("generic", same_tx, generic)
        assert joined.status_code == 202 and joined.json()["incidents"] == [incident], joined.text
        how = [json.loads(line)["how"] for line in (home / "incidents" / incident / "alerts.jsonl").read_text().splitlines()]
        assert how == ["new", "correlated"]

        # two unrelated attacks through the same router: the router never joins them
        a = json.dumps({"id": "a", "title": "x", "tx_hash": "0x" + "a1" * 32, "addresses": [ROUTER],
                        "actors": ["0x" + "ab" * 20, ROUTER]}).encode()
        b = json.dumps({"id": "b", "title": "y", "tx_hash": "0x" + "b2" * 32, "addresses": [ROUTER],
                        "actors": [ROUTER]}).encode()
        first_a, first_b = served.post("generic", a, generic).json(), served.post("generic", b, generic).json()
        assert first_a["incidents"] != first_b["incidents"]
        # the same attacker (an actor) in another transaction joins its incident
        c = json.dumps({"id": "c", "title": "z", "tx_hash": "0x" + "c3" * 32, "actors": ["0x" + "ab" * 20]}).encode()
        assert served.post("generic", c, generic).json()["incidents"] == first_a["incidents"]
        time.sleep(1.5)
        assert len(records(home, incident)) == 1  # the joined alert started nothing
    finally:
        served.stop()
    stderr = served.process.stderr.read()
    assert not re.search(r"run of \S+ failed|\bfailed:", stderr), stderr[-2000:]  # a joined alert is not a failed run
