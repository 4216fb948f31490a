"""Deliver one message per recipient, exactly once, over the first channel that works.

Per recipient the journal holds ``attempt`` (written before handing the message over),
``delivered`` (with the provider's id) or ``failed``. A retry or resume skips delivered
recipients. An ``attempt`` without an outcome is *unknown*: for Slack the message metadata is
looked up with ``conversations.history`` before anything is re-sent; email and webhooks are
re-sent with the same Message-ID / Idempotency-Key, and the delivery table says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breakglass.flows.language.inventory import Channel, Contact, Inventory
from breakglass.flows.language.inventory import recipients as recipients  # the steps ask delivery
from breakglass.flows.run import failpoints
from breakglass.flows.run.journal import Journal
from breakglass.flows.run.records import now
from breakglass.integrations.notify import CHANNELS
from breakglass.integrations.notify.base import ChannelRules, Message, Permanent, Transient, Transport
from breakglass.integrations.notify.email import EmailTransport
from breakglass.integrations.notify.outbox import OutboxTransport
from breakglass.integrations.notify.slack import SlackTransport
from breakglass.integrations.notify.telegram import TelegramTransport
from breakglass.integrations.notify.webhook import WebhookTransport

_PACE: dict[tuple[str, str], tuple[threading.Lock, list[float]]] = {}
_PACE_GUARD = threading.Lock()


def _env(name: str | None, channel: str) -> str:
    value = os.environ.get(name or "", "")
    if not value:
        raise Permanent(f"channel '{channel}': environment variable {name} is not set")
    return value


TransportFactory = Callable[[str, Channel, Path], Transport]

# One factory per channel kind: a new transport is its module in integrations/notify (with its RULES, gathered in
# integrations.notify.CHANNELS) and a line here. A test holds the two registries and the inventory's kinds equal.
TRANSPORTS: dict[str, TransportFactory] = {
    "slack": lambda name, spec, outbox: SlackTransport(_env(spec.token_env, name), spec.base_url),
    "telegram": lambda name, spec, outbox: TelegramTransport(_env(spec.token_env, name),
                                                             spec.base_url or "https://api.telegram.org"),
    "email": lambda name, spec, outbox: EmailTransport(
        spec.host or "", spec.port, spec.sender or "", username=os.environ.get(spec.username_env or "") or None,
        password=os.environ.get(spec.password_env or "") or None, starttls=spec.starttls),
    "webhook": lambda name, spec, outbox: WebhookTransport(_env(spec.url_env, name), _env(spec.secret_env, name)),
    "outbox": lambda name, spec, outbox: OutboxTransport(outbox),
}


def build(name: str, spec: Channel, outbox: Path) -> Transport:
    """A transport from an inventory channel; secrets come from the environment, by name."""
    return TRANSPORTS[spec.kind](name, spec, outbox)


@dataclass
class Delivery:
    recipient: str
    channel: str | None
    status: str  # delivered | delivered-earlier | reconciled | resent-unknown | failed
    attempts: int
    provider_id: str | None
    at: str
    key: str
    errors: list[str]

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Sender:
    def __init__(self, inventory: Inventory, journal: Journal, outbox: Path, cancel: threading.Event | None = None,
                 retries: int = 3, backoff: float = 0.5) -> None:
        self.inventory, self.journal, self.outbox = inventory, journal, outbox
        self.cancel = cancel or threading.Event()
        self.retries, self.backoff = retries, backoff
        self._transports: dict[str, Transport | Exception] = {}
        self._lock = threading.Lock()

    def transport(self, name: str) -> Transport:
        with self._lock:
            if name not in self._transports:
                try:
                    self._transports[name] = build(name, self.inventory.channels[name], self.outbox)
                except Permanent as exc:
                    self._transports[name] = exc
            found = self._transports[name]
        if isinstance(found, Exception):
            raise found
        return found

    def _rules(self, channel: str) -> ChannelRules:
        return CHANNELS[self.inventory.channels[channel].kind]

    def deliver_all(self, keyed: list[tuple[str, Message]], concurrency: int = 64) -> list[Delivery]:
        """Recipients in parallel, except that messages to one address of an ordered channel kind (a Slack
        channel) go one after another, in order."""
        lanes: dict[tuple[str, str], list[tuple[str, Message]]] = {}
        for recipient, message in keyed:
            first = self.inventory.contacts[recipient].channels[0]
            ordered = self._rules(first.via).ordered
            lanes.setdefault((first.via, first.address) if ordered else ("", recipient), []).append((recipient, message))
        results: dict[str, Delivery] = {}

        def run_lane(items: list[tuple[str, Message]]) -> None:
            for recipient, message in items:
                results[recipient] = self.deliver(recipient, message)

        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(lanes))), thread_name_prefix="notify") as pool:
            list(pool.map(run_lane, lanes.values()))
        return [results[recipient] for recipient, _ in keyed]

    def deliver(self, recipient: str, message: Message) -> Delivery:
        contact: Contact = self.inventory.contacts[recipient]
        history = self.journal.entries(message.key)
        done = next((e for e in history if e["event"] == "delivered"), None)
        if done is not None:
            return Delivery(recipient, done["channel"], "delivered-earlier", 0, done["provider_id"], done["at"], message.key, [])
        unknown = {e["channel"] for e in history if e["event"] == "attempt"} - {e["channel"] for e in history if e["event"] == "failed"}
        errors: list[str] = []
        attempts = 0
        for option in contact.channels:
            channel, to = option.via, option.address or recipient
            try:
                transport = self.transport(channel)
                if channel in unknown:  # handed over before a crash, outcome never recorded
                    found = transport.find(to, message)
                    if found is not None:
                        self.journal.append(message.key, "delivered", channel=channel, provider_id=found, reconciled=True)
                        return Delivery(recipient, channel, "reconciled", attempts, found, now(), message.key, errors)
                for attempt in range(1, self.retries + 1):
                    attempts += 1
                    self.journal.append(message.key, "attempt", channel=channel)
                    try:
                        with self._slot(channel, to, transport):
                            provider_id = transport.send(to, message)
                    except Transient as exc:
                        errors.append(f"{channel}: {exc}")
                        found = transport.find(to, message)  # None where the provider cannot be asked
                        if found is not None:  # it landed after all: never post twice
                            provider_id = found
                        elif attempt == self.retries:
                            raise
                        else:
                            time.sleep(self.backoff * 2 ** (attempt - 1))
                            continue
                    failpoints.hit("notify.before_record")
                    self.journal.append(message.key, "delivered", channel=channel, provider_id=provider_id)
                    status = "resent-unknown" if channel in unknown else "delivered"
                    return Delivery(recipient, channel, status, attempts, provider_id, now(), message.key, errors)
            except (Permanent, Transient) as exc:
                errors.append(f"{channel}: {exc}") if not errors or not errors[-1].endswith(str(exc)) else None
                self.journal.append(message.key, "failed", channel=channel, error=str(exc))
                continue
        return Delivery(recipient, None, "failed", attempts, None, now(), message.key, errors)

    @contextmanager
    def _slot(self, channel: str, to: str, transport: Transport) -> Iterator[None]:
        """For an ordered channel kind (Slack allows about 1 post/s per channel): one message at a time per
        address, at most one per ``per_channel_interval``; held across the transport's own 429 retries, so
        that messages keep their order."""
        if not self._rules(channel).ordered:
            yield
            return
        interval = self.inventory.channels[channel].per_channel_interval
        with _PACE_GUARD:
            lock, last = _PACE.setdefault((channel, to), (threading.Lock(), [0.0]))
        with lock:
            wait = last[0] + interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                yield
            finally:
                last[0] = time.monotonic()

