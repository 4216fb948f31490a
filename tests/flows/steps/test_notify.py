"""The notify step against real servers on loopback: Slack Web API, SMTP (aiosmtpd), webhooks."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import REPO, cli
from tests.helpers.jsonhttp import JsonServer
from tests.helpers.slack_server import SlackServer
from tests.integrations.test_notify_transports import Capture, free_port

N = 20


class Servers:
    def __init__(self) -> None:
        self.slack = SlackServer()
        self.capture = Capture()
        self.smtp = Controller(self.capture, hostname="127.0.0.1", port=free_port())
        self.smtp.start()
        self.hooks: list[tuple[str, dict]] = []
        self.webhook = JsonServer(self._hook)
        original = self.webhook.server.RequestHandlerClass.do_POST
        outer = self

        def do_post(handler):
            outer._last_key = handler.headers.get("Idempotency-Key")
            original(handler)

        self.webhook.server.RequestHandlerClass.do_POST = do_post

    def _hook(self, body: dict) -> tuple[int, dict]:
        self.hooks.append((body["idempotency_key"], body))
        return 200, {"id": f"hook-{len(self.hooks)}"}

    def keys_by_recipient(self) -> dict[str, list[str]]:
        """Every idempotency key that arrived anywhere, by recipient (keys end with the recipient name)."""
        out: dict[str, list[str]] = defaultdict(list)
        for channel in self.slack.messages:
            for key in self.slack.keys(channel):
                out[key.rsplit("/", 1)[1]].append(key)
        for envelope in self.capture.envelopes:
            key = str(email.message_from_bytes(envelope.content, policy=email.policy.default)["X-Breakglass-Idempotency-Key"])
            out[key.rsplit("/", 1)[1]].append(key)
        for key, _ in self.hooks:
            out[key.rsplit("/", 1)[1]].append(key)
        return out

    def close(self) -> None:
        self.slack.close()
        self.smtp.stop()
        self.webhook.close()


@pytest.fixture
def servers():
    s = Servers()
    yield s
    s.close()


def _files(tmp: Path, servers: Servers, contacts: str) -> tuple[Path, Path, dict[str, str]]:
    inventory = tmp / "inventory.yaml"
    inventory.write_text(f"""apiVersion: breakglass/v1
kind: Inventory
name: notify-test
reply_contact: "desk@example.org"
channels:
  slack: {{kind: slack, token_env: BG_TEST_SLACK_TOKEN, base_url: "{servers.slack.base_url}", per_channel_interval: 0.05}}
  smtp: {{kind: email, host: 127.0.0.1, port: {servers.smtp.port}, sender: security@example.org}}
  hook: {{kind: webhook, url_env: BG_TEST_HOOK_URL, secret_env: BG_TEST_HOOK_SECRET}}
contacts:
{contacts}
groups:
  everyone: [{", ".join(f"r{i:02d}" for i in range(N))}]
templates:
  war-room-alert: {{approved: true}}
""")
    shutil.copytree(REPO / "playbooks" / "templates", tmp / "templates", dirs_exist_ok=True)
    playbook = tmp / "tell.yaml"
    playbook.write_text("""apiVersion: breakglass/v1
kind: Playbook
name: tell-everyone
description: t
severity: high
inputs:
  note: {type: string, default: "all good"}
steps:
  - id: tell
    kind: notify
    timeout: 2m
    with:
      template: war-room-alert
      to: [everyone]
      data: {summary: "{{ inputs.note }}"}
