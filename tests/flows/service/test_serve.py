"""`breakglass serve` with Slack approvals: a real uvicorn process, the local Slack Web API server,
signed interactivity requests, forged ones, PagerDuty paging, and a fuzzed endpoint."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breakglass.flows.run import audit
from tests.conftest import REPO, dev_key, fresh_protocol, live_inventory, wait_for, wait_healthy
from tests.flows.gates.test_gates import pause_transactions
from tests.helpers.jsonhttp import JsonServer
from tests.helpers.slack_server import SlackServer

SECRET = "test-slack-signing-secret"
APP, TEAM, WAR_ROOM = "A0BRKGLASS", "T0PROTOCOL", "C0WARROOM1"
USERS = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL"}


def slack_inventory(tmp: Path, chain, slack: SlackServer, pagerduty: str, paging_after: str = "2s",
                    socket_mode: bool = False, extra: str = "") -> Path:
    a = chain.addresses
    people = "".join(f'    {n}: {{slack: {u}, address: "{a["fixture:" + n]}"}}\n' for n, u in USERS.items())
    return live_inventory(tmp, chain, extra=f"""roster:
  people:
{people}  groups:
    responders: [alice, bob, carol]
channels:
  slack: {{kind: slack, token_env: SLACK_BOT_TOKEN, base_url: "{slack.base_url}"}}
slack_app:
  channel: slack
  post_to: {WAR_ROOM}
  signing_secret_env: SLACK_SIGNING_SECRET
  app_id: {APP}
  team_id: {TEAM}
{"  app_token_env: SLACK_APP_TOKEN" + chr(10) if socket_mode else ""}paging:
  url: "{pagerduty}"
  routing_key_env: PD_ROUTING_KEY
  after: {paging_after}
{extra}""")


GATED = """apiVersion: breakglass/v1
kind: Playbook
name: gated
description: test
severity: critical
steps:
  - id: gate
    kind: approval
    with: {approvers: responders, quorum: 2, exclude_initiator: true, timeout: 2m, on_timeout: abort, channels: [signed, slack]}
  - id: guarded
    kind: pause
    needs: [gate]
    timeout: 60s
    with: {contracts: [vault], signer: guardian}
"""


def signed(payload: dict | str, *, secret: str = SECRET, at: float | None = None) -> tuple[bytes, dict[str, str]]:
    body = ("payload=" + urlencode({"": json.dumps(payload) if isinstance(payload, dict) else payload})[1:]).encode()
    stamp = str(int(at if at is not None else time.time()))
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={mac}",
                  "Content-Type": "application/x-www-form-urlencoded"}


def click(user: str, value: str, action: str = "gate_approve", app: str = APP, team: str = TEAM) -> dict:
    fixture = json.loads((REPO.parent / "shared" / "fixtures" / "slack_block_actions_approve.json").read_text()) \
        if (REPO.parent / "shared" / "fixtures" / "slack_block_actions_approve.json").exists() else {}
    payload = {**fixture, "type": "block_actions", "api_app_id": app, "team": {"id": team, "domain": "protocol-sec"},
               "user": {"id": user, "username": user, "team_id": team},
               "actions": [{"type": "button", "action_id": action, "block_id": "gate:gate", "value": value,
                            "action_ts": f"{time.time():.6f}"}]}
    return payload


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(chain, home: Path, tmp_path: Path, socket_url: str | None = None, paging: str = "",
                env_extra: dict[str, str] | None = None, paging_after: str = "2s") -> dict:
    slack = SlackServer()
    slack.socket_url = socket_url
    pages: list[dict] = []
    pagerduty = JsonServer(lambda body: (pages.append(body), (202, {"status": "success"}))[1])
    books = tmp_path / "books"
    books.mkdir()
    shutil.copytree(REPO / "playbooks" / "templates", books / "templates")
    (books / "gated.yaml").write_text(GATED)
    inventory = slack_inventory(tmp_path, chain, slack, pagerduty.url, socket_mode=socket_url is not None, extra=paging,
                                paging_after=paging_after)
    port = free_port()
    env = {**os.environ, "BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"),
           "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": SECRET, "PD_ROUTING_KEY": "pd-routing-key-secret",
           "BREAKGLASS_SERVE_TOKEN": "serve-token-secret", "SLACK_APP_TOKEN": slack.app_token, **(env_extra or {})}
    process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "serve", "--inventory", str(inventory),
                                "--playbooks", str(books), "--port", str(port)], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, process)
    return {"base": base, "chain": chain, "slack": slack, "pages": pages, "env": env, "process": process, "home": home,
            "closers": [slack.close, pagerduty.close], "command": process.args}


def stop_serve(served: dict) -> None:
    process = served["process"]
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    for close in served["closers"]:
        close()


@pytest.fixture
def served(prefect_api, chain, home, tmp_path):
    served = start_serve(fresh_protocol(chain), home, tmp_path)
    yield served
    stop_serve(served)


def start_gated_run(served: dict, tag: str) -> tuple[str, str]:
    """POST /runs as alice; returns the incident and the Approve button's value from the gate message."""
    incident = f"INC-{tag}-{os.getpid()}-{time.monotonic_ns()}"
    started = httpx.post(served["base"] + "/runs", json={"playbook": "gated", "incident": incident, "as": "alice"},
                         headers={"Authorization": "Bearer serve-token-secret"}, timeout=30)
    assert started.status_code == 202, started.text
    message = wait_for(lambda: next(iter(served["slack"].messages.get(WAR_ROOM, [])), None), what="gate message")
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    return incident, actions["elements"][0]["value"]


