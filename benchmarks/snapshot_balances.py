"""Snapshot of 1,000 ERC-20 balances: the snapshot step's own code against a naive web3 loop and
a raw JSON-RPC batch (the floor), side by side on the same anvil in one run.

Run: .venv/bin/python benchmarks/snapshot_balances.py    (last stdout line is the JSON result)
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from breakglass.flows import fixture  # noqa: E402
from breakglass.flows.context import Bindings, StepContext  # noqa: E402
from breakglass.flows.loader import load, require  # noqa: E402
from breakglass.flows.steps.snapshot import BALANCE_OF, SnapshotParams, take  # noqa: E402
from breakglass.integrations.chain import anvil  # noqa: E402
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc  # noqa: E402

N = 1000
ROUNDS = 5
TARGETS = {"speedup_vs_naive_min": 50.0, "ratio_to_raw_batch_max": 2.0, "round_trips_max": 5}


def _inventory(tmp: Path, addresses: dict[str, str]) -> Path:
    path = tmp / "bench.yaml"
    path.write_text("""apiVersion: breakglass/v1
kind: Inventory
name: bench
mode: drill
chains:
  ethereum: {chain_id: 31337, block_time: 1s, rpc: [{fixture: anvil}], multicall3: "fixture:multicall"}
contracts:
  token: {chain: ethereum, address: "fixture:token"}
""")
    return path


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    node = anvil.start(log_dir=tmp)
    try:
        with JsonRpc([Endpoint("bench", node.url)]) as rpc:
            deployed = fixture.deploy(rpc, attack=False, library=False)
            block = int(rpc.call("eth_blockNumber"), 16)
        token = deployed.addresses["fixture:token"]
        accounts = [Web3.to_checksum_address(f"0x{i:040x}") for i in range(1, N + 1)]
        accounts[:10] = [deployed.addresses[f"fixture:{n}"] for n in list(fixture.ACCOUNTS)[:10]]
        inventory = require(load(_inventory(tmp, deployed.addresses)))
        bindings = Bindings(addresses=deployed.placeholder_values(), rpc={"ethereum": node.url})
        params = SnapshotParams(chain="ethereum", block=block, balances={"accounts": accounts, "tokens": ["token"]})

        w3 = Web3(Web3.HTTPProvider(node.url))
        contract = w3.eth.contract(address=token, abi=fixture.artifact("FixtureToken")["abi"])
        http = httpx.Client()
        payload = [{"jsonrpc": "2.0", "id": i, "method": "eth_call",
                    "params": [{"to": token, "data": "0x" + BALANCE_OF.encode([a]).hex()}, hex(block)]}
                   for i, a in enumerate(accounts)]

        def ours() -> tuple[float, list[int], int]:
            ctx = StepContext(incident="BENCH", run_id="bench", run_key="BENCH/bench/x", mode="drill", step_id="snap",
                              inventory=inventory, bindings=bindings, artifacts_dir=tmp / "artifacts", home=tmp,
                              log=logging.getLogger("bench"))
            started = time.perf_counter()
            out = take(ctx, params)
            elapsed = time.perf_counter() - started
            ctx.close()
            data = json.loads((tmp / out.artifact).read_text())
            return elapsed, [int(b["raw"]) for b in data["balances"]], out.round_trips

        def naive() -> tuple[float, list[int]]:
            started = time.perf_counter()
            values = [contract.functions.balanceOf(a).call(block_identifier=block) for a in accounts]
            return time.perf_counter() - started, values

        def raw() -> tuple[float, list[int]]:
            started = time.perf_counter()
            answer = http.post(node.url, json=payload).json()
            values = [int(item["result"], 16) for item in sorted(answer, key=lambda x: x["id"])]
            return time.perf_counter() - started, values

        ours(), raw()  # warm up connections and caches
        times: dict[str, list[float]] = {"ours": [], "naive": [], "raw": []}
        trips = []
        for _ in range(ROUNDS):  # interleaved, so drift hits all three alike
            t, ours_values, n_trips = ours()
            times["ours"].append(t)
            trips.append(n_trips)
            t, raw_values = raw()
            times["raw"].append(t)
            if len(times["naive"]) < 3:
                t, naive_values = naive()
                times["naive"].append(t)
        assert ours_values == raw_values == naive_values, "the three methods disagree"
        med = {k: statistics.median(v) for k, v in times.items()}
        metrics = {
            "balances": N,
            "ours_ms": round(med["ours"] * 1000, 2),
            "naive_loop_ms": round(med["naive"] * 1000, 2),
            "raw_batch_ms": round(med["raw"] * 1000, 2),
            "speedup_vs_naive": round(med["naive"] / med["ours"], 1),
            "ratio_to_raw_batch": round(med["ours"] / med["raw"], 2),
            "round_trips": max(trips),
            "naive_round_trips": N,
            "raw_round_trips": 1,
        }
        met = (metrics["speedup_vs_naive"] >= TARGETS["speedup_vs_naive_min"]
               and metrics["ratio_to_raw_batch"] <= TARGETS["ratio_to_raw_batch_max"]
               and metrics["round_trips"] <= TARGETS["round_trips_max"])
        print(f"snapshot of {N} balances: ours {metrics['ours_ms']} ms, naive {metrics['naive_loop_ms']} ms, "
              f"raw batch {metrics['raw_batch_ms']} ms", file=sys.stderr)
        print(json.dumps({"benchmark": "snapshot_balances", "metrics": metrics, "targets": TARGETS, "met": met}))
    finally:
        node.stop()


if __name__ == "__main__":
    main()
