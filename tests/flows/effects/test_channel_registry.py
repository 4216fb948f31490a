"""Channel kinds own their rules: each transport module declares ``RULES`` (what an inventory must say,
how addresses are checked, whether messages to one address are ordered and paced), ``CHANNELS`` gathers
them, and ``delivery.TRANSPORTS`` holds one factory per kind. The inventory, validate and the sender read
the registries; none asks which kind a channel is. In-process, with the drill outbox as the wire."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import get_args

import pytest

from breakglass.flows.effects import delivery
from breakglass.flows.errors import SpecError
from breakglass.flows.run.journal import Journal
from breakglass.flows.spec.validate import load_inventory
from breakglass.integrations.notify import CHANNELS, ChannelKind
from breakglass.integrations.notify.base import Message, Transient
from breakglass.integrations.notify.outbox import OutboxTransport

INVENTORY = """apiVersion: breakglass/v1
kind: Inventory
name: channels
channels:
  desk: {kind: outbox, per_channel_interval: 0.2}
contacts:
"""


def inventory(tmp_path: Path, channels: str = "", contacts: str = "") -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"apiVersion: breakglass/v1\nkind: Inventory\nname: x\nchannels:\n{channels}contacts:\n{contacts}")
    return path


def test_the_three_registries_name_the_same_kinds() -> None:
    assert set(delivery.TRANSPORTS) == set(CHANNELS)
    assert set(get_args(ChannelKind)) == set(CHANNELS)
    assert all(rules.kind == kind for kind, rules in CHANNELS.items())


@pytest.mark.parametrize(("channel", "message"), [
    ("{kind: slack}", "a slack channel needs token_env"),
    ("{kind: telegram}", "a telegram channel needs token_env"),
    ("{kind: email, host: smtp.example.org}", "a email channel needs sender"),
    ("{kind: webhook, url_env: U}", "a webhook channel needs secret_env"),
    ("{kind: pigeon}", "'slack', 'email', 'webhook', 'telegram' or 'outbox'"),
])
def test_each_channel_kind_says_what_its_entry_needs(tmp_path, channel, message) -> None:
    with pytest.raises(SpecError) as refused:
        load_inventory(inventory(tmp_path, f"  c: {channel}\n"))
    assert message in str(refused.value)


@pytest.mark.parametrize(("channel", "to", "message"), [
    ("{kind: email, host: h, sender: s@example.org}", "to: not-an-address", "'not-an-address' is not an email address"),
    ("{kind: email, host: h, sender: s@example.org}", "to: [a@example.org, nope]", "'nope' is not an email address"),
    ("{kind: slack, token_env: T}", "", "a slack channel needs 'to'"),
    ("{kind: telegram, token_env: T}", "", "a telegram channel needs 'to'"),
])
def test_each_channel_kind_checks_its_own_addresses(tmp_path, channel, to, message) -> None:
    contact = f"  p: {{kind: partner, channels: [{{via: c{', ' + to if to else ''}}}], last_verified: 2026-11-01}}\n"
    with pytest.raises(SpecError) as refused:
        load_inventory(inventory(tmp_path, f"  c: {channel}\n", contact))
    assert message in str(refused.value)
    fine = contact.replace(to, "to: a@example.org" if "email" in channel else "to: C0123") if to else \
        contact.replace("{via: c}", "{via: c, to: C0123}")
    load_inventory(inventory(tmp_path, f"  c: {channel}\n", fine))


def _sender(tmp_path: Path, people: int) -> tuple[delivery.Sender, list[tuple[str, Message]]]:
    contacts = "".join(f"  p{i}: {{kind: internal, channels: [{{via: desk, to: room}}], last_verified: 2026-11-01}}\n"
                       for i in range(people))
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY + contacts)
    sender = delivery.Sender(load_inventory(path), Journal(tmp_path / "journal.jsonl"), tmp_path / "outbox")
    return sender, [(f"p{i}", Message(key=f"k{i}", subject="s", text=f"m{i}")) for i in range(people)]


class Recording(OutboxTransport):
    """The outbox, noting when each message reached it and how many were in flight at once."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.arrived: list[tuple[str, float]] = []
        self.inflight = self.most = 0
        self._lock = threading.Lock()

    def send(self, to: str, message: Message) -> str:
        with self._lock:
            self.inflight += 1
            self.most = max(self.most, self.inflight)
        time.sleep(0.05)
        try:
            return super().send(to, message)
        finally:
            with self._lock:
                self.inflight -= 1
                self.arrived.append((message.key, time.monotonic()))


@pytest.mark.parametrize("ordered", [False, True])
def test_ordering_and_pacing_come_from_the_kinds_rules(tmp_path, monkeypatch, ordered) -> None:
    """The same outbox channel, declared ordered or not: the sender follows the declaration, not the kind."""
    wire: list[Recording] = []
    monkeypatch.setitem(delivery.TRANSPORTS, "outbox", lambda name, spec, outbox: wire.append(Recording(outbox)) or wire[-1])
    monkeypatch.setitem(CHANNELS, "outbox", dataclasses.replace(CHANNELS["outbox"], ordered=ordered))
    sender, keyed = _sender(tmp_path, 4)
    rows = sender.deliver_all(keyed)
    assert [r.status for r in rows] == ["delivered"] * 4
    (recording,) = wire
    if ordered:  # one at a time, in order, at least per_channel_interval apart
        assert recording.most == 1 and [k for k, _ in recording.arrived] == ["k0", "k1", "k2", "k3"]
        gaps = [b - a for (_, a), (_, b) in zip(recording.arrived, recording.arrived[1:], strict=False)]
        assert min(gaps) >= 0.2 - 0.01
    else:
        assert recording.most > 1  # recipients in parallel


class LandedAnyway(OutboxTransport):
    """Writes the message, then loses the answer: the provider has it, the sender does not know."""

    sends = 0

    def send(self, to: str, message: Message) -> str:
        LandedAnyway.sends += 1
        super().send(to, message)
        raise Transient("connection reset after the write")


def test_any_kind_that_can_find_a_delivery_is_asked_before_a_resend(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(delivery.TRANSPORTS, "outbox", lambda name, spec, outbox: LandedAnyway(outbox))
    sender, keyed = _sender(tmp_path, 1)
    (row,) = sender.deliver_all(keyed)
    assert row.status == "delivered" and row.provider_id is not None and LandedAnyway.sends == 1
    assert len(list((tmp_path / "outbox").rglob("*"))) >= 1
