"""Alert intake through a real `serve`: signed real-format alerts start their playbooks, replays and
duplicates start nothing, correlated alerts join the incident, forgeries get 401, and an alert
accepted just before a kill -9 is started after the restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, dev_key, fresh_protocol, live_inventory, wait_for, wait_healthy
from tests.flows.service.test_serve import free_port

DATA = REPO / "tests" / "data" / "alerts"
OZ_SECRET, TENDERLY_KEY, TOKEN = "oz-test-secret", "tenderly-test-key", "generic-test-token"


def sources() -> str:
    return """alert_sources:
  oz: {kind: oz-monitor, secret_env: OZ_SECRET, dedupe_window: 10m}
  tenderly: {kind: tenderly, secret_env: TENDERLY_KEY}
  generic: {kind: generic, token_env: GENERIC_TOKEN}
  forta: {kind: forta, scanners: ["0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"]}
  am: {kind: alertmanager, username_env: AM_USER, password_env: AM_PASSWORD}
  defender: {kind: defender, secret_env: DEFENDER_SECRET}
"""


def book(name: str, source: str, title: str) -> str:
    return f"""apiVersion: breakglass/v1
kind: Playbook
name: {name}
description: test
severity: critical
inputs:
  tx: {{type: string}}
triggers:
  - source: {source}
    match: {{title: "{title}"}}
    inputs: {{tx: "{{{{ alert.tx_hash }}}}"}}
steps:
  - {{id: look, kind: snapshot, with: {{chain: ethereum, paused: [vault]}}}}
