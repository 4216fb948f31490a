"""The snapshot step's own code against a real anvil: pinning, batching, fallback, failover."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.context import Bindings, StepContext
from breakglass.flows.spec.loader import load, require
from breakglass.flows.steps.snapshot import SnapshotParams, take
from tests.conftest import live_inventory, mined


def _ctx(inventory_path: Path, tmp: Path) -> StepContext:
    return StepContext(incident="INC-test", run_id="run", run_key="INC-test/run/x", mode="live", step_id="snap",
                       inventory=require(load(inventory_path)), bindings=Bindings(), artifacts_dir=tmp / "artifacts",
                       home=tmp, log=logging.getLogger("test"))


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ctx(chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StepContext:
    monkeypatch.setenv("BG_TEST_RPC_URL", chain.url)
    return _ctx(live_inventory(tmp_path, chain), tmp_path)


def test_reads_are_pinned_to_one_block_even_when_the_chain_moves(ctx: StepContext, chain) -> None:
    a = chain.addresses
    with chain.rpc() as rpc:
        pinned = int(rpc.call("eth_blockNumber"), 16)
        before = int(rpc.call("eth_getBalance", [a["fixture:user"], hex(pinned)]), 16)
        mined(rpc, {"from": a["fixture:user"], "to": a["fixture:bob"], "value": hex(10**18)})
        rpc.call("evm_mine")
        out = take(ctx, SnapshotParams(chain="ethereum", block=pinned, balances={"accounts": [a["fixture:user"]]}))
        now = int(rpc.call("eth_getBalance", [a["fixture:user"], "latest"]), 16)
    snap = json.loads((ctx.home / out.artifact).read_text())
    assert out.block_number == pinned
    assert int(snap["balances"][0]["raw"]) == before
    assert now < before - 10**18


def test_a_thousand_balances_cost_two_round_trips(ctx: StepContext, chain) -> None:
    accounts = [f"0x{i:040x}" for i in range(1, 1001)]
    out = take(ctx, SnapshotParams(chain="ethereum", balances={"accounts": accounts, "tokens": ["token"]}))
    assert out.reads == 1000 and out.failed_reads == 0
    assert out.round_trips == 2


def test_without_multicall_it_falls_back_to_json_rpc_batches(chain, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BG_TEST_RPC_URL", chain.url)
    ctx = _ctx(live_inventory(tmp_path, chain, multicall=False), tmp_path)
    a = chain.addresses
    out = take(ctx, SnapshotParams(chain="ethereum", balances={"accounts": [a["fixture:attacker"], "vault"], "tokens": ["native", "token"]},
                                   paused=["vault"], storage=[{"contract": "vault", "slot": "0x0"}]))
    snap = json.loads((ctx.home / out.artifact).read_text())
    assert snap["method"] == "json-rpc-batch"
    assert out.failed_reads == 0 and out.round_trips <= 3
    assert {(b["ref"], b["token"]) for b in snap["balances"]} == {(a["fixture:attacker"], "native"), (a["fixture:attacker"], "token"),
                                                                  ("vault", "native"), ("vault", "token")}
    assert snap["storage"][0]["value"].startswith("0x")


def test_failed_reads_are_recorded_not_hidden(ctx: StepContext, chain) -> None:
    out = take(ctx, SnapshotParams(chain="ethereum", calls=[{"contract": "vault", "signature": "doesNotExist()(uint256)"}]))
    snap = json.loads((ctx.home / out.artifact).read_text())
    assert out.failed_reads == 1
    assert snap["calls"][0]["error"] == "reverted"


def test_wrong_chain_id_is_a_clear_error(chain, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BG_TEST_RPC_URL", chain.url)
    path = live_inventory(tmp_path, chain)
    path.write_text(path.read_text().replace("chain_id: 31337", "chain_id: 1"))
    with pytest.raises(BreakglassError, match="answers chain id 31337, the inventory says 1"):
        take(_ctx(path, tmp_path), SnapshotParams(chain="ethereum", paused=["vault"]))


def test_failover_names_the_endpoint_by_env_var_never_by_url(chain, tmp_path: Path, monkeypatch) -> None:
    dead = f"http://127.0.0.1:{_dead_port()}/?apikey=sekrit-token-123"
    monkeypatch.setenv("BG_TEST_RPC_DEAD", dead)
    monkeypatch.setenv("BG_TEST_RPC_URL", chain.url)
    ctx = _ctx(live_inventory(tmp_path, chain, extra_rpc=["BG_TEST_RPC_DEAD"]), tmp_path)
    out = take(ctx, SnapshotParams(chain="ethereum", paused=["vault"]))
    assert out.endpoint == "env:BG_TEST_RPC_URL#1"
    assert "sekrit" not in (ctx.home / out.artifact).read_text() and "sekrit" not in out.model_dump_json()


def test_all_endpoints_down_says_which_without_urls(chain, tmp_path: Path, monkeypatch) -> None:
    from breakglass.flows.run import context

    monkeypatch.setenv("BG_TEST_RPC_URL", f"http://127.0.0.1:{_dead_port()}/v2/sekrit-key")
    # the message, not the 40 s of riding out an outage (tests/flows/test_recovery.py rides one out)
    monkeypatch.setattr(context, "RPC_PATIENCE", 1.0)
    ctx = _ctx(live_inventory(tmp_path, chain), tmp_path)
    with pytest.raises(Exception) as info:
        take(ctx, SnapshotParams(chain="ethereum", paused=["vault"]))
    assert "env:BG_TEST_RPC_URL#0: ConnectError" in str(info.value)
    assert "sekrit" not in str(info.value)


def test_missing_rpc_variable_is_named(chain, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BG_TEST_RPC_URL", raising=False)
    ctx = _ctx(live_inventory(tmp_path, chain), tmp_path)
    with pytest.raises(BreakglassError, match="environment variable BG_TEST_RPC_URL is not set"):
        take(ctx, SnapshotParams(chain="ethereum", paused=["vault"]))
