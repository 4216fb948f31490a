"""Telegram Bot API ``sendMessage`` (SEAL 911 and many partners work in Telegram). The bot token
sits in the URL path, so no URL is ever put into a message or an error."""

from __future__ import annotations

import httpx

from breakglass.integrations.http import client as shared_client
from breakglass.integrations.notify.base import ChannelRules, Message, Permanent, Transient

RULES = ChannelRules(kind="telegram", needs=("token_env",), needs_to=True)


class TelegramTransport:
    kind = "telegram"

    def __init__(self, token: str, base_url: str = "https://api.telegram.org", timeout: float = 10) -> None:
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        self._http = shared_client()
        self._timeout = timeout

    def __repr__(self) -> str:
        return "TelegramTransport()"

    def send(self, to: str, message: Message) -> str:
        try:
            response = self._http.post(self._url, json={"chat_id": to, "text": message.text, "disable_web_page_preview": True},
                                       timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise Transient(f"telegram: {type(exc).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 429 or response.status_code >= 500:
            raise Transient(f"telegram: HTTP {response.status_code}")
        if not answer.get("ok"):
            raise Permanent(f"telegram: {answer.get('description', f'HTTP {response.status_code}')}")
        return str(answer["result"]["message_id"])

    def find(self, to: str, message: Message) -> str | None:
        return None
