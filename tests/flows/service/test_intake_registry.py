"""Alert sources own their rules: each adapter declares its credentials and authenticates its own requests,
and the intake and the inventory only look the adapter up. In-process (no `serve`, no Prefect): an
``Intake`` on a real inventory, fed the senders' real signing schemes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any, ClassVar

import pytest
from eth_account import Account
from eth_utils import keccak

from breakglass.flows.errors import SpecError
from breakglass.flows.service import intake as intake_module
from breakglass.flows.spec.validate import load_inventory
from breakglass.integrations.alerts import ADAPTERS, auth
from breakglass.integrations.alerts.base import Credentials
from breakglass.integrations.alerts.generic import Generic
from tests.conftest import REPO

DATA = REPO / "tests" / "data" / "alerts"
SCANNER = Account.from_key("0x" + "42" * 32)
ENV = {"OZ_SECRET": "oz-secret", "DEFENDER_SECRET": "defender-secret", "TENDERLY_KEY": "tenderly-key",
       "GENERIC_TOKEN": "generic-token", "AM_USER": "am-user", "AM_PASSWORD": "am-password"}
INVENTORY = f"""apiVersion: breakglass/v1
kind: Inventory
name: registry
alert_sources:
  oz: {{kind: oz-monitor, secret_env: OZ_SECRET}}
  defender: {{kind: defender, secret_env: DEFENDER_SECRET}}
  tenderly: {{kind: tenderly, secret_env: TENDERLY_KEY}}
  forta: {{kind: forta, scanners: ["{SCANNER.address}"]}}
  am: {{kind: alertmanager, username_env: AM_USER, password_env: AM_PASSWORD}}
  generic: {{kind: generic, token_env: GENERIC_TOKEN}}
