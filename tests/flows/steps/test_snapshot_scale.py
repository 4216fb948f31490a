"""Snapshots that scale: 10,000 balances on anvil and through providers that cap batches, body sizes
and eth_call gas. A refusal is split and learned, never a failure and never a failover."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from breakglass.flows.run.context import Bindings, StepContext
from breakglass.flows.spec.loader import load, require
from breakglass.flows.steps.snapshot import SnapshotParams, take
from breakglass.integrations.chain import batching
from tests.conftest import live_inventory
from tests.helpers.rpc_proxy import RpcProxy

pytestmark = pytest.mark.slow

ACCOUNTS = [f"0x{i:040x}" for i in range(1, 10_001)]
GENEROUS = "    rpc_limits: {batch_max: 1000, body_max_bytes: 50000000}\n"


@pytest.fixture(autouse=True)
def cold() -> None:
    batching.forget()  # every test starts like a new process: nothing learned yet


def _snapshot(tmp: Path, chain: Any, url: str, monkeypatch: pytest.MonkeyPatch, accounts: list[str],
              chain_extra: str = "", extra_rpc: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    monkeypatch.setenv("BG_TEST_RPC_URL", url)
    for name, value in (extra_rpc or {}).items():
        monkeypatch.setenv(name, value)
    tmp.mkdir(parents=True, exist_ok=True)
    path = live_inventory(tmp, chain, chain_extra=chain_extra, extra_rpc=list(extra_rpc or {}))
    ctx = StepContext(incident="INC-scale", run_id="run", run_key="INC-scale/run/x", mode="live", step_id="snap",
                      inventory=require(load(path)), bindings=Bindings(), artifacts_dir=tmp / "artifacts", home=tmp,
                      log=logging.getLogger("test"))
    accounts = [*accounts[:-1], chain.addresses["fixture:user"]]  # one holder, so the values are not all zero
    out = take(ctx, SnapshotParams(chain="ethereum", block=_head(chain), balances={"accounts": accounts, "tokens": ["token"]}))
    ctx.close()
    return out, json.loads((tmp / out.artifact).read_text())


def _head(chain: Any) -> int:
    with chain.rpc() as rpc:
        return int(rpc.call("eth_blockNumber"), 16)


def _values(snap: dict[str, Any]) -> list[tuple[str, str]]:
    return [(b["account"], b["raw"]) for b in snap["balances"]]


@pytest.fixture(scope="module")
def reference(chain: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 10,000 balances read straight from anvil with the default limits."""
    batching.forget()
    mp = pytest.MonkeyPatch()
    try:
        _, snap = _snapshot(tmp_path_factory.mktemp("ref"), chain, chain.url, mp, ACCOUNTS)
    finally:
        mp.undo()
    return snap


def test_ten_thousand_balances_on_anvil_within_the_default_limits(reference: dict[str, Any]) -> None:
    snap = reference
    assert len(snap["balances"]) == 10_000 and not any("error" in b for b in snap["balances"])
    assert int(snap["balances"][-1]["raw"]) > 0
    split = snap["batching"]
    assert split["limits"]["batch_max"] == 100 and split["limits"]["body_max_bytes"] == 1_000_000
    assert split["calls_per_chunk"] == [500] * 20
    assert all(b["requests"] <= 100 and b["bytes"] <= 1_000_000 and not b.get("refused") for b in split["batches"])
    assert split["http_requests"] == len(split["batches"]) <= 8  # the head, then 20 chunks in bodies under 1 MB


def test_ten_thousand_balances_through_a_strict_provider(chain, tmp_path: Path, monkeypatch, reference) -> None:
    proxy = RpcProxy(chain.url, batch_max=100, body_max=1_000_000)
    try:
        out, snap = _snapshot(tmp_path, chain, proxy.url, monkeypatch, ACCOUNTS)
    finally:
        proxy.close()
    assert _values(snap) == _values(reference)
    assert proxy.refused == []  # the defaults fit a strict provider from the first request
    assert out.round_trips == len(proxy.posts) <= 8