""")
    env = {"BG_TEST_SLACK_TOKEN": servers.slack.token, "BG_TEST_HOOK_URL": servers.webhook.url, "BG_TEST_HOOK_SECRET": "whsec-x"}
    return playbook, inventory, env


def _contacts(kinds: list[str]) -> str:
    lines = []
    for i, kind in enumerate(kinds):
        channel = {"slack": f'{{via: slack, to: "C{i:02d}"}}', "email": f"{{via: smtp, to: [r{i:02d}@example.org]}}",
                   "webhook": "{via: hook}"}[kind]
        lines.append(f"  r{i:02d}: {{kind: internal, channels: [{channel}], last_verified: 2026-11-01}}")
    return "\n".join(lines)


MIXED = ["slack", "email", "webhook", "slack", "email"] * 4


def test_kill_9_mid_fan_out_then_resume_reaches_everyone_with_one_key_each(prefect_api, servers, home, tmp_path) -> None:
    playbook, inventory, env = _files(tmp_path, servers, _contacts(MIXED))
    incident = f"INC-fanout-{time.monotonic_ns()}"
    killed = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--incident", incident,
                 env={**env, "BREAKGLASS_TEST_CRASH_AT": "notify.before_record@7"})
    assert killed.returncode == -9
    partial = servers.keys_by_recipient()
    assert 0 < len(partial) < N
    result = cli("resume", incident, "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {r["recipient"]: r for r in json.loads(result.stdout)["steps"][0]["outputs"]["deliveries"]}
    arrived = servers.keys_by_recipient()
    assert set(arrived) == {f"r{i:02d}" for i in range(N)} == set(rows)
    for recipient, keys in arrived.items():
        assert len(set(keys)) == 1, f"{recipient} got messages with different keys: {keys}"
        assert keys[0] == rows[recipient]["key"]
        if len(keys) > 1:  # a same-key duplicate only where the outcome was unknown and it was re-sent
            assert rows[recipient]["status"] == "resent-unknown", rows[recipient]
    slack_dupes = [r for r in rows.values() if r["channel"] == "slack" and len(arrived[r["recipient"]]) > 1]
    assert not slack_dupes  # Slack is reconciled through message metadata, never re-posted
    assert {r["status"] for r in rows.values()} <= {"delivered", "delivered-earlier", "reconciled", "resent-unknown"}
    run_files = [p.read_text(errors="replace") for p in (home / "incidents" / incident).rglob("*") if p.is_file()]
    for text in [killed.stdout, killed.stderr, result.stdout, result.stderr, *run_files]:
        assert servers.slack.token not in text and "whsec-x" not in text


def test_slack_429s_delay_but_every_message_arrives_once_in_order(prefect_api, servers, tmp_path) -> None:
    contacts = "\n".join(f'  r{i:02d}: {{kind: internal, channels: [{{via: slack, to: "CSHARED"}}], last_verified: 2026-11-01}}'
                         for i in range(N))
    playbook, inventory, env = _files(tmp_path, servers, contacts)
    inventory.write_text(inventory.read_text().replace("everyone: [" + ", ".join(f"r{i:02d}" for i in range(N)) + "]",
                                                       "everyone: [r00, r01, r02]"))
    servers.slack.script["CSHARED"] = ["429", "429"]
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    keys = servers.slack.keys("CSHARED")
    assert len(keys) == len(set(keys)) == 3
    assert [k.rsplit("/", 1)[1] for k in keys] == ["r00", "r01", "r02"]  # in order
    posts = [t for m, c, t in servers.slack.calls if m == "chat.postMessage"]
    assert len(posts) == 5  # two answered 429, then three that landed
    assert posts[2] - posts[0] >= 1.9  # Retry-After: 1 was honoured twice


def test_permanent_slack_error_falls_back_to_email_and_the_table_says_so(prefect_api, servers, tmp_path) -> None:
    contacts = ('  r00: {kind: internal, channels: [{via: slack, to: "CGONE"}, {via: smtp, to: [r00@example.org]}], '
                "last_verified: 2026-11-01}")
    playbook, inventory, env = _files(tmp_path, servers, contacts)
    inventory.write_text(inventory.read_text().replace("everyone: [" + ", ".join(f"r{i:02d}" for i in range(N)) + "]", "everyone: [r00]"))
    servers.slack.script["CGONE"] = ["error:channel_not_found"]
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json",
                 "--input", "note=<!channel> {{ 7 * 7 }}", env=env)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["steps"][0]["outputs"]["deliveries"][0]
    assert row["channel"] == "smtp" and row["status"] == "delivered"
    assert row["errors"] == ["slack: slack: channel_not_found"]
    body = servers.capture.envelopes[0].content.decode()
    assert "<!channel> {{ 7 * 7 }}" in body  # data stays data: never rendered as a template


def test_nobody_reachable_fails_the_step_and_names_who(prefect_api, servers, tmp_path) -> None:
    contacts = '  r00: {kind: internal, channels: [{via: slack, to: "CGONE"}], last_verified: 2026-11-01}'
    playbook, inventory, env = _files(tmp_path, servers, contacts)
    inventory.write_text(inventory.read_text().replace("everyone: [" + ", ".join(f"r{i:02d}" for i in range(N)) + "]", "everyone: [r00]"))
    servers.slack.script["CGONE"] = ["error:not_in_channel"]
    result = cli("run", str(playbook), "--inventory", str(inventory), "--yes", "--json", env=env)
    assert result.returncode == 2
    step = json.loads(result.stdout)["steps"][0]
    assert step["error"].startswith("nothing reached r00 (slack: slack: not_in_channel)")
    assert step["outputs"]["failed_recipients"] == ["r00"]


def _validate(tmp: Path, template_body: str | None, to: str, approved: bool) -> str:
    from breakglass.flows.errors import SpecError
    from breakglass.flows.spec.validate import load_playbook

    (tmp / "templates").mkdir(exist_ok=True)
    if template_body is not None:
        (tmp / "templates" / "custom.md.j2").write_text(template_body)
    inventory = tmp / "inv.yaml"
    inventory.write_text(f"""apiVersion: breakglass/v1