"""


def oz(body: bytes, at: float | None = None, secret: str = OZ_SECRET) -> dict[str, str]:
    stamp = str(int((at if at is not None else time.time()) * 1000))
    return {"X-Timestamp": stamp, "X-Signature": hmac.new(secret.encode(), body + stamp.encode(), hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


def tenderly(body: bytes) -> dict[str, str]:
    date = formatdate(usegmt=True)
    return {"date": date, "x-tenderly-signature": hmac.new(TENDERLY_KEY.encode(), body + date.encode(), hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


class Serve:
    def __init__(self, tmp: Path, chain, env: dict[str, str]) -> None:
        self.books = tmp / "books"
        self.books.mkdir(exist_ok=True)
        (self.books / "on-oz.yaml").write_text(book("on-oz", "oz", "Large Transfer*"))
        (self.books / "on-tenderly.yaml").write_text(book("on-tenderly", "tenderly", "Tenderly alert"))
        (self.books / "on-generic.yaml").write_text(book("on-generic", "generic", "*"))
        for kind, source in (("forta", "forta"), ("am", "am"), ("defender", "defender")):
            (self.books / f"on-{kind}.yaml").write_text(book(f"on-{kind}", source, "*"))
        self.inventory = live_inventory(tmp, chain, extra=sources())
        self.home = tmp / "home"  # its own intake log: alerts of other tests must not dedupe into these
        self.env, self.process = {**env, "BREAKGLASS_HOME": str(tmp / "home")}, None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self, failpoint: str | None = None) -> Serve:
        extra = {"BREAKGLASS_TEST_CRASH_AT": failpoint, "BREAKGLASS_TEST_CRASH_DELAY": "1"} if failpoint else {}
        self.process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "serve", "--inventory", str(self.inventory),
                                         "--playbooks", str(self.books), "--port", str(self.port)],
                                        env={**self.env, **extra}, cwd=REPO, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        wait_healthy(self.base, self.process)
        return self

    def post(self, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.base}/alerts/{source}", content=body, headers=headers, timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture
def intake(prefect_api, chain, home, tmp_path):
    chain = fresh_protocol(chain)
    env = {**os.environ, "BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), "OZ_SECRET": OZ_SECRET,
           "TENDERLY_KEY": TENDERLY_KEY, "GENERIC_TOKEN": TOKEN, "AM_USER": "alertmanager", "AM_PASSWORD": "am-test-password",
           "DEFENDER_SECRET": "defender-test-secret"}
    served = Serve(tmp_path, chain, env).start()
    yield served
    served.stop()


def runs(home: Path, incident: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in (home / "incidents" / incident).glob("runs/*/record.json")]


def test_signed_alerts_start_playbooks_replays_and_duplicates_do_not(intake) -> None:
    home = intake.home
    assert httpx.get(intake.base + "/alerts/tenderly").status_code == 200  # Tenderly probes the URL with GET
    body = (DATA / "oz_monitor_raw_evm_match.json").read_bytes()
    headers = oz(body)
    first = intake.post("oz", body, headers)
    assert first.status_code == 202, first.text
    incident = first.json()["incidents"][0]
    assert first.json()["matched"] == ["on-oz"]
    record = wait_for(lambda: [r for r in runs(home, incident) if r["status"] == "completed"], what="the oz run")[0]
    assert record["inputs"]["tx"].startswith("0x9a1b2c3d") and record["initiator"] == "alert:oz"

    replay = intake.post("oz", body, headers)  # the same request again: its original answer, nothing new
    assert replay.status_code == 202 and replay.json()["replay"] is True and replay.json()["incidents"] == [incident]
    resent = intake.post("oz", body, oz(body))  # a retry with a fresh signature: the same alert, deduped
    assert resent.status_code == 202 and resent.json()["matched"] == [] and resent.json()["incidents"] == [incident]

    correlated = (DATA / "tenderly_alert_webhook.json").read_bytes()  # same transaction, another source
    answer = intake.post("tenderly", correlated, tenderly(correlated))
    assert answer.status_code == 202 and answer.json() == {"accepted": 1, "matched": ["on-tenderly"], "incidents": [incident]}
    wait_for(lambda: len(runs(home, incident)) == 2, what="the correlated run under the same incident")
    time.sleep(1)
    assert sorted(r["playbook"]["name"] for r in runs(home, incident)) == ["on-oz", "on-tenderly"]
    joined = [json.loads(line)["how"] for line in (home / "incidents" / incident / "alerts.jsonl").read_text().splitlines()]
    assert joined == ["new", "duplicate", "correlated"]

    unmatched = json.dumps({"id": "nothing-1", "title": "x"}).encode()
    other = intake.post("generic", unmatched, {"Authorization": f"Bearer {TOKEN}"})
    assert other.status_code == 202 and other.json()["matched"] == ["on-generic"]


@pytest.mark.parametrize(("case", "status"), [
    ("bad signature", 401), ("stale timestamp", 401), ("missing headers", 401), ("wrong token", 401),
    ("invalid json", 400), ("wrong field type", 400), ("too large", 413), ("unknown source", 404),
    ("wrong content type", 415)])
def test_forged_or_broken_alerts_start_nothing(intake, case, status) -> None:
    home = intake.home
    body = (DATA / "oz_monitor_raw_evm_match.json").read_bytes()
    before = set(home.glob("incidents/*/runs/*/record.json"))
    if case == "bad signature":
        response = intake.post("oz", body, oz(body, secret="wrong"))
    elif case == "stale timestamp":
        response = intake.post("oz", body, oz(body, at=time.time() - 3600))
    elif case == "missing headers":
        response = intake.post("oz", body, {})
    elif case == "wrong token":
        response = intake.post("generic", b'{"id": "a", "title": "b"}', {"Authorization": "Bearer nope"})
    elif case == "invalid json":
        response = intake.post("generic", b"{not json", {"Authorization": f"Bearer {TOKEN}"})
    elif case == "wrong field type":
        response = intake.post("generic", b'{"id": "a", "title": "b", "chain_id": "one"}', {"Authorization": f"Bearer {TOKEN}"})
    elif case == "wrong content type":
        response = intake.post("generic", b'{"id": "a", "title": "b"}', {"Authorization": f"Bearer {TOKEN}",
                                                                       "Content-Type": "text/plain"})
    elif case == "too large":
        response = intake.post("generic", b" " * (2 * 1024 * 1024), {"Authorization": f"Bearer {TOKEN}"})
    else:
        response = intake.post("nope", body, {})
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and OZ_SECRET not in response.text and TOKEN not in response.text
    time.sleep(0.5)
    assert set(home.glob("incidents/*/runs/*/record.json")) == before  # nothing started
    refused = [json.loads(line) for line in (home / "intake" / "audit.jsonl").read_text().splitlines()] \
        if case != "unknown source" else []
    if refused:
        assert refused[-1]["status"] == status and OZ_SECRET not in json.dumps(refused[-1])


def test_an_alert_accepted_right_before_a_kill_9_starts_after_the_restart(prefect_api, chain, tmp_path) -> None:
    chain = fresh_protocol(chain)
    env = {**os.environ, "BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"), "OZ_SECRET": OZ_SECRET,
           "TENDERLY_KEY": TENDERLY_KEY, "GENERIC_TOKEN": TOKEN}
    served = Serve(tmp_path, chain, env).start(failpoint="intake.before_start")
    home = served.home
    body = json.dumps({"id": f"kill-{time.monotonic_ns()}", "title": "kill test"}).encode()
    answer = served.post("generic", body, {"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 202
    incident = answer.json()["incidents"][0]
    assert served.process.wait(timeout=30) == -signal.SIGKILL  # died after answering, before starting the run
    assert runs(home, incident) == []
    served.start()
    try:
        wait_for(lambda: [r for r in runs(home, incident) if r["status"] == "completed"], what="the run after restart")
        assert len(runs(home, incident)) == 1
    finally:
        served.stop()


@pytest.mark.serial  # a throughput bound (10,000 requests in under 90 s): it needs both cores
def test_an_alert_storm_ends_in_exactly_five_incidents_and_loses_nothing(intake, tmp_path) -> None:
    home = intake.home
    out = tmp_path / "storm.json"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "tests.helpers.alert_storm", f"{intake.base}/alerts/generic", TOKEN, "10000", "60",
                    str(out)], cwd=REPO, check=True, timeout=240)
    wall = time.monotonic() - started
    storm = json.loads(out.read_text())
    results = storm["results"]
    by_kind: dict[str, list[dict]] = {}
    for r in results:
        by_kind.setdefault(r["kind"], []).append(r)
    assert len(results) == 10_000 and not [r for r in results if r["status"] == 0]
    assert all(r["status"] == 400 for r in by_kind["malformed"]) and all(r["status"] == 401 for r in by_kind["forged"])
    good = [r for r in results if r["kind"] in ("valid", "retry", "duplicate")]
    assert all(r["status"] == 202 for r in good)
    incidents = {i for r in good for i in r["answer"]["incidents"]}
    assert len(incidents) == 5
    wait_for(lambda: all(len(runs(home, i)) == 1 and runs(home, i)[0]["status"] == "completed" for i in incidents),
             timeout=120, what="five runs")
    fresh = [r for r in good if not r["answer"].get("replay")]
    logged = [json.loads(line) for line in (home / "intake" / "log.jsonl").read_text().splitlines()]
    mine = [e for e in logged if e["type"] == "accepted" and set(e["answer"]["incidents"]) <= incidents]
    assert len(mine) == len(fresh)  # every accepted answer is on disk: none accepted and lost
    latencies = sorted(r["ms"] for r in good)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(f"storm: 10000 requests in {storm['seconds']:.1f}s (wall {wall:.1f}s); intake p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert storm["seconds"] < 90


def test_validate_checks_triggers_against_the_inventory_and_alert_fields(tmp_path) -> None:
    from tests.conftest import cli

    inventory = tmp_path / "inv.yaml"
    inventory.write_text("""apiVersion: breakglass/v1
