"""Slack through slack-sdk's WebClient: Block Kit with a text fallback, message metadata carrying
the idempotency key, 429s honoured through ``Retry-After``.

slack-sdk's default ``ConnectionErrorRetryHandler`` re-posts after a connection reset even when
the first post may have landed, so it is not installed: a failed post is reconciled through
``conversations.history`` and the metadata key before anything is sent again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breakglass.integrations.notify.base import ChannelRules, Message, Permanent, Transient

if TYPE_CHECKING:
    from slack_sdk.errors import SlackApiError

# Slack allows about one post per second per channel, and a war room reads messages in order.
RULES = ChannelRules(kind="slack", needs=("token_env",), needs_to=True, ordered=True)

PERMANENT = {"channel_not_found", "not_in_channel", "invalid_auth", "account_inactive", "token_revoked", "is_archived",
             "msg_too_long", "msg_blocks_too_long", "invalid_blocks", "no_permission", "missing_scope", "not_authed"}
EVENT_TYPE = "breakglass_notification"


def escape(text: str) -> str:
    """Slack mrkdwn control characters, so alert-supplied text can never become a mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackTransport:
    kind = "slack"

    def __init__(self, token: str, base_url: str | None = None, timeout: int = 10, max_rate_limit_retries: int = 5) -> None:
        from slack_sdk import WebClient  # here, not at import: the channel rules load without slack-sdk
        from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

        options: dict[str, Any] = {"token": token, "timeout": timeout,
                                   "retry_handlers": [RateLimitErrorRetryHandler(max_retry_count=max_rate_limit_retries)]}
        if base_url:
            options["base_url"] = base_url.rstrip("/") + "/"
        self.client = WebClient(**options)

    def __repr__(self) -> str:
        return "SlackTransport()"

    def send(self, to: str, message: Message) -> str:
        from slack_sdk.errors import SlackApiError

        text = escape(message.text)  # everything, template wording included: no mention or link can be injected
        blocks = message.blocks or [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]
        try:
            answer = self.client.chat_postMessage(
                channel=to, text=text, blocks=blocks,
                metadata={"event_type": EVENT_TYPE, "event_payload": {"key": message.key}}, unfurl_links=False,
            )
        except SlackApiError as exc:
            raise _classify(exc) from None
        except Exception as exc:  # noqa: BLE001 - connection resets and timeouts: the post may have landed
            raise Transient(f"slack: {type(exc).__name__}") from None
        ts = str(answer["ts"])
        if message.attachments:
            self.upload(to, ts, message)
        return ts

    def upload(self, channel: str, thread_ts: str, message: Message) -> None:
        """The message's files (a watch list's CSV and JSON), in the thread of the message itself."""
        from slack_sdk.errors import SlackApiError

        try:
            self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, file_uploads=[
                {"content": content, "filename": name, "title": name} for name, content in message.attachments.items()])
        except SlackApiError as exc:
            raise _classify(exc) from None
        except Exception as exc:  # noqa: BLE001
            raise Transient(f"slack upload: {type(exc).__name__}") from None

    def find(self, to: str, message: Message) -> str | None:
        from slack_sdk.errors import SlackApiError

        try:
            answer = self.client.conversations_history(channel=to, include_all_metadata=True, limit=200)
        except SlackApiError as exc:
            raise _classify(exc) from None
        except Exception as exc:  # noqa: BLE001
            raise Transient(f"slack history: {type(exc).__name__}") from None
        messages: list[dict[str, Any]] = answer.get("messages", [])
        for item in messages:
            meta = item.get("metadata") or {}
            if meta.get("event_type") == EVENT_TYPE and (meta.get("event_payload") or {}).get("key") == message.key:
                return str(item["ts"])
        return None

    def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        from slack_sdk.errors import SlackApiError

        try:
            self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            raise _classify(exc) from None


def _classify(exc: SlackApiError) -> Exception:
    error = str(exc.response.get("error", "")) if exc.response is not None else ""
    status = exc.response.status_code if exc.response is not None else 0
    if error in PERMANENT:
        return Permanent(f"slack: {error}")
    return Transient(f"slack: {error or f'HTTP {status}'}")
