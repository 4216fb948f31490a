"""What every transport shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class Permanent(Exception):
    """This channel will not deliver this message (bad channel, no access, refused): use the next one."""


class Transient(Exception):
    """Delivery may work on a later attempt (rate limit, 5xx, connection reset)."""


@dataclass(frozen=True)
class Message:
    key: str  # idempotency key: the same for every attempt at this recipient
    subject: str
    text: str  # plain text, already rendered (values escaped for the channel where needed)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: dict[str, bytes] = field(default_factory=dict)  # file name -> content
    payload: dict[str, Any] = field(default_factory=dict)  # structured body for webhooks


@runtime_checkable
class Transport(Protocol):
    kind: str

    def send(self, to: str, message: Message) -> str:
        """Deliver and return the provider's id (Slack ts, SMTP queue id, webhook response id)."""

    def find(self, to: str, message: Message) -> str | None:
        """Look up an earlier delivery of this message by its key, where the provider allows it."""