kind: Inventory
name: t
chains: {ethereum: {chain_id: 1, block_time: 12s, rpc: [{env: X_RPC}]}}
contracts: {vault: {chain: ethereum, address: "0x1111111111111111111111111111111111111111"}}
alert_sources: {oz: {kind: oz-monitor, secret_env: OZ_SECRET}}
""")
    (tmp_path / "p.yaml").write_text("""apiVersion: breakglass/v1
kind: Playbook
name: p
description: t
severity: high
inputs: {tx: {type: string}}
triggers:
  - source: ozz
    match: {address_in: [vaultt]}
    inputs: {tx: "{{ alert.tx }}", nope: "{{ inputs.tx }}"}
steps:
  - {id: look, kind: snapshot, with: {chain: ethereum, paused: [vault]}}
""")
    result = cli("validate", str(tmp_path / "p.yaml"), "--inventory", str(inventory))
    assert result.returncode == 1
    for expected in ("p.yaml:8:", "unknown alert source 'ozz'", "Did you mean 'oz'?", "unknown contract 'vaultt'",
                     "alerts have no field 'tx'. Alert fields: source, id", "undefined input 'nope'",
                     "a trigger's inputs may use only alert.* (not inputs)"):
        assert expected in result.stderr, (expected, result.stderr)


def test_forta_scanner_jwts_and_alertmanager_basic_auth(intake) -> None:
    import base64

    from eth_account import Account

    from tests.integrations.test_alert_adapters import _forta_jwt

    scanner, stranger = Account.from_key(dev_key("relayer")), Account.from_key(dev_key("attacker"))
    assert scanner.address == "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
    body = (DATA / "forta_local_mode_webhook_batch.json").read_bytes()
    claims = {"sub": scanner.address, "iat": int(time.time()), "exp": int(time.time()) + 30, "bot-id": "0x1738"}
    good = intake.post("forta", body, {"Authorization": "Bearer " + _forta_jwt(scanner, claims), "Content-Type": "application/json"})
    assert good.status_code == 202 and good.json()["accepted"] == 1, good.text
    forged = intake.post("forta", body, {"Authorization": "Bearer " + _forta_jwt(stranger, {**claims, "sub": stranger.address}),
                                         "Content-Type": "application/json"})
    assert forged.status_code == 401 and "allowlist" in forged.json()["error"]

    am = (DATA / "alertmanager_webhook_v4.json").read_bytes()
    basic = "Basic " + base64.b64encode(b"alertmanager:am-test-password").decode()
    assert intake.post("am", am, {"Authorization": basic, "Content-Type": "application/json"}).status_code == 202
    wrong = "Basic " + base64.b64encode(b"alertmanager:nope").decode()
    assert intake.post("am", am, {"Authorization": wrong, "Content-Type": "application/json"}).status_code == 401


def signed_request(source: str, variant: int = 0) -> tuple[bytes, dict[str, str]]:
    """A real-format fixture, authenticated as that source sends it; ``variant`` re-sends it the way a retry would."""
    import base64
    import uuid
    from datetime import UTC, datetime

    from eth_account import Account

    from tests.integrations.test_alert_adapters import _forta_jwt

    json_type = {"Content-Type": "application/json"}
    if source == "oz":
        body = (DATA / "oz_monitor_raw_evm_match.json").read_bytes()
        return body, oz(body)
    if source == "tenderly":
        body = (DATA / "tenderly_alert_webhook.json").read_bytes()
        return body, tenderly(body)
    if source == "defender":
        parsed = json.loads((DATA / "defender_monitor_webhook_body.json").read_text())
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        signed = json.dumps({**parsed, "timestamp": stamp}, separators=(",", ":"), ensure_ascii=False).encode()
        mac = hmac.new(b"defender-test-secret", signed, hashlib.sha256).hexdigest()
        return json.dumps(parsed).encode(), {**json_type, "Defender-Timestamp": stamp, "Defender-Signature": mac}
    if source == "forta":
        scanner = Account.from_key(dev_key("relayer"))
        claims = {"sub": scanner.address, "iat": int(time.time()), "exp": int(time.time()) + 30, "jti": uuid.uuid4().hex}
        body = (DATA / "forta_local_mode_webhook_batch.json").read_bytes()
        return body, {**json_type, "Authorization": "Bearer " + _forta_jwt(scanner, claims)}
    if source == "am":
        parsed = json.loads((DATA / "alertmanager_webhook_v4.json").read_text())
        body = json.dumps(parsed, indent=variant or None).encode()  # Alertmanager re-sends the same alerts
        return body, {**json_type, "Authorization": "Basic " + base64.b64encode(b"alertmanager:am-test-password").decode()}
    body = json.dumps({"id": "generic-1", "title": "generic alert", "tx_hash": "0x" + "42" * 32}, indent=variant or None).encode()
    return body, {**json_type, "Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("source", ["oz", "defender", "forta", "tenderly", "am", "generic"])
def test_each_source_starts_its_playbook_once(intake, source) -> None:
    home = intake.home
    body, headers = signed_request(source)
    first = intake.post(source, body, headers)
    assert first.status_code == 202, first.text
    assert first.json()["matched"] == [f"on-{'oz' if source == 'oz' else source}"]
    incident = first.json()["incidents"][0]
    wait_for(lambda: [r for r in runs(home, incident) if r["status"] == "completed"], what=f"the {source} run")

    replay = intake.post(source, body, headers)
    assert replay.status_code == 202 and replay.json()["replay"] is True and replay.json()["incidents"] == [incident]
    time.sleep(1.1)  # a retry comes later, with a fresh signature (or, for static credentials, re-encoded)
    again_body, again_headers = signed_request(source, variant=2)
    again = intake.post(source, again_body, again_headers)
    assert again.status_code == 202, again.text
    assert "replay" not in again.json() and again.json()["matched"] == [] and again.json()["incidents"] == [incident]
    time.sleep(0.5)
    assert len(runs(home, incident)) == 1


def test_an_adapter_bug_is_a_400_with_an_audit_line_not_a_500(chain, tmp_path, monkeypatch) -> None:
    from breakglass.flows.service import intake as intake_module
    from breakglass.flows.spec.validate import load_inventory
    from breakglass.integrations.alerts.generic import Generic

    class Broken(Generic):  # authenticates as the generic source does, then trips on the body
        def parse(self, body):
            return body["no such key"]  # the kind of bug the fuzz tests hunt for

    inventory = load_inventory(live_inventory(tmp_path, chain, extra=sources()))
    monkeypatch.setitem(intake_module.ADAPTERS, "generic", Broken())
    started: list = []
    desk = intake_module.Intake(tmp_path / "home", inventory, {}, lambda *a: started.append(a),
                                {"GENERIC_TOKEN": TOKEN}.get)
    body = json.dumps({"id": "a-1", "title": "x"}).encode()
    status, answer = desk.accept("generic", body, {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    assert status == 400 and "generic adapter could not read this body (KeyError)" in answer["error"]
    refused = [json.loads(line) for line in (tmp_path / "home" / "intake" / "audit.jsonl").read_text().splitlines()]
    assert refused[-1]["event"] == "alert.refused" and refused[-1]["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert started == [] and b"a-1" not in (tmp_path / "home" / "intake" / "audit.jsonl").read_bytes()


def test_validate_checks_trigger_inputs_against_the_adapters_output(tmp_path) -> None:
    from tests.conftest import cli

    inventory = tmp_path / "inv.yaml"
    inventory.write_text("""apiVersion: breakglass/v1
