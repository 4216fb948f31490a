"""Generic webhooks: JSON POSTs signed with HMAC-SHA256 over timestamp and body, carrying an
``Idempotency-Key`` so that the receiver can drop a re-send."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from breakglass.integrations.http import client as shared_client
from breakglass.integrations.notify.base import ChannelRules, Message, Permanent, Transient

RULES = ChannelRules(kind="webhook", needs=("url_env", "secret_env"))  # the URL is the address

SIGNATURE_HEADER = "X-Breakglass-Signature"
TIMESTAMP_HEADER = "X-Breakglass-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookTransport:
    kind = "webhook"

    def __init__(self, url: str, secret: str, timeout: float = 10) -> None:
        self._url, self._secret = url, secret
        self._http = shared_client()
        self._timeout = timeout

    def __repr__(self) -> str:
        return "WebhookTransport()"

    def send(self, to: str, message: Message) -> str:
        body = json.dumps({"idempotency_key": message.key, "subject": message.subject, "text": message.text,
                           **message.payload}, sort_keys=True).encode()
        stamp = str(int(time.time()))
        headers = {"content-type": "application/json", "Idempotency-Key": message.key, TIMESTAMP_HEADER: stamp,
                   SIGNATURE_HEADER: sign(self._secret, stamp, body)}
        try:
            response = self._http.post(self._url, content=body, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise Transient(f"webhook: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise Transient(f"webhook: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise Permanent(f"webhook: HTTP {response.status_code}")
        try:
            answer = response.json()
            return str(answer.get("id") or answer.get("delivery_id") or f"HTTP {response.status_code}")
        except ValueError:
            return f"HTTP {response.status_code}"

    def find(self, to: str, message: Message) -> str | None:
        return None  # re-sent with the same Idempotency-Key instead