kind: Inventory
name: v
channels: {{outbox: {{kind: outbox}}}}
contacts:
  exchange-a: {{kind: exchange, channels: [{{via: outbox}}], last_verified: 2026-11-01}}
  team: {{kind: internal, channels: [{{via: outbox}}], last_verified: 2026-11-01}}
templates:
  custom: {{approved: {str(approved).lower()}}}
""")
    playbook = tmp / "p.yaml"
    playbook.write_text(f"""apiVersion: breakglass/v1
kind: Playbook
name: p
description: d
severity: high
steps:
  - {{id: tell, kind: notify, with: {{template: custom, to: [{to}], data: {{x: 1}}}}}}
""")
    try:
        load_playbook(playbook, inventory)
    except SpecError as exc:
        return str(exc)
    return ""


def test_unapproved_templates_never_reach_external_counterparties(tmp_path) -> None:
    body = "Subject: hi {{ incident }}\n{{ data.x }}\n"
    assert "template 'custom' is not approved for external counterparties (exchange-a)" in _validate(tmp_path, body, "exchange-a", False)
    assert _validate(tmp_path, body, "team", False) == ""  # internal people may get draft wording
    assert _validate(tmp_path, body, "exchange-a", True) == ""


def test_template_mistakes_are_caught_at_validate(tmp_path) -> None:
    assert "uses data.amount, which this step's with.data does not give" in _validate(
        tmp_path, "Subject: x\n{{ data.amount }}\n", "team", True)
    assert "undefined variable 'incidnet'" in _validate(tmp_path, "Subject: x\n{{ incidnet }}\n", "team", True)
    assert "must start with a 'Subject: ...' line" in _validate(tmp_path, "hello\n", "team", True)



def test_check_warns_about_contacts_not_verified_for_90_days() -> None:
    from datetime import date

    from breakglass.flows.language.inventory import Inventory
    from breakglass.flows.readiness import check

    inventory = Inventory.model_validate({
        "apiVersion": "breakglass/v1", "kind": "Inventory", "name": "c", "channels": {"smtp": {"kind": "email", "host": "h", "sender": "a@b.example"}},
        "contacts": {"old": {"kind": "exchange", "channels": [{"via": "smtp", "to": ["x@y.example"]}], "last_verified": "2026-07-01"},
                     "fresh": {"kind": "exchange", "channels": [{"via": "smtp", "to": ["x@y.example"]}], "last_verified": "2026-11-01"}}})
    findings = check.run(inventory, today=date(2026, 11, 25))
    assert [(f.subject, f.status) for f in findings] == [("contact old", "warn")]
    assert "verified 147 days ago" in findings[0].detail
