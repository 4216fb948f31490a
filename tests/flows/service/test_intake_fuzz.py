"""The intake in-process under random bodies, nested up to 200k levels, with and without credentials: every
answer is a 202 or a 4xx with a reason, and nothing raises (a raise would be a 500 and a retry storm)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breakglass.flows.service import intake as intake_module
from breakglass.flows.spec.validate import load_inventory

INVENTORY = """apiVersion: breakglass/v1
kind: Inventory
name: fuzz
alert_sources:
  gen: {kind: generic, token_env: GEN_TOKEN}
  oz: {kind: oz-monitor, secret_env: OZ_SECRET}
  defender: {kind: defender, secret_env: DEFENDER_SECRET}
"""
leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=3), max_leaves=12)


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "inv.yaml").write_text(INVENTORY)
    env = {"GEN_TOKEN": "t", "OZ_SECRET": "s", "DEFENDER_SECRET": "d"}.get
    return intake_module.Intake(tmp / "home", load_inventory(tmp / "inv.yaml"), {}, lambda *a: {}, env)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values, levels=st.sampled_from([0, 0, 1, 31, 33, 1_000, 70_000, 200_000]),
       kind=st.sampled_from(["list", "object"]), source=st.sampled_from(["gen", "oz", "defender"]),
       authenticated=st.booleans(), raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_any_body_at_any_depth_is_answered_never_raised(desk, value, levels, kind, source, authenticated, raw) -> None:
    body = raw if raw is not None else json.dumps(value).encode()
    if levels:
        body = (b"[" * levels + body + b"]" * levels) if kind == "list" else (b'{"a":' * levels + body + b"}" * levels)
    headers = {"content-type": "application/json"}
    if authenticated and source == "gen":
        headers["authorization"] = "Bearer t"
    elif source == "defender":  # fresh headers: Defender's proof needs the decoded body, which must stay bounded
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        headers.update({"defender-timestamp": stamp, "defender-signature": "00"})
    status, answer = desk.accept(source, body, headers)
    assert status == 202 or (400 <= status < 500 and answer.get("error")), (status, answer)
    if levels > 32 and status not in (401, 413):  # refused before decoding: unauthenticated, or over 1 MiB
        assert status == 400 and "nested deeper" in answer["error"]
    if levels > 32 and source == "defender" and status == 401 and len(body) <= 1024 * 1024:
        assert "nested deeper" in answer["error"]  # the fresh headers got it as far as the bounded decoder


def test_the_refusals_of_a_fuzz_run_stay_a_few_lines(desk) -> None:
    log = Path(desk.root) / "audit.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    unauthenticated = [json.loads(line) for line in lines if json.loads(line).get("authenticated") is False]
    assert len(unauthenticated) <= 3  # one per source for the minute, whatever the number of refusals