def _gate(home: Path, incident: str) -> dict:
    paths = list((home / "incidents" / incident).glob("runs/*/gates/gate.json"))
    return json.loads(paths[0].read_text()) if paths else {}


def test_a_two_of_three_gate_passes_on_two_slack_clicks_and_refuses_every_forgery(served) -> None:
    base, slack, home, chain = served["base"], served["slack"], served["home"], served["chain"]
    assert httpx.get(base + "/readyz", timeout=10).json()["ready"] is True
    assert httpx.post(base + "/runs", json={"playbook": "gated"}).status_code == 401
    incident, value = start_gated_run(served, "slack")
    message = slack.messages[WAR_ROOM][0]
    assert json.loads(value) == {"incident": incident, "gate": "gate", "digest": _gate(home, incident)["digest"]}
    assert "pause on vault" in json.dumps(message["blocks"]) and "0 of 2 approvals" in message["text"]

    def post(payload, **kw):
        body, headers = signed(payload, **kw)
        return httpx.post(base + "/slack/interactivity", content=body, headers=headers, timeout=10)

    old = json.dumps({"incident": incident, "gate": "gate", "digest": "0x" + "00" * 32})
    other = json.dumps({"incident": "INC-other", "gate": "gate", "digest": _gate(home, incident)["digest"]})
    forged = {
        "bad signature": post(click(USERS["bob"], value), secret="wrong-secret"),
        "stale timestamp": post(click(USERS["bob"], value), at=time.time() - 600),
        "future timestamp": post(click(USERS["bob"], value), at=time.time() + 600),
        "not on roster": post(click("U0MALLORY", value)),
        "other app": post(click(USERS["bob"], value, app="A0OTHER")),
        "other team": post(click(USERS["bob"], value, team="T0OTHER")),
        "other incident": post(click(USERS["bob"], other)),
        "old digest": post(click(USERS["bob"], old)),
        "malformed payload": post("{not json"),
        "initiator": post(click(USERS["alice"], value)),
    }
    expected = {"bad signature": 401, "stale timestamp": 401, "future timestamp": 401, "malformed payload": 400}
    for case, response in forged.items():
        assert response.status_code == expected.get(case, 403), (case, response.status_code, response.text)
    assert not any(v.get("counted") for v in _gate(home, incident).get("votes", []))
    wait_for(lambda: served["pages"], what="a PagerDuty trigger")  # forgeries are not acting: the roster is paged
    assert served["pages"][0]["event_action"] == "trigger" and served["pages"][0]["routing_key"] == "pd-routing-key-secret"

    body, headers = signed(click(USERS["bob"], value))
    first = httpx.post(base + "/slack/interactivity", content=body, headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    replay = httpx.post(base + "/slack/interactivity", content=body, headers={**headers, "X-Slack-Retry-Num": "1"})
    assert replay.status_code == 200 and replay.json() == first.json()
    wait_for(lambda: [v["name"] for v in _gate(home, incident)["votes"] if v.get("counted")] == ["bob"], what="bob counted")
    wait_for(lambda: "1 of 2 approvals" in slack.messages[WAR_ROOM][0]["text"], what="message updated after bob")
    assert "bob via slack" in json.dumps(slack.messages[WAR_ROOM][0]["blocks"])
    double = post(click(USERS["bob"], value))
    assert double.status_code == 200 and "already" in double.json()["text"]
    changed = post(click(USERS["bob"], value, action="gate_reject"))  # approved, then Reject: refused, logged
    assert changed.status_code == 409 and "cannot be changed" in changed.json()["error"], changed.text
    assert any(e["event"] == "slack.refused" and "cannot be changed" in e["reason"] and e["user"] == USERS["bob"]
               for e in audit.entries(home / "incidents" / incident))

    assert post(click(USERS["carol"], value)).status_code == 200
    wait_for(lambda: _gate(home, incident).get("status") == "passed", what="gate passed")
    wait_for(lambda: len(pause_transactions(chain, chain.addresses["fixture:vault"])) == 1, what="the pause")
    final = wait_for(lambda: "Approved" in json.dumps(slack.messages[WAR_ROOM][0]["blocks"]) and slack.messages[WAR_ROOM][0],
                  what="outcome in the message")
    assert not any(b["type"] == "actions" for b in final["blocks"])  # the buttons are gone
    assert [m for m in slack.messages[WAR_ROOM] if "Approval needed" in m["text"]] == [final]  # one, updated in place
    record = wait_for(lambda: [json.loads(p.read_text()) for p in (home / "incidents" / incident).glob("runs/*/record.json")
                               if json.loads(p.read_text())["status"] == "completed"], what="the run completed")[0]
    last = wait_for(lambda: len(slack.messages[WAR_ROOM]) == 2 and slack.messages[WAR_ROOM][1], what="the final message")
    assert record["audit_head"]["sha256"] in last["text"] and "completed" in last["text"]  # the head, outside our disk
    wait_for(lambda: any(p["event_action"] == "resolve" for p in served["pages"]), what="the page resolved")
    assert len([p for p in served["pages"] if p["event_action"] == "trigger"]) == 1

    closed = post(click(USERS["bob"], value, action="gate_reject"))
    assert closed.status_code == 403 and "already decided" in closed.json()["error"]
    time.sleep(1.5)
    assert len(pause_transactions(chain, chain.addresses["fixture:vault"])) == 1
    refused = [e for e in audit.entries(home / "incidents" / incident) if e["event"] == "slack.refused"]
    refused += [e for e in audit.entries(home / "serve") if e["event"] == "slack.refused"]
    assert len(refused) >= 9 and all("trigger_id" not in json.dumps(e) and "v0=" not in json.dumps(e) for e in refused)
    counted = [e for e in audit.entries(home / "incidents" / incident) if e["event"] == "vote.counted"]
    assert [(e["name"], e["channel"]) for e in counted] == [("bob", "slack"), ("carol", "slack")]
    secrets = (SECRET, "pd-routing-key-secret", "serve-token-secret", slack.token, served["env"]["BG_TEST_GUARDIAN_KEY"][2:])
    texts = [p.read_text(errors="replace") for p in (home / "incidents" / incident).rglob("*") if p.is_file()]
    texts += [p.read_text(errors="replace") for p in (home / "serve").rglob("*.jsonl")]
    assert not any(s in t for s in secrets for t in texts)


def test_serve_shuts_down_on_sigterm(served) -> None:
    served["process"].send_signal(signal.SIGTERM)
    assert served["process"].wait(timeout=30) == 0
    assert "breakglass serve stopped" in served["process"].stderr.read()


@pytest.fixture(scope="module")
def handler_app(prefect_api, chain, home, tmp_path_factory):
    from fastapi.testclient import TestClient

    from breakglass.flows.service import serve as serve_mod

    tmp = tmp_path_factory.mktemp("fuzz")
    slack = SlackServer()
    books = tmp / "books"
    books.mkdir()
    inventory = slack_inventory(tmp, chain, slack, "http://127.0.0.1:9")
    saved = {k: os.environ.get(k) for k in ("BG_TEST_RPC_URL", "SLACK_SIGNING_SECRET")}
    os.environ.update({"BG_TEST_RPC_URL": chain.url, "SLACK_SIGNING_SECRET": SECRET})
    service = serve_mod.Service(home, inventory, books, prefect_api)
    with TestClient(serve_mod.app(service)) as client:
        yield client
    slack.close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), sign=st.booleans(), payload=json_values, as_form=st.booleans(),
       stamp=st.one_of(st.none(), st.from_regex(r"[0-9a-z+-]{0,12}", fullmatch=True)),
       levels=st.sampled_from([0, 0, 0, 1, 33, 1_000, 70_000, 200_000]), nest_value=st.booleans())