def test_anvil_refusing_a_too_large_batch_is_split_in_half_not_a_failure(chain, tmp_path, monkeypatch, reference, caplog) -> None:
    """The original failure: limits above anvil's own body cap made it answer one 'Invalid request' object."""
    caplog.set_level(logging.WARNING, logger="breakglass.rpc")
    out, snap = _snapshot(tmp_path / "a", chain, chain.url, monkeypatch, ACCOUNTS, chain_extra=GENEROUS)
    assert _values(snap) == _values(reference)
    batches = snap["batching"]["batches"]
    assert any(b.get("refused") for b in batches), "anvil should have refused the 20-chunk body"
    assert snap["batching"]["limits"]["body_max_bytes"] < 50_000_000  # learned
    learned = [r for r in caplog.records if r.name == "breakglass.rpc"]
    assert len(learned) == 1 and "for the rest of this run" in learned[0].getMessage()
    assert "127.0.0.1" not in learned[0].getMessage()  # the endpoint by its label, never its URL

    # The rest of the run plans under what was learned: no refusal, no second log line.
    _, again = _snapshot(tmp_path / "b", chain, chain.url, monkeypatch, ACCOUNTS, chain_extra=GENEROUS)
    assert _values(again) == _values(reference)
    assert not any(b.get("refused") for b in again["batching"]["batches"])
    assert len([r for r in caplog.records if r.name == "breakglass.rpc"]) == 1


@pytest.mark.parametrize("caps", [{"batch_max": 3}, {"body_max": 300_000}, {"batch_max": 2, "body_max": 250_000}])
def test_halving_on_a_refusing_endpoint_gives_the_same_values(chain, tmp_path, monkeypatch, reference, caps) -> None:
    proxy = RpcProxy(chain.url, **caps)
    try:
        out, snap = _snapshot(tmp_path, chain, proxy.url, monkeypatch, ACCOUNTS, chain_extra=GENEROUS)
    finally:
        proxy.close()
    assert _values(snap) == _values(reference)
    assert proxy.refused, "the endpoint should have refused the first, generous batches"
    refused = [b for b in snap["batching"]["batches"] if b.get("refused")]
    assert len(refused) == len(proxy.refused)  # the artifact records every refused split
    assert out.round_trips == len(proxy.posts)
    assert snap["batching"]["calls_per_chunk"] == [500] * 20  # a refused batch never shrinks the eth_calls inside it
    answered = [b for b in snap["batching"]["batches"] if not b.get("refused")]
    assert all(b["requests"] <= caps.get("batch_max", 10**9) and b["bytes"] <= caps.get("body_max", 10**9) for b in answered)


def test_a_chunk_over_the_gas_cap_is_halved(chain, tmp_path, monkeypatch, reference) -> None:
    proxy = RpcProxy(chain.url, call_data_max=30_000)  # about 130 balance reads per eth_call
    try:
        _, snap = _snapshot(tmp_path, chain, proxy.url, monkeypatch, ACCOUNTS[:2000])
    finally:
        proxy.close()
    assert _values(snap) == _values(reference)[:1999] + [_values(reference)[-1]]
    assert "gas" in proxy.refused and max(snap["batching"]["calls_per_chunk"]) <= 125
    assert sum(snap["batching"]["calls_per_chunk"]) == 2000


def test_the_gas_budget_sizes_the_chunks(chain, tmp_path, monkeypatch) -> None:
    extra = "    rpc_limits: {call_gas_max: 2500000}\n"
    _, snap = _snapshot(tmp_path, chain, chain.url, monkeypatch, ACCOUNTS[:1000], chain_extra=extra)
    assert snap["batching"]["calls_per_chunk"] == [100] * 10
    assert snap["batching"]["limits"]["call_gas_max"] == 2_500_000


def test_a_refusal_is_not_a_reason_to_fail_over(chain, tmp_path, monkeypatch, reference) -> None:
    strict, spare = RpcProxy(chain.url, body_max=200_000), RpcProxy(chain.url)
    try:  # the strict endpoint first in failover order, a spare after it
        out, snap = _snapshot(tmp_path, chain, spare.url, monkeypatch, ACCOUNTS, chain_extra=GENEROUS,
                              extra_rpc={"BG_TEST_RPC_STRICT": strict.url})
    finally:
        strict.close()
        spare.close()
    assert _values(snap) == _values(reference)
    assert strict.refused and spare.posts == []
    assert out.endpoint == snap["endpoint"] == "env:BG_TEST_RPC_STRICT#0"
