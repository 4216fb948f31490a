"""Message transports: Slack, email (SMTP), signed webhooks, Telegram, and the drill outbox.

Every transport sends one ``Message`` to one address and returns the provider's id, or raises
``Permanent`` (try the recipient's next channel) or ``Transient`` (worth retrying). Each message
carries an idempotency key that the provider can see (Slack message metadata, the email's
Message-ID, the webhook's Idempotency-Key), so that a re-send after a crash can be recognised.

A new channel kind is its module here (the transport and its ``RULES``), its line in ``CHANNELS``, its
factory line in ``flows.effects.delivery.TRANSPORTS``, its docs and its tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from breakglass.integrations.notify import email, outbox, slack, telegram, webhook
from breakglass.integrations.notify.base import ChannelRules

CHANNELS: dict[str, ChannelRules] = {m.RULES.kind: m.RULES for m in (slack, email, webhook, telegram, outbox)}

# The channel kinds an inventory may name (``channels.<name>.kind``): the keys of CHANNELS.
if TYPE_CHECKING:
    ChannelKind = str
else:
    ChannelKind = Literal[tuple(CHANNELS)]

__all__ = ["CHANNELS", "ChannelKind", "ChannelRules"]
