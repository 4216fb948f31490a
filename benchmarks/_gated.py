"""Shared by the gate benchmarks: a chain with one fixture protocol per trial, a playbook of gates each
in front of a prepared pause of its own vault, and a pre-signed pause per trial for the bare script."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import inventory_head, receipt
from eth_account import Account
from eth_utils import keccak

from breakglass.flows.effects import fixture
from breakglass.flows.effects.fixture import ACCOUNTS
from breakglass.flows.effects.unlock import ANVIL_MNEMONIC
from breakglass.integrations.chain import abi
from breakglass.integrations.chain.rpc import JsonRpc

PAUSE = abi.parse("pause()").encode()
SLACK_IDS = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL"}


def key(name: str) -> Any:
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{ACCOUNTS[name]}")


def protocols(rpc: JsonRpc, trials: int) -> tuple[list[dict[str, str]], list[Any]]:
    """One protocol per trial (automine), and the bare script's pre-signed pause of each bridge."""
    deployed = [fixture.deploy(rpc, attack=False, library=False).addresses for _ in range(trials)]
    bare = key("backup-guardian")
    admin = deployed[0]["fixture:admin"]
    for p in deployed:  # the bare script's key may pause every bridge
        data = abi.parse("grantRole(bytes32,address)").encode([keccak(text="GUARDIAN_ROLE"), bare.address])
        receipt(rpc, rpc.call("eth_sendTransaction", [{"from": admin, "to": p["fixture:bridge"], "data": "0x" + data.hex()}]))
    nonce = int(rpc.call("eth_getTransactionCount", [bare.address, "pending"]), 16)
    raws = [bare.sign_transaction({"type": 2, "chainId": 31337, "nonce": nonce + i, "to": p["fixture:bridge"], "value": 0,
                                   "data": "0x" + PAUSE.hex(), "gas": 100_000, "maxFeePerGas": 500 * 10**9,
                                   "maxPriorityFeePerGas": 2 * 10**9}).raw_transaction for i, p in enumerate(deployed)]
    return deployed, raws


def files(home: Path, deployed: list[dict[str, str]], block_time: float, extra: str = "",
          channels: str = "[signed]") -> tuple[Path, Path]:
    a = deployed[0]
    contracts = "".join(f'  vault-{i}: {{chain: ethereum, address: "{p["fixture:vault"]}", guardian: guardian}}\n'
                        for i, p in enumerate(deployed))
    people = "".join(f'    {n}: {{address: "{a["fixture:" + n]}", slack: {SLACK_IDS[n]}}}\n' for n in SLACK_IDS)
    inventory = home / "inventory.yaml"
    inventory.write_text(inventory_head("bench-gate", block_time, a["fixture:multicall"]) + f"""contracts:
{contracts}signers:
  guardian: {{kind: env, env: BENCH_GUARDIAN_KEY, address: "{a['fixture:guardian']}"}}
roster:
  people:
{people}  groups:
    responders: [alice, bob, carol]
{extra}""")
    steps = []
    for i in range(len(deployed)):
        needs = f"[pause-{i - 1}]" if i else "[]"
        steps.append(f"""  - id: gate-{i}
    kind: approval
    needs: {needs}
    with: {{approvers: responders, quorum: 2, exclude_initiator: true, timeout: 5m, on_timeout: abort, channels: {channels}}}
  - id: pause-{i}
    kind: pause
    needs: [gate-{i}]
    timeout: 60s
    with: {{contracts: [vault-{i}], signer: guardian, prepared: true}}
""")
    books = home / "books"
    books.mkdir(exist_ok=True)
    playbook = books / "gated-pauses.yaml"
    playbook.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: gated-pauses\ndescription: benchmark\n"
                        "severity: critical\nsteps:\n" + "".join(steps))
    return inventory, playbook


def broadcast_of(run_dir: Path, step: str) -> tuple[str, float]:
    """The guarded pause's hash and when the runner broadcast it (its journal entry)."""
    deadline = time.monotonic() + 30
    journal = run_dir / "journal.jsonl"
    while time.monotonic() < deadline:
        if journal.exists():
            for line in journal.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # the runner is writing this line right now: read it on the next pass
                    break
                if entry["event"] == "broadcast" and f"/{step}/" in entry["intent"]:
                    return entry["hash"], datetime.fromisoformat(entry["at"].replace("Z", "+00:00")).timestamp()
        time.sleep(0.005)
    raise SystemExit(f"{step} was not broadcast")


def summary(rows: list[dict[str, float]], trials: int, block_time: float) -> dict[str, Any]:
    import statistics

    ours = [r["ours_ms"] for r in rows]
    bare = [r["bare_ms"] for r in rows]
    first = sum(r["ours_block"] == 1 for r in rows) / trials
    bare_first = sum(r["bare_block"] == 1 for r in rows) / trials
    return {
        "trials": trials, "block_time_ms": block_time * 1000,
        "first_block_fraction": round(first, 3), "bare_first_block_fraction": round(bare_first, 3),
        "first_block_ratio_vs_bare": round(first / max(1e-9, bare_first), 3),
        "to_broadcast_median_ms": round(statistics.median(ours), 1),
        "to_broadcast_p90_ms": round(sorted(ours)[int(trials * 0.9) - 1], 1),
        "bare_to_broadcast_median_ms": round(statistics.median(bare), 2),
        "median_extra_latency_ms": round(statistics.median(o - b for o, b in zip(ours, bare, strict=True)), 1),
    }
