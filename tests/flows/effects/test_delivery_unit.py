"""Message delivery as a unit, with a fake at the wire: ``ctx.deliver.deliver_all`` (``effects/delivery``)
posts signed webhooks to an HTTP server on loopback that fails once with a 500 and then accepts.

What the server received is the proof: one accepted post per recipient, the failed one retried
with the same Idempotency-Key, a recipient whose first channel refuses reached on its next one,
and a second ``deliver_all`` with the same keys sends nothing at all.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from breakglass.flows.effects.engines import wire
from breakglass.flows.run.context import Bindings, StepContext
from breakglass.flows.run.journal import Journal
from breakglass.flows.spec.loader import load, require
from breakglass.integrations.notify.base import Message
from breakglass.integrations.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.helpers.jsonhttp import HttpServer

SECRET = "unit-webhook-secret"
INVENTORY = """\
apiVersion: breakglass/v1
kind: Inventory
name: unit
channels:
  hook-a: {kind: webhook, url_env: BG_UNIT_HOOK_A, secret_env: BG_UNIT_HOOK_SECRET}
  hook-b: {kind: webhook, url_env: BG_UNIT_HOOK_B, secret_env: BG_UNIT_HOOK_SECRET}
  hook-gone: {kind: webhook, url_env: BG_UNIT_HOOK_GONE, secret_env: BG_UNIT_HOOK_SECRET}
contacts:
  alpha: {kind: partner, channels: [{via: hook-a}], last_verified: 2026-11-01}
  beta: {kind: partner, channels: [{via: hook-b}], last_verified: 2026-11-01}
  gamma: {kind: partner, channels: [{via: hook-gone}, {via: hook-a}], last_verified: 2026-11-01}
"""


class Hooks(HttpServer):
    """Webhook receivers on loopback: ``/b`` answers its first post with HTTP 500, ``/gone`` always with 410."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []  # path, status answered, headers, body
        lock = threading.Lock()

        def handle(path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
            with lock:
                earlier = [p for p in self.posts if p["path"] == path]
                status = 410 if path == "/gone" else 500 if path == "/b" and not earlier else 200
                self.posts.append({"path": path, "status": status, "headers": headers, "body": body})
                return status, json.dumps({"id": f"d-{len(self.posts)}"}).encode() if status == 200 else b"{}"

        super().__init__(handle)

    def accepted(self) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["status"] == 200]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    server = Hooks()
    yield server
    server.close()


@pytest.fixture
def make_ctx(hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, path in (("A", "/a"), ("B", "/b"), ("GONE", "/gone")):
        monkeypatch.setenv(f"BG_UNIT_HOOK_{name}", hooks.url + path)
    monkeypatch.setenv("BG_UNIT_HOOK_SECRET", SECRET)
    inv_path = tmp_path / "inventory.yaml"
    inv_path.write_text(INVENTORY)
    inventory = require(load(inv_path))
    run_dir = tmp_path / "home" / "INC-unit" / "runs" / "r1"
    run_dir.mkdir(parents=True)

    def make() -> StepContext:
        """A step context as the runner wires it; a new one (and a new Journal object) per attempt."""
        return wire(StepContext(incident="INC-unit", run_id="r1", run_key="INC-unit/r1/x", mode="live", step_id="tell",
                                inventory=inventory, bindings=Bindings(), artifacts_dir=run_dir / "artifacts",
                                home=tmp_path / "home", log=logging.getLogger("test.delivery"),
                                journal=Journal(run_dir / "journal.jsonl")))

    return make


def _keyed() -> list[tuple[str, Message]]:
    return [(who, Message(key=f"INC-unit/r1/tell/{who}", subject="Pause in effect", text=f"hello {who}",
                          payload={"incident": "INC-unit"}))
            for who in ("alpha", "beta", "gamma")]


def test_each_recipient_gets_one_delivery_retried_through_a_500_and_journaled(hooks: Hooks, make_ctx) -> None:
    ctx = make_ctx()
    results = {d.recipient: d for d in ctx.deliver.deliver_all(_keyed())}

    assert {r: (d.status, d.channel) for r, d in results.items()} == {
        "alpha": ("delivered", "hook-a"), "beta": ("delivered", "hook-b"), "gamma": ("delivered", "hook-a")}
    keys = sorted(p["headers"]["Idempotency-Key"] for p in hooks.accepted())
    assert keys == ["INC-unit/r1/tell/alpha", "INC-unit/r1/tell/beta", "INC-unit/r1/tell/gamma"]  # one each
    to_b = [p for p in hooks.posts if p["path"] == "/b"]
    assert [p["status"] for p in to_b] == [500, 200]  # retried, with the same key and body
    assert to_b[0]["headers"]["Idempotency-Key"] == to_b[1]["headers"]["Idempotency-Key"]
    assert to_b[0]["body"] == to_b[1]["body"]
    assert results["beta"].attempts == 2 and results["beta"].errors == ["hook-b: webhook: HTTP 500"]
    assert results["gamma"].errors == ["hook-gone: webhook: HTTP 410"]  # refused for good: the next channel

    for post in hooks.accepted():  # what arrived is signed with the channel's secret, over timestamp and body
        headers = post["headers"]
        assert headers[SIGNATURE_HEADER] == sign(SECRET, headers[TIMESTAMP_HEADER], post["body"])
        body = json.loads(post["body"])
        assert body["idempotency_key"] == headers["Idempotency-Key"] and body["incident"] == "INC-unit"
        assert SECRET not in post["body"].decode()

    journal = [json.loads(line) for line in ctx.journal.path.read_text().splitlines()]
    beta = [(e["event"], e.get("channel")) for e in journal if e["intent"] == "INC-unit/r1/tell/beta"]
    assert beta == [("attempt", "hook-b"), ("attempt", "hook-b"), ("delivered", "hook-b")]
    gamma = [(e["event"], e.get("channel")) for e in journal if e["intent"] == "INC-unit/r1/tell/gamma"]
    assert gamma == [("attempt", "hook-gone"), ("failed", "hook-gone"), ("attempt", "hook-a"), ("delivered", "hook-a")]
    assert SECRET not in ctx.journal.path.read_text()


def test_delivering_again_with_the_same_keys_sends_nothing_new(hooks: Hooks, make_ctx) -> None:
    first = {d.recipient: d for d in make_ctx().deliver.deliver_all(_keyed())}
    posts = len(hooks.posts)
    again = make_ctx().deliver.deliver_all(_keyed())  # a retry or a resume: the journal read back from disk

    assert len(hooks.posts) == posts
    assert [(d.recipient, d.status, d.attempts) for d in again] == [
        ("alpha", "delivered-earlier", 0), ("beta", "delivered-earlier", 0), ("gamma", "delivered-earlier", 0)]
    assert {d.recipient: d.provider_id for d in again} == {r: d.provider_id for r, d in first.items()}