kind: Inventory
name: t
chains: {ethereum: {chain_id: 1, block_time: 12s, rpc: [{env: X_RPC}]}}
contracts: {vault: {chain: ethereum, address: "0x1111111111111111111111111111111111111111"}}
alert_sources: {oz: {kind: oz-monitor, secret_env: OZ_SECRET}, gen: {kind: generic, token_env: T},
               fo: {kind: forta, scanners: ["0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"]}}
""")
    (tmp_path / "p.yaml").write_text("""apiVersion: breakglass/v1
kind: Playbook
name: p
description: t
severity: high
inputs: {a: {type: string}, b: {type: string}, c: {type: string}}
triggers:
  - source: gen
    inputs: {a: "{{ alert.addresses[0] }}", b: "{{ alert.raw.metadata.x }}", c: "{{ alert.raw.data.anything }}"}
  - source: oz
    match: {address_in: [vault]}
    inputs: {a: "{{ alert.addresses[0] }}", b: "{{ alert.addresses[1] }}", c: "{{ alert.raw.EVM.monitor.name }}"}
  - source: fo
    inputs: {a: "{{ alert.raw.metadata.attacker }}"}
steps:
  - {id: look, kind: snapshot, with: {chain: ethereum, paused: [vault]}}
""")
    result = cli("validate", str(tmp_path / "p.yaml"), "--inventory", str(inventory))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "p.yaml:" in line]
    assert len(errors) == 3, result.stderr  # the open-ended raw of forta and generic's data are not judged
    assert "p.yaml:9:" in errors[0] and "alert.addresses[0] fails on an alert that names fewer addresses" in errors[0]
    assert "generic alerts have no raw.metadata" in result.stderr and "address_in" in result.stderr
    assert "p.yaml:12:" in errors[2] and "alert.addresses[1]" in errors[2]
