"""Alert adapters and source authentication against the senders' real formats and worked vectors
(copied from the shared fixtures into tests/data/alerts), and fuzzed with hypothesis."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breakglass.integrations.alert import Alert
from breakglass.integrations.alerts import ADAPTERS, Adapter, AdapterError, auth
from breakglass.integrations.alerts.base import depth

DATA = Path(__file__).resolve().parents[1] / "data" / "alerts"
VECTORS = json.loads((DATA / "vectors.json").read_text())
TX = "0x9a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff0"
# CI runs 300 examples per fuzz test; set BREAKGLASS_FUZZ_EXAMPLES=50000 for a deep local run.
FUZZ_EXAMPLES = int(os.environ.get("BREAKGLASS_FUZZ_EXAMPLES", "300"))
FIXTURES = {
    "oz-monitor": ["oz_monitor_template_body.json", "oz_monitor_raw_evm_match.json"],
    "defender": ["defender_monitor_webhook_body.json"],
    "forta": ["forta_local_mode_webhook_batch.json", "forta_graphql_alerts_response.json"],
    "tenderly": ["tenderly_alert_webhook.json"],
    "alertmanager": ["alertmanager_webhook_v4.json"],
}


def _load(name: str):
    return json.loads((DATA / name).read_text())


def test_every_adapter_is_registered_and_typed() -> None:
    assert set(ADAPTERS) == {"oz-monitor", "defender", "forta", "tenderly", "alertmanager", "generic"}
    assert all(isinstance(a, Adapter) and a.source == name for name, a in ADAPTERS.items())


def test_real_formats_become_alerts_with_their_facts() -> None:
    raw = ADAPTERS["oz-monitor"].parse(_load("oz_monitor_raw_evm_match.json"))[0]
    assert (raw.title, raw.chain_id, raw.tx_hash, raw.block) == ("Large Transfer of USDC Token", 1, TX, 0x148B52A)
    assert "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48" in raw.addresses
    template = ADAPTERS["oz-monitor"].parse(_load("oz_monitor_template_body.json"))[0]
    assert template.title == "Large USDC transfer triggered" and template.dedupe_key.startswith("oz-monitor:")

    block = ADAPTERS["defender"].parse(_load("defender_monitor_webhook_body.json"))[0]
    assert block.chain_id == 4 and block.title == "Test Custom Webhook" and len(block.addresses) == 2

    batch = ADAPTERS["forta"].parse(_load("forta_local_mode_webhook_batch.json"))[0]
    graphql = ADAPTERS["forta"].parse(_load("forta_graphql_alerts_response.json"))[0]
    for alert in (batch, graphql):
        assert (alert.severity, alert.chain_id, alert.tx_hash, alert.block) == ("critical", 1, TX, 21543210)
        assert "0x2222222222222222222222222222222222222222" in alert.addresses
    assert batch.dedupe_key == graphql.dedupe_key  # the same Forta alert, however it arrives

    tenderly = ADAPTERS["tenderly"].parse(_load("tenderly_alert_webhook.json"))[0]
    assert (tenderly.chain_id, tenderly.tx_hash, tenderly.block) == (1, TX, 21543210)

    am = ADAPTERS["alertmanager"].parse(_load("alertmanager_webhook_v4.json"))[0]
    assert am.dedupe_key == "alertmanager:6f1d2a3b4c5d6e7f@2026-01-01T00:00:04.123Z" and am.severity == "critical"
    assert am.chain_id == 1 and am.addresses == ["0x1111111111111111111111111111111111111111"]

    generic = ADAPTERS["generic"].parse({"id": "m-1", "title": "t", "severity": "HIGH", "chain_id": "0x1", "tx_hash": TX,
                                         "addresses": ["0x1111111111111111111111111111111111111111"]})[0]
    assert (generic.severity, generic.chain_id, generic.dedupe_key) == ("high", 1, "generic:m-1")


@pytest.mark.parametrize(("source", "body", "expected"), [
    ("generic", {"id": "x", "title": "t", "chain_id": "one"}, "chain_id: 'one' is not a number"),
    ("generic", {"id": "x", "title": "t", "addresses": ["0x12"]}, "addresses[0]: '0x12' is not an address"),
    ("generic", {"id": "x", "title": "t", "tx_hash": 7}, "tx_hash: '7' is not a transaction hash"),
    ("generic", {"id": "x", "title": "t", "extra": 1}, "unknown key(s) extra"),
    ("tenderly", {"id": "x", "event_type": "OTHER", "transaction": {}}, "event_type: 'OTHER' is not ALERT or TEST"),
    ("alertmanager", {"version": "3", "alerts": []}, "only Alertmanager webhook version 4"),
    ("forta", {"alerts": []}, "alerts: empty"),
], ids=["chain-id-string", "short-address", "number-as-hash", "unknown-key", "tenderly-type", "am-version", "forta-empty"])
def test_wrong_fields_are_refused_with_where_and_why(source, body, expected) -> None:
    with pytest.raises(AdapterError, match=re.escape(expected)):
        ADAPTERS[source].parse(body)


def test_alert_text_is_data() -> None:
    alert = ADAPTERS["generic"].parse({"id": "x", "title": "{{ inputs.attacker }} <!channel>"})[0]
    assert alert.title == "{{ inputs.attacker }} <!channel>"  # kept verbatim; templates and Slack treat it as text


def test_deep_nesting_is_refused() -> None:
    nested: list = []
    for _ in range(40):
        nested = [nested]
    with pytest.raises(AdapterError, match="nested deeper"):
        depth({"a": nested})


def test_worked_vectors_authenticate_and_tampering_does_not() -> None:
    oz = VECTORS["oz_monitor_template"]
    body = (DATA / "oz_monitor_template_body.json").read_bytes().rstrip(b"\n")
    headers = {"x-timestamp": oz["x_timestamp"], "x-signature": oz["x_signature"]}
    at = int(oz["x_timestamp"]) / 1000
    assert auth.oz_monitor(body, headers, oz["secret"], now=at + 1) is None
    with pytest.raises(auth.AuthError, match="does not match"):
        auth.oz_monitor(body + b" ", headers, oz["secret"], now=at + 1)
    with pytest.raises(auth.AuthError, match="older than"):
        auth.oz_monitor(body, headers, oz["secret"], now=at + 3600)

    d = VECTORS["defender"]
    d_headers = {"defender-timestamp": d["Defender-Timestamp"], "defender-signature": d["Defender-Signature"]}
    d_body = _load("defender_monitor_webhook_body.json")
    from datetime import datetime

    d_at = datetime.fromisoformat(d["Defender-Timestamp"].replace("Z", "+00:00")).timestamp()
    assert auth.defender(d_body, d_headers, d["secret"], now=d_at + 5) is None
    tampered = copy.deepcopy(d_body)
    tampered["events"][0]["hash"] = "0x" + "00" * 32
    with pytest.raises(auth.AuthError, match="does not match"):
        auth.defender(tampered, d_headers, d["secret"], now=d_at + 5)
    with pytest.raises(auth.AuthError, match="in the future"):
        auth.defender(d_body, d_headers, d["secret"], now=d_at - 3600)

    t = VECTORS["tenderly"]
    t_body = (DATA / "tenderly_alert_webhook.json").read_bytes()
    t_headers = {"date": t["date"], "x-tenderly-signature": t["x-tenderly-signature"]}
    from email.utils import parsedate_to_datetime

    t_at = parsedate_to_datetime(t["date"]).timestamp()
    assert auth.tenderly(t_body, t_headers, t["signing_key"], now=t_at + 2) is None
    with pytest.raises(auth.AuthError, match="does not match"):
        auth.tenderly(t_body, t_headers, "wrong-key", now=t_at + 2)

    assert auth.bearer({"authorization": "Bearer s3cret"}, "s3cret") is None
    with pytest.raises(auth.AuthError) as refused:
        auth.bearer({"authorization": "Bearer nope"}, "s3cret")
    assert "s3cret" not in str(refused.value)
    assert auth.basic({"authorization": "Basic YWxlcnQ6cGFzcw=="}, "alert", "pass") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["0x" + "11" * 20, TX, "0x1", "CRITICAL", "ALERT", "4", "firing"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "title", "alerts", "events", "EVM", "type", "source", "transaction", "hash", "labels",
                         "version", "addresses", "severity", "chain_id", "block", "data", "monitor", "name"])
        | st.text(max_size=8), inner, max_size=6),
    max_leaves=25)


def _mutations(value, draw):
    """Replace one nested value of a real fixture by something random."""
    if isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        out[key] = draw(json_values) if draw(st.booleans()) else _mutations(value[key], draw)
        return out
    if isinstance(value, list) and value:
        index = draw(st.integers(0, len(value) - 1))
        out = list(value)
        out[index] = draw(json_values) if draw(st.booleans()) else _mutations(value[index], draw)
        return out
    return draw(json_values)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(source=st.sampled_from(sorted(ADAPTERS)), body=json_values)
def test_random_json_gives_alerts_or_a_clean_refusal(source, body) -> None:
    _check(source, body)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(data=st.data())
def test_mutated_real_fixtures_give_alerts_or_a_clean_refusal(data) -> None:
    source = data.draw(st.sampled_from(sorted(FIXTURES)))
    body = _load(data.draw(st.sampled_from(FIXTURES[source])))
    _check(source, _mutations(body, data.draw))


def _check(source: str, body) -> None:
    try:
        alerts = ADAPTERS[source].parse(body)
    except AdapterError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert alerts and all(isinstance(a, Alert) and a.source == source for a in alerts)


def _forta_jwt(account, claims: dict, alg: str = "ETH") -> str:
    import base64

    from eth_utils import keccak

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signed = account.unsafe_sign_hash(keccak(f"{head}.{body}".encode()))
    return f"{head}.{body}.{b64(signed.signature)}"


def test_forta_jwts_count_only_from_allowlisted_scanners() -> None:
    import time as _time

    from eth_account import Account

    from tests.conftest import dev_key

    scanner, stranger = Account.from_key(dev_key("relayer")), Account.from_key(dev_key("attacker"))
    now = _time.time()
    good = {"sub": scanner.address, "iat": int(now), "exp": int(now) + 30, "bot-id": "0x17381ae9"}
    assert auth.forta_jwt({"authorization": "Bearer " + _forta_jwt(scanner, good)}, [scanner.address], now=now) == scanner.address
    refusals = {
        "is not on this source.s allowlist": _forta_jwt(stranger, {**good, "sub": stranger.address}),
        "not signed by its subject": _forta_jwt(stranger, good),
        "has expired": _forta_jwt(scanner, {**good, "exp": int(now) - 1}),
        "alg ETH": _forta_jwt(scanner, good, alg="HS256"),
    }
    for reason, token in refusals.items():
        with pytest.raises(auth.AuthError, match=reason):
            auth.forta_jwt({"authorization": "Bearer " + token}, [scanner.address], now=now)
    head, body, sig = _forta_jwt(scanner, good).split(".")
    tampered = f"{head}.{_forta_jwt(scanner, {**good, 'bot-id': 'other'}).split('.')[1]}.{sig}"
    with pytest.raises(auth.AuthError, match="not signed by its subject"):
        auth.forta_jwt({"authorization": "Bearer " + tampered}, [scanner.address], now=now)
    with pytest.raises(auth.AuthError, match="not well formed"):
        auth.forta_jwt({"authorization": "Bearer a.b.c"}, [scanner.address], now=now)


def test_the_alert_kinds_an_inventory_may_name_are_the_adapters() -> None:
    from typing import get_args

    from breakglass.integrations.alerts import ADAPTERS, AlertKind

    assert set(get_args(AlertKind)) == set(ADAPTERS)
