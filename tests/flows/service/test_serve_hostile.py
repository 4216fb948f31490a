"""A real `serve` process under hostile requests: deeply nested JSON (1k to 200k levels) and oversized
bodies on every endpoint, unauthenticated and authenticated. It must stay alive and answer 4xx to each."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import REPO, dev_key, fresh_protocol, wait_healthy
from tests.flows.service.test_serve import APP, SECRET, TEAM, USERS, click, free_port, signed, slack_inventory
from tests.helpers.slack_server import SlackServer

pytestmark = pytest.mark.slow

TOKEN, SERVE_TOKEN = "generic-hostile-token", "serve-hostile-token"
SOURCES = """alert_sources:
  generic: {kind: generic, token_env: GENERIC_TOKEN}
  oz: {kind: oz-monitor, secret_env: OZ_SECRET}
  defender: {kind: defender, secret_env: DEFENDER_SECRET}
  forta: {kind: forta, scanners: ["0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"]}
  tenderly: {kind: tenderly, secret_env: TENDERLY_KEY}
  am: {kind: alertmanager, username_env: AM_USER, password_env: AM_PASSWORD}
"""
DEPTHS = (1_000, 10_000, 70_000, 200_000)


@pytest.fixture(scope="module")
def hostile(prefect_api, chain, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    slack = SlackServer()
    books = tmp / "books"
    books.mkdir()
    inventory = slack_inventory(tmp, fresh_protocol(chain), slack, "http://127.0.0.1:9", extra=SOURCES)
    port = free_port()
    env = {**os.environ, "BG_TEST_RPC_URL": chain.url, "BG_TEST_GUARDIAN_KEY": dev_key("guardian"),
           "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": SECRET, "BREAKGLASS_SERVE_TOKEN": SERVE_TOKEN,
           "GENERIC_TOKEN": TOKEN, "OZ_SECRET": "oz-secret", "DEFENDER_SECRET": "defender-secret",
           "TENDERLY_KEY": "tenderly-key", "AM_USER": "am", "AM_PASSWORD": "am-password",
           "BREAKGLASS_HOME": str(tmp / "home")}
    process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "serve", "--inventory", str(inventory),
                                "--playbooks", str(books), "--port", str(port)], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, process)
    yield {"base": base, "process": process, "home": tmp / "home"}
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    slack.close()


def deep(levels: int, kind: str = "list") -> bytes:
    return b"[" * levels if kind == "list" else b'{"a":' * levels


def alive(served: dict) -> None:
    assert served["process"].poll() is None, served["process"].stderr.read()[-3000:]
    assert httpx.get(served["base"] + "/healthz", timeout=10).status_code == 200


def unauthenticated_requests(body: bytes) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """Every POST endpoint, with the body as an attacker without credentials would send it."""
    json_type = {"Content-Type": "application/json"}
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    form = ("payload=" + urlencode({"": body.decode()})[1:]).encode()
    return {
        "generic": ("/alerts/generic", body, json_type),
        "oz": ("/alerts/oz", body, {**json_type, "X-Timestamp": str(int(time.time() * 1000)), "X-Signature": "00"}),
        # Defender's signature is over the parsed body: a fresh timestamp gets an attacker as far as the decoder
        "defender": ("/alerts/defender", body, {**json_type, "Defender-Timestamp": stamp, "Defender-Signature": "00"}),
        "forta": ("/alerts/forta", body, {**json_type, "Authorization": "Bearer a.b.c"}),
        "tenderly": ("/alerts/tenderly", body, json_type),
        "am": ("/alerts/am", body, json_type),
        "slack form": ("/slack/interactivity", form, {"Content-Type": "application/x-www-form-urlencoded",
                                                      "X-Slack-Request-Timestamp": str(int(time.time())),
                                                      "X-Slack-Signature": "v0=" + "0" * 64}),
        "slack json": ("/slack/interactivity", body, json_type),
        "runs": ("/runs", body, json_type),
        "runs bad token": ("/runs", body, {**json_type, "Authorization": "Bearer nope"}),
    }


@pytest.mark.parametrize("kind", ["list", "object"])
def test_deeply_nested_json_on_every_endpoint_unauthenticated_gets_a_4xx_and_serve_lives(hostile, kind) -> None:
    for levels in DEPTHS:
        for case, (path, body, headers) in unauthenticated_requests(deep(levels, kind)).items():
            response = httpx.post(hostile["base"] + path, content=body, headers=headers, timeout=60)
            assert 400 <= response.status_code < 500, (case, levels, response.status_code, response.text[:200])
            assert "Traceback" not in response.text
        alive(hostile)


def test_deeply_nested_json_with_valid_credentials_is_a_400_and_serve_lives(hostile) -> None:
    base = hostile["base"]
    for levels in DEPTHS:
        body = deep(levels)
        generic = httpx.post(base + "/alerts/generic", content=body, timeout=60,
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        assert generic.status_code == 400 and "nested deeper than 32" in generic.json()["error"], generic.text
        stamp = str(int(time.time() * 1000))
        mac = hmac.new(b"oz-secret", body + stamp.encode(), hashlib.sha256).hexdigest()
        oz = httpx.post(base + "/alerts/oz", content=body, timeout=60,
                        headers={"Content-Type": "application/json", "X-Timestamp": stamp, "X-Signature": mac})
        assert oz.status_code == 400 and "nested deeper" in oz.json()["error"], oz.text
        runs = httpx.post(base + "/runs", content=body, timeout=60,
                          headers={"Content-Type": "application/json", "Authorization": f"Bearer {SERVE_TOKEN}"})
        assert runs.status_code == 400, runs.text
        form, headers = signed(body.decode())  # a signed click whose payload is the deep JSON
        slack = httpx.post(base + "/slack/interactivity", content=form, headers=headers, timeout=60)
        assert slack.status_code == 400, slack.text
        payload = click(USERS["bob"], body.decode()[: 1000])  # and one whose button value is
        form, headers = signed(payload)
        value = httpx.post(base + "/slack/interactivity", content=form, headers=headers, timeout=60)
        assert value.status_code == 400 and "malformed" in value.json()["error"], value.text
        alive(hostile)
    assert APP and TEAM  # the clicks above come from the configured app: refused for their content only


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_bodies_are_refused_before_they_are_read(hostile, chunked) -> None:
    big = b"[" + b"0," * (4 * 1024 * 1024) + b"0]"  # 8 MiB

    def stream():
        for n in range(0, len(big), 65536):
            yield big[n:n + 65536]

    for case, (path, _, headers) in unauthenticated_requests(b"[]").items():
        content = stream() if chunked else big
        try:
            response = httpx.post(hostile["base"] + path, content=content, headers=headers, timeout=60)
        except httpx.HTTPError as exc:  # the server may close the connection once it has refused
            pytest.fail(f"{case}: {exc!r}")
        assert response.status_code in (401, 413, 415), (case, response.status_code, response.text[:200])
        if "runs" not in case and "json" not in case:
            assert response.status_code == 413, (case, response.status_code)
    alive(hostile)


def test_unauthenticated_refusals_are_counted_not_logged_one_by_one(hostile) -> None:
    log = hostile["home"] / "intake" / "audit.jsonl"
    before = len(log.read_text().splitlines()) if log.exists() else 0
    for n in range(200):
        response = httpx.post(hostile["base"] + "/alerts/generic", content=json.dumps({"id": str(n)}).encode(),
                              headers={"Content-Type": "application/json", "Authorization": "Bearer wrong"}, timeout=10)
        assert response.status_code == 401
    lines = [json.loads(line) for line in log.read_text().splitlines()][before:]
    assert len(lines) <= 2, lines  # at most the first of a new window, and the summary of the one before
    alive(hostile)


def test_the_recursion_limit_is_pinned_after_every_import() -> None:
    code = """
import sys, threading, json
from breakglass.flows.service import httpguard, serve
import py_ecc, web3, eth_account  # py_ecc sets 100000 at import
assert sys.getrecursionlimit() == 100000, sys.getrecursionlimit()
httpguard.pin_recursion_limit()
assert sys.getrecursionlimit() == httpguard.RECURSION_LIMIT
caught = []
def decode():
    try:
        json.loads(b"[" * 200000)
    except RecursionError:
        caught.append("RecursionError")
thread = threading.Thread(target=decode)
thread.start()
thread.join()
print(caught)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]  # -11 would be the SIGSEGV
    assert result.stdout.strip() == "['RecursionError']"