def test_the_interactivity_endpoint_answers_garbage_with_a_clean_4xx(handler_app, body, sign, payload, as_form, stamp,
                                                                     levels, nest_value) -> None:
    if as_form:
        text = json.dumps(payload)
        if levels and nest_value:  # nested inside the button's value, or around the whole payload
            text = json.dumps(click(USERS["bob"], "[" * levels + "]" * levels))
        elif levels:
            text = "[" * levels + text + "]" * levels
        body = ("payload=" + urlencode({"": text})[1:]).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if sign:
        now = str(int(time.time()))
        headers["X-Slack-Request-Timestamp"] = now
        headers["X-Slack-Signature"] = "v0=" + hmac.new(SECRET.encode(), f"v0:{now}:".encode() + body, hashlib.sha256).hexdigest()
    elif stamp is not None:
        headers["X-Slack-Request-Timestamp"] = stamp
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    response = handler_app.post("/slack/interactivity", content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


def test_the_same_clicks_over_socket_mode_pass_the_gate(prefect_api, chain, home, tmp_path) -> None:
    from websockets.sync.server import serve as ws_serve

    connections: list = []

    def handler(connection) -> None:
        connections.append(connection)
        connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        while True:
            try:
                acks.append(json.loads(connection.recv()))
            except Exception:  # noqa: BLE001 - closed
                return

    acks: list[dict] = []
    server = ws_serve(handler, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    served = start_serve(fresh_protocol(chain), home, tmp_path, socket_url=f"ws://127.0.0.1:{server.socket.getsockname()[1]}/link")
    try:
        wait_for(lambda: connections, what="serve connected over Socket Mode")
        incident, value = start_gated_run(served, "socket")
        for n, user in enumerate((USERS["bob"], USERS["carol"])):
            envelope = {"envelope_id": f"env-{n}", "type": "interactive", "accepts_response_payload": False,
                        "payload": click(user, value)}
            connections[-1].send(json.dumps(envelope))
            wait_for(lambda n=n: any(a.get("envelope_id") == f"env-{n}" for a in acks), what=f"ack of envelope {n}")
        wait_for(lambda: _gate(home, incident).get("status") == "passed", what="gate passed over Socket Mode")
        chain_ = served["chain"]
        wait_for(lambda: len(pause_transactions(chain_, chain_.addresses["fixture:vault"])) == 1, what="the pause")
        counted = [e for e in audit.entries(home / "incidents" / incident) if e["event"] == "vote.counted"]
        assert sorted(e["name"] for e in counted) == ["bob", "carol"]  # acked first, recorded in any order
    finally:
        stop_serve(served)
        server.shutdown()


PREPARED = """apiVersion: breakglass/v1
kind: Playbook
name: fast
description: test
severity: critical
steps:
  - {id: pause, kind: pause, with: {contracts: [vault], signer: guardian, prepared: true}}
"""


def test_serve_keeps_prepared_pauses_fresh_and_says_why_it_is_not_ready(prefect_api, chain, home, tmp_path, monkeypatch) -> None:
    from breakglass.flows.effects import prepared
    from breakglass.flows.service import serve as serve_mod
    from breakglass.flows.spec.validate import load_inventory

    chain = fresh_protocol(chain)
    books = tmp_path / "books"
    books.mkdir()
    (books / "fast.yaml").write_text(PREPARED)
    inventory = live_inventory(tmp_path, chain)
    port = free_port()
    env = {**os.environ, "BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian")}
    process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "serve", "--inventory", str(inventory),
                                "--playbooks", str(books), "--port", str(port), "--refresh", "0.5"], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        inv = load_inventory(inventory)
        guardian = chain.addresses["fixture:guardian"]

        def nonce() -> int:
            with chain.rpc() as rpc:
                return int(rpc.call("eth_getTransactionCount", [guardian, "pending"]), 16)

        wait_for(lambda: [t.nonce for t in prepared.load(home, inv, "fast", "pause")] == [nonce()], what="prepared at start")
        with chain.rpc() as rpc:  # the guardian key is used elsewhere: the prepared pause's nonce is gone
            rpc.call("eth_sendTransaction", [{"from": guardian, "to": guardian, "value": "0x0"}])
        wait_for(lambda: [t.nonce for t in prepared.load(home, inv, "fast", "pause")] == [nonce()], what="re-signed")
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json() == {
            "ready": True, "problems": [], "playbooks": ["fast"], "pool": None, "running": []}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    monkeypatch.setenv("BG_TEST_RPC_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("BG_TEST_GUARDIAN_KEY", dev_key("guardian"))
    service = serve_mod.Service(home, inventory, books, prefect_api)
    doc = service.ready()
    assert doc["ready"] is False and any(p.startswith("chain ethereum:") for p in doc["problems"])
