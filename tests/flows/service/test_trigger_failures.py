"""An alert is never lost to a playbook's own mistake: a trigger whose inputs do not render on the alert,
or inputs the playbook refuses, still gets a recorded incident (status, audit log, war room) and a 202."""

from __future__ import annotations

import json
import os
import time

import pytest

from breakglass.flows.run import audit
from tests.conftest import cli, dev_key, fresh_protocol, wait_for
from tests.flows.service.test_intake import OZ_SECRET, TENDERLY_KEY, TOKEN, Serve
from tests.helpers.slack_server import SlackServer

pytestmark = pytest.mark.slow

WAR_ROOM = "C0WARROOM9"
ADDRESSED = """apiVersion: breakglass/v1
kind: Playbook
name: on-addressed
description: like the shipped active-drain trigger (alert.raw.matchReasons[0]), a path validate cannot check
severity: critical
inputs:
  attacker: {type: address}
triggers:
  - source: generic
    match: {title: "drain*"}
    inputs: {attacker: "{{ alert.raw.data.attacker }}"}
steps:
  - {id: look, kind: snapshot, with: {chain: ethereum, paused: [vault]}}
"""
TYPED = ADDRESSED.replace("on-addressed", "on-typed").replace("drain*", "typed*").replace(
    "{{ alert.raw.data.attacker }}", "{{ alert.title }}")  # renders, but a title is not an address


def test_a_trigger_whose_inputs_fail_still_records_the_incident_and_answers_202(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    slack = SlackServer()
    env = {**os.environ, "BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), "OZ_SECRET": OZ_SECRET,
           "TENDERLY_KEY": TENDERLY_KEY, "GENERIC_TOKEN": TOKEN, "SLACK_BOT_TOKEN": slack.token,
           "SLACK_SIGNING_SECRET": "signing-secret"}
    served = Serve(tmp_path, chain, env)
    (served.books / "on-addressed.yaml").write_text(ADDRESSED)
    (served.books / "on-typed.yaml").write_text(TYPED)
    (served.books / "on-generic.yaml").unlink()  # only the broken playbooks match
    with open(served.inventory, "a") as fh:
        fh.write(f"""channels:
  slack: {{kind: slack, token_env: SLACK_BOT_TOKEN, base_url: "{slack.base_url}"}}
slack_app: {{channel: slack, post_to: {WAR_ROOM}, signing_secret_env: SLACK_SIGNING_SECRET, app_id: A0X, team_id: T0X}}
""")
    served.start()
    home = served.home
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        body = json.dumps({"id": f"drain-{time.monotonic_ns()}", "title": "drain of the vault"}).encode()
        first = served.post("generic", body, headers)
        assert first.status_code == 202, first.text
        answer = first.json()
        incident = answer["incidents"][0]
        assert answer["matched"] == ["on-addressed"] and answer["failed"][0]["playbook"] == "on-addressed"
        assert "do not render" in answer["failed"][0]["reason"] and "Traceback" not in first.text
        assert (home / "incidents" / incident / "incident.json").exists()  # no phantom: the incident is on disk
        failed = [e for e in audit.entries(home / "incidents" / incident) if e["event"] == "trigger.failed"]
        assert len(failed) == 1 and failed[0]["playbook"] == "on-addressed" and failed[0]["alert"]["title"] == "drain of the vault"

        again = served.post("generic", body, headers)  # the monitor's retry: the same incident, no second one
        assert again.status_code == 202 and again.json()["incidents"] == [incident]
        assert len([p for p in (home / "incidents").iterdir() if p.is_dir()]) == 1

        typed = json.dumps({"id": f"typed-{time.monotonic_ns()}", "title": "typed drain"}).encode()
        second = served.post("generic", typed, headers)
        assert second.status_code == 202 and "failed" not in second.json()  # renders; the playbook refuses it later
        other = second.json()["incidents"][0]
        refused = wait_for(lambda: [e for e in audit.entries(home / "incidents" / other) if e["event"] == "trigger.failed"],
                           what="the refused inputs recorded")
        assert refused[0]["playbook"] == "on-typed" and "did not start" in refused[0]["reason"]
        assert not list((home / "incidents" / other).glob("runs/*/record.json"))

        status = cli("status", "--json", env={"BREAKGLASS_HOME": str(home)})
        assert status.returncode == 0, status.stderr
        rows = {(r["incident"], r["run"]): r for r in json.loads(status.stdout)["runs"]}
        assert rows[(incident, "on-addressed")]["status"] == "not started"
        assert "do not render" in rows[(incident, "on-addressed")]["reason"]
        assert rows[(other, "on-typed")]["status"] == "not started"
        told = wait_for(lambda: len(slack.messages.get(WAR_ROOM, [])) >= 2 and slack.messages[WAR_ROOM], what="war room")
        assert any(incident in m["text"] and "did NOT start" in m["text"] for m in told)
        assert any(other in m["text"] for m in told)
    finally:
        served.stop()
        slack.close()
    assert "Traceback" not in served.process.stderr.read()  # the responder sees reasons, not stack traces
    for path in [home, *(p for p in home.rglob("*") if p.parts[len(home.parts)] in ("incidents", "intake", "serve"))]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (str(path), oct(mode))  # nothing under the home is shared
    logged = [json.loads(line) for line in (home / "intake" / "log.jsonl").read_text().splitlines()]
    assert not [e for e in logged if e["type"] == "route" and e["status"] == "to-start"]
