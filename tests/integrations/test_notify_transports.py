"""Every transport against a real server on loopback: what arrived is what is asserted."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from breakglass.integrations.notify.base import Message, Permanent, Transient
from breakglass.integrations.notify.email import EmailTransport
from breakglass.integrations.notify.outbox import OutboxTransport
from breakglass.integrations.notify.slack import SlackTransport
from breakglass.integrations.notify.webhook import WebhookTransport
from tests.helpers.jsonhttp import JsonServer
from tests.helpers.slack_server import SlackServer

MESSAGE = Message(key="INC-1/pb/abc/notify/exchange-a", subject="Freeze\r\nBcc: evil@example.org", text="hello <!channel> & co")


@pytest.fixture
def slack():
    server = SlackServer()
    yield server
    server.close()


class Capture:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued as ABC123"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp():
    capture = Capture()
    controller = Controller(capture, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, capture
    controller.stop()


def test_slack_post_carries_the_key_in_metadata_and_escapes_text(slack) -> None:
    transport = SlackTransport(slack.token, slack.base_url)
    ts = transport.send("C0EXA", MESSAGE)
    stored = slack.messages["C0EXA"][0]
    assert stored["ts"] == ts and slack.keys("C0EXA") == [MESSAGE.key]
    assert "<!channel>" not in stored["text"] and "&lt;!channel&gt; &amp; co" in stored["text"]
    assert transport.find("C0EXA", MESSAGE) == ts
    assert transport.find("C0EXA", Message(key="other", subject="", text="")) is None


def test_slack_429_is_honoured_through_retry_after(slack) -> None:
    slack.script["C0EXA"] = ["429", "429"]
    started = time.monotonic()
    SlackTransport(slack.token, slack.base_url).send("C0EXA", MESSAGE)
    assert time.monotonic() - started >= 2.0
    assert len(slack.messages["C0EXA"]) == 1


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth"])
def test_slack_permanent_errors(slack, error) -> None:
    slack.script["C0EXA"] = [f"error:{error}"]
    with pytest.raises(Permanent, match=error):
        SlackTransport(slack.token, slack.base_url).send("C0EXA", MESSAGE)


def test_slack_500_is_transient_and_never_reposted_by_the_sdk(slack) -> None:
    slack.script["C0EXA"] = ["land-then-500"]
    transport = SlackTransport(slack.token, slack.base_url)
    with pytest.raises(Transient):
        transport.send("C0EXA", MESSAGE)
    assert len(slack.messages["C0EXA"]) == 1  # exactly the one that landed
    assert transport.find("C0EXA", MESSAGE) is not None  # and it can be reconciled


def test_email_arrives_with_a_stable_message_id_and_safe_headers(smtp) -> None:
    controller, capture = smtp
    transport = EmailTransport(controller.hostname, controller.port, "security@example.org", starttls="auto")
    assert transport.send("a@exchange.example, b@exchange.example", MESSAGE) == "ABC123"
    assert transport.send("a@exchange.example", MESSAGE) == "ABC123"
    first, second = capture.envelopes
    assert first.rcpt_tos == ["a@exchange.example", "b@exchange.example"]
    body = first.content.decode()
    header_lines = body.replace("\r\n", "\n").split("\n\n", 1)[0].splitlines()
    assert not any(line.startswith("Bcc:") for line in header_lines)  # no header injection
    assert "Subject: Freeze Bcc: evil@example.org" in header_lines
    ids = [next(line for line in e.content.decode().splitlines() if line.startswith("Message-ID:")) for e in (first, second)]
    assert ids[0] == ids[1]  # a re-send carries the same Message-ID, so receivers can drop it
    with pytest.raises(Permanent, match="invalid address"):
        transport.send("not-an-address", MESSAGE)


def test_email_to_a_closed_port_is_transient() -> None:
    with pytest.raises(Transient):
        EmailTransport("127.0.0.1", 1, "security@example.org").send("a@exchange.example", MESSAGE)


def test_webhook_is_signed_and_carries_the_idempotency_key() -> None:
    received = []

    def answer(body):
        received.append(body)
        return (500, None) if len(received) == 1 else (200, {"id": "delivery-7"})

    server = JsonServer(answer)
    captured_headers = []
    original = server.server.RequestHandlerClass.do_POST

    def do_post(handler):
        captured_headers.append(dict(handler.headers))
        original(handler)

    server.server.RequestHandlerClass.do_POST = do_post
    try:
        transport = WebhookTransport(server.url, "whsec-test-secret")
        with pytest.raises(Transient):
            transport.send("", MESSAGE)
        assert transport.send("", MESSAGE) == "delivery-7"
    finally:
        server.close()
    headers = captured_headers[-1]
    assert headers["Idempotency-Key"] == MESSAGE.key
    import json

    body = json.dumps(received[-1], sort_keys=True).encode()
    expected = "sha256=" + hmac.new(b"whsec-test-secret", headers["X-Breakglass-Timestamp"].encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    assert headers["X-Breakglass-Signature"] == expected


def test_outbox_records_instead_of_sending(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path)
    name = outbox.send("exchange-a", MESSAGE)
    assert (tmp_path / name).exists() and outbox.find("exchange-a", MESSAGE) == name


def test_slack_attachments_are_uploaded_into_the_message_thread(slack) -> None:
    message = Message(key="k-files", subject="s", text="watch list v1", attachments={"wl.csv": b"a,b\n", "wl.json": b"{}"})
    ts = SlackTransport(slack.token, slack.base_url).send("C0WATCH", message)
    shared = slack.files["C0WATCH"]
    assert sorted((f["title"], f["content"], f["thread_ts"]) for f in shared) == [("wl.csv", b"a,b\n", ts), ("wl.json", b"{}", ts)]


def test_telegram_send_message_against_a_local_bot_api() -> None:
    from breakglass.integrations.notify.telegram import TelegramTransport

    seen = []

    def answer(body):
        seen.append(body)
        if body["chat_id"] == "-100404":
            return 400, {"ok": False, "description": "Bad Request: chat not found"}
        return 200, {"ok": True, "result": {"message_id": 77}}

    server = JsonServer(answer)
    try:
        transport = TelegramTransport("123:secret-bot-token", server.url)
        assert transport.send("-1001", MESSAGE) == "77"
        with pytest.raises(Permanent, match="chat not found") as info:
            transport.send("-100404", MESSAGE)
        assert "secret-bot-token" not in str(info.value) and "secret-bot-token" not in repr(transport)
    finally:
        server.close()
    assert seen[0]["chat_id"] == "-1001" and seen[0]["text"] == MESSAGE.text


def test_every_channel_kind_an_inventory_may_name_has_a_transport() -> None:
    from typing import get_args

    from breakglass.flows.effects.delivery import TRANSPORTS
    from breakglass.flows.language.inventory import Channel

    assert set(get_args(Channel.model_fields["kind"].annotation)) == set(TRANSPORTS)
