"""What every transport shares."""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class ChannelRules:
    """What one channel kind asks of an inventory and of the sender; each transport module declares its own
    ``RULES``, and ``integrations.notify.CHANNELS`` gathers them (the inventory's ``kind:`` values, its checks,
    and how ``flows.effects.delivery`` schedules messages all read them)."""

    kind: str
    needs: tuple[str, ...] = ()  # the ``channels:`` entry's fields that must be given
    needs_to: bool = False  # a contact reaching someone through it must say ``to``
    valid_to: Callable[[str], bool] | None = None  # every ``to`` address is checked at validate ...
    to_is: str = ""  # ... and refused as "'<to>' is not <to_is>"
    ordered: bool = False  # one message at a time per address, in order, paced by ``per_channel_interval``


@runtime_checkable
class Transport(Protocol):
    kind: str

    def send(self, to: str, message: Message) -> str:
        """Deliver and return the provider's id (Slack ts, SMTP queue id, webhook response id)."""

    def find(self, to: str, message: Message) -> str | None:
        """Look up an earlier delivery of this message by its key, where the provider allows it."""