"""


def _mac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forta_jwt(exp: float) -> str:
    head, payload = _b64(b'{"alg":"ETH","typ":"JWT"}'), _b64(json.dumps({"sub": SCANNER.address, "exp": int(exp)}).encode())
    signed = Account._sign_hash(keccak(f"{head}.{payload}".encode()), SCANNER.key)
    return f"{head}.{payload}.{_b64(signed.signature)}"


def signed(source: str, body: bytes) -> dict[str, str]:
    """Headers as each sender signs (shared/fixtures/README.md)."""
    if source == "oz":
        stamp = str(int(time.time() * 1000))
        return {"x-timestamp": stamp, "x-signature": _mac(ENV["OZ_SECRET"], body + stamp.encode())}
    if source == "defender":
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        doc = json.dumps({**json.loads(body), "timestamp": stamp}, separators=(",", ":"), ensure_ascii=False).encode()
        return {"defender-timestamp": stamp, "defender-signature": _mac(ENV["DEFENDER_SECRET"], doc)}
    if source == "tenderly":
        date = formatdate(usegmt=True)
        return {"date": date, "x-tenderly-signature": _mac(ENV["TENDERLY_KEY"], body + date.encode())}
    if source == "forta":
        return {"authorization": "Bearer " + forta_jwt(time.time() + 30)}
    if source == "am":
        return {"authorization": "Basic " + base64.b64encode(b"am-user:am-password").decode()}
    return {"authorization": "Bearer generic-token"}


BODIES = {"oz": "oz_monitor_raw_evm_match.json", "defender": "defender_monitor_webhook_body.json",
          "tenderly": "tenderly_alert_webhook.json", "forta": "forta_local_mode_webhook_batch.json",
          "am": "alertmanager_webhook_v4.json", "generic": None}


def body_of(source: str) -> bytes:
    name = BODIES[source]
    return (DATA / name).read_bytes() if name else json.dumps({"id": "g-1", "title": "generic"}).encode()


@pytest.fixture
def desk(tmp_path: Path) -> intake_module.Intake:
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    return intake_module.Intake(tmp_path / "home", load_inventory(path), {}, lambda *a: None, lambda n: ENV.get(n, ""))


@pytest.mark.parametrize("source", sorted(BODIES))
def test_each_source_is_authenticated_by_its_own_adapter(desk, source) -> None:
    body = body_of(source)
    headers = signed(source, body)
    status, answer = desk.accept(source, body, headers)
    assert status == 202 and answer["accepted"] >= 1, answer
    again = desk.accept(source, body, headers)
    assert again[0] == 202 and again[1].get("replay") is True  # the sender's retry answers from the log


@pytest.mark.parametrize(("source", "tamper", "reason"), [
    ("oz", lambda h: {**h, "x-signature": "00" * 32}, "X-Signature does not match"),
    ("oz", lambda h: {}, "missing or malformed X-Timestamp / X-Signature"),
    ("defender", lambda h: {**h, "defender-signature": "00" * 32}, "Defender-Signature does not match"),
    ("defender", lambda h: {}, "missing Defender-Timestamp / Defender-Signature"),
    ("tenderly", lambda h: {**h, "x-tenderly-signature": "00" * 32}, "x-tenderly-signature does not match"),
    ("forta", lambda h: {"authorization": "Bearer " + forta_jwt(time.time() - 5)}, "the Forta JWT has expired"),
    ("forta", lambda h: {}, "missing Forta bearer JWT"),
    ("am", lambda h: {"authorization": "Basic " + base64.b64encode(b"am-user:wrong").decode()}, "missing or wrong basic credentials"),
    ("generic", lambda h: {"authorization": "Bearer nope"}, "missing or wrong bearer token"),
])
def test_forgeries_are_refused_with_the_same_reasons(desk, source, tamper, reason) -> None:
    body = body_of(source)
    status, answer = desk.accept(source, body, tamper(signed(source, body)))
    assert status == 401 and answer["error"].startswith(reason), answer
    assert not any(v in answer["error"] for v in ENV.values())


def test_an_empty_credential_never_authenticates(tmp_path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    desk = intake_module.Intake(tmp_path / "home", load_inventory(path), {}, lambda *a: None, lambda n: "")
    body = body_of("generic")
    status, answer = desk.accept("generic", body, {"authorization": "Bearer "})
    assert status == 401 and "environment variable GENERIC_TOKEN is empty" in answer["error"]


def test_replays_are_keyed_by_each_sources_signed_headers(desk) -> None:
    body = body_of("oz")
    headers = signed("oz", body)
    assert desk.accept("oz", body, headers)[0] == 202
    status, answer = desk.accept("oz", body, headers)
    assert status == 202 and answer.get("replay") is True  # the sender's retry: the same signature
    # the key for existing sources is the one written in logs before sources declared their headers
    old = hashlib.sha256(json.dumps(["oz", "", headers["x-signature"], "", "", headers["x-timestamp"], "",
                                     hashlib.sha256(body).hexdigest()]).encode()).hexdigest()
    assert intake_module.replay_key("oz", ADAPTERS["oz-monitor"].credentials.signed_headers, headers,
                                    hashlib.sha256(body).hexdigest()) == old


@pytest.mark.parametrize(("entry", "message"), [
    ("{kind: oz-monitor}", "a oz-monitor source needs secret_env (its HMAC secret)"),
    ("{kind: defender}", "a defender source needs secret_env (its HMAC secret)"),
    ("{kind: tenderly}", "a tenderly source needs secret_env (its HMAC secret)"),
    ("{kind: forta}", "a forta source needs scanners: the scan node addresses whose JWTs it accepts"),
    ("{kind: alertmanager, username_env: U}", "a alertmanager source needs token_env, or username_env and password_env"),
    ("{kind: generic}", "a generic source needs token_env, or username_env and password_env"),
])
def test_the_inventory_asks_each_adapter_what_it_needs(tmp_path, entry, message) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"apiVersion: breakglass/v1\nkind: Inventory\nname: x\nalert_sources:\n  s: {entry}\n")
    with pytest.raises(SpecError) as refused:
        load_inventory(path)
    assert message in str(refused.value)


def test_the_inventory_kinds_are_the_registry(tmp_path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("apiVersion: breakglass/v1\nkind: Inventory\nname: x\nalert_sources:\n  s: {kind: github}\n")
    with pytest.raises(SpecError) as refused:
        load_inventory(path)
    assert all(repr(kind) in str(refused.value) or kind in str(refused.value) for kind in ADAPTERS)


class HubSigned(Generic):
    """A new source, the way its module would declare it: its own signed header and scheme."""

    credentials: ClassVar[Credentials] = Credentials(any_of=(("secret_env",),), needs="secret_env",
                                                     signed_headers=("x-hub-signature-256",))

    def authenticate(self, body: bytes, headers: dict[str, str], source: Any, env: Any) -> Any:
        given = headers.get("x-hub-signature-256", "")
        if not hmac.compare_digest(given, "sha256=" + _mac(env(source.secret_env), body)):
            raise auth.AuthError("x-hub-signature-256 does not match")


def test_the_intake_knows_no_source_only_the_registry(tmp_path, monkeypatch) -> None:
    """Swap the adapter behind a kind: the intake authenticates and keys replays as the new adapter says,
    with no change to the intake."""
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY.replace("generic: {kind: generic, token_env: GENERIC_TOKEN}",
                                      "generic: {kind: generic, secret_env: HUB_SECRET, token_env: GENERIC_TOKEN}"))
    monkeypatch.setitem(ADAPTERS, "generic", HubSigned())
    env = {**ENV, "HUB_SECRET": "hub"}
    desk = intake_module.Intake(tmp_path / "home", load_inventory(path), {}, lambda *a: None, lambda n: env.get(n, ""))
    body = body_of("generic")
    good = {"x-hub-signature-256": "sha256=" + _mac("hub", body)}
    assert desk.accept("generic", body, {"authorization": "Bearer generic-token"}) == \
        (401, {"error": "x-hub-signature-256 does not match"})
    assert desk.accept("generic", body, good)[0] == 202
    assert desk.accept("generic", body, good)[1].get("replay") is True
    other = dict(good, **{"x-hub-signature-256": "sha256=" + _mac("hub", body + b" ")})
    assert desk.accept("generic", body + b" ", other)[1].get("replay") is None


def test_no_flows_module_names_an_alert_source() -> None:
    """A new source touches its adapter and the registry line, never flows/ (docs/architecture.md)."""
    named = [f"{p.relative_to(REPO)}: {kind}" for p in (REPO / "flows").rglob("*.py") for kind in ADAPTERS
             if f'"{kind}"' in p.read_text() or f"'{kind}'" in p.read_text()]
    assert named == []
