"""Prepared pause through the run entry point against a bare pre-signed broadcast, on anvil with
250 ms blocks (Arbitrum-like). 100 interleaved trials: in each, both start at the same moment,
breakglass on one fixture vault and the bare web3 script on another; we compare the blocks
their pauses land in.

Run: .venv/bin/python benchmarks/fast_pause.py    (last stdout line is the JSON result)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from _common import inventory_head, isolate, receipt  # noqa: E402

isolate("bench-fast-pause-")

from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402
from web3 import Web3  # noqa: E402

from breakglass.flows.effects import fixture, prepared  # noqa: E402
from breakglass.flows.effects.unlock import ANVIL_MNEMONIC, unlock  # noqa: E402
from breakglass.flows.engine import entry  # noqa: E402
from breakglass.flows.run.home import home  # noqa: E402
from breakglass.flows.spec.validate import load_playbook  # noqa: E402
from breakglass.integrations.chain import abi, anvil  # noqa: E402
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc  # noqa: E402

TRIALS = 100
BLOCK_TIME = 0.25
TARGET = {"same_block_fraction_min": 0.9}
PAUSE = abi.parse("pause()").encode()
UNPAUSE = abi.parse("unpause()").encode()


def main() -> None:
    tmp = Path(os.environ["BREAKGLASS_HOME"])
    node = anvil.start(block_time=BLOCK_TIME, log_dir=tmp / "anvil")
    try:
        rpc = JsonRpc([Endpoint("bench", node.url)])
        ours = fixture.deploy(rpc, attack=False, library=False).addresses
        theirs = fixture.deploy(rpc, attack=False, library=False).addresses
        admin, guardian = ours["fixture:admin"], ours["fixture:guardian"]
        Account.enable_unaudited_hdwallet_features()
        bare_key = Account.from_mnemonic(ANVIL_MNEMONIC, account_path="m/44'/60'/0'/0/6")  # backup-guardian
        grant = abi.parse("grantRole(bytes32,address)").encode([keccak(text="GUARDIAN_ROLE"), bare_key.address])
        _mine(rpc, admin, theirs["fixture:vault"], grant)

        inventory_path = tmp / "inventory.yaml"
        inventory_path.write_text(inventory_head("bench", BLOCK_TIME, ours["fixture:multicall"],
                                                  "    fees: {max_fee_gwei: 200, priority_fee_gwei: 2}\n") + f"""contracts:
  vault: {{chain: ethereum, address: "{ours['fixture:vault']}", guardian: guardian}}
signers:
  guardian: {{kind: env, env: BENCH_GUARDIAN_KEY, address: "{guardian}"}}
""")
        playbook_path = tmp / "fast.yaml"
        playbook_path.write_text("""apiVersion: breakglass/v1
kind: Playbook
name: fast-pause
description: a prepared pause, first
severity: critical
inputs:
  trial: {type: int}
steps:
  - {id: pause, kind: pause, with: {contracts: [vault], signer: guardian, prepared: true}}
""")
        os.environ["BENCH_RPC_URL"] = node.url
        os.environ["BENCH_GUARDIAN_KEY"] = Account.from_mnemonic(ANVIL_MNEMONIC, account_path="m/44'/60'/0'/0/2").key.to_0x_hex()
        playbook, inventory = load_playbook(playbook_path, inventory_path)
        keys = unlock(inventory, {"guardian"})
        w3 = Web3(Web3.HTTPProvider(node.url))

        same, extra_ms, ours_ms, bare_ms, gaps = 0, [], [], [], []
        for trial in range(TRIALS):
            for vault in (ours["fixture:vault"], theirs["fixture:vault"]):
                if _paused(rpc, vault):
                    _mine(rpc, admin, vault, UNPAUSE)
            prepared.build(playbook, inventory, keys, home())
            nonce = w3.eth.get_transaction_count(bare_key.address, "pending")
            raw = bare_key.sign_transaction({"type": 2, "chainId": 31337, "nonce": nonce, "to": theirs["fixture:vault"],
                                             "value": 0, "data": "0x" + PAUSE.hex(), "gas": 100_000,
                                             "maxFeePerGas": 200 * 10**9, "maxPriorityFeePerGas": 2 * 10**9})
            time.sleep((trial % 10) * BLOCK_TIME / 10)  # spread start times across the block interval
            timing = _race(playbook_path, inventory_path, trial, w3, raw.raw_transaction)
            if not timing.get("hash"):
                raise SystemExit(f"trial {trial}: the prepared pause was not sent")
            a = receipt(rpc, timing["hash"])
            b = receipt(rpc, timing["bare_hash"])
            same += a == b
            gaps.append(a - b)
            ours_ms.append(timing["ours"] * 1000)
            bare_ms.append(timing["bare"] * 1000)
            extra_ms.append((timing["ours"] - timing["bare"]) * 1000)
        metrics = {
            "trials": TRIALS,
            "block_time_ms": BLOCK_TIME * 1000,
            "same_block_fraction": round(same / TRIALS, 3),
            "later_block_trials": sum(1 for g in gaps if g > 0),
            "earlier_block_trials": sum(1 for g in gaps if g < 0),
            "median_extra_latency_ms": round(statistics.median(extra_ms), 2),
            "p90_extra_latency_ms": round(sorted(extra_ms)[int(TRIALS * 0.9) - 1], 2),
            "breakglass_call_to_broadcast_median_ms": round(statistics.median(ours_ms), 2),
            "bare_broadcast_median_ms": round(statistics.median(bare_ms), 2),
        }
        met = metrics["same_block_fraction"] >= TARGET["same_block_fraction_min"]
        print(f"same block in {same}/{TRIALS} trials; breakglass adds {metrics['median_extra_latency_ms']} ms (median)",
              file=sys.stderr)
        print(json.dumps({"benchmark": "fast_pause", "metrics": metrics, "targets": TARGET, "met": met}))
    finally:
        node.stop()


def _race(playbook_path: Path, inventory_path: Path, trial: int, w3: Web3, raw: bytes) -> dict[str, float | str | None]:
    """Start breakglass's run entry point and the bare broadcast at the same moment."""
    barrier = threading.Barrier(2)
    timing: dict[str, float | str | None] = {}

    def breakglass_side() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        _, report = entry.begin(playbook_path=playbook_path, inventory_path=inventory_path,
                                given={"trial": str(trial)}, incident=f"BENCH-{trial}", home=home())
        timing["ours"] = time.perf_counter() - t0
        timing["hash"] = report["sent"][0]["hash"] if report and report["sent"] else None

    def bare_side() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        timing["bare_hash"] = w3.eth.send_raw_transaction(raw).to_0x_hex()
        timing["bare"] = time.perf_counter() - t0

    threads = [threading.Thread(target=breakglass_side), threading.Thread(target=bare_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return timing


def _paused(rpc: JsonRpc, vault: str) -> bool:
    return rpc.call("eth_call", [{"to": vault, "data": "0x5c975abb"}, "latest"])[-1] == "1"


def _mine(rpc: JsonRpc, sender: str, to: str, data: bytes) -> None:
    tx_hash = rpc.call("eth_sendTransaction", [{"from": sender, "to": to, "data": "0x" + data.hex()}])
    receipt(rpc, tx_hash)



if __name__ == "__main__":
    main()
