"""From the quorum-completing signed vote to the guarded pause on chain, on anvil with 2 s blocks
(Base-like), against a bare script that broadcasts a pre-signed pause on the same signal.

One `breakglass run` process (the runner, as in an incident) works through 50 gates in a row:
each is a 2-of-3 signed gate with exclude_initiator in front of a prepared pause of its own
vault. For each trial the benchmark casts the first approval, waits a random part of a block
interval, then at one moment signals the bare script (which pauses a bridge from another key)
and submits the second signed vote through the Prefect API exactly as `breakglass approve` does.
We compare the blocks both pauses land in with the block current at the vote.

Run: .venv/bin/python benchmarks/gate_to_pause.py    (last stdout line is the JSON result)
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["BREAKGLASS_HOME"] = tempfile.mkdtemp(prefix="bench-gate-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
for _name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING"):
    os.environ.pop(_name, None)

from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402

from breakglass.flows import fixture, server, voting  # noqa: E402
from breakglass.flows.fixture import ACCOUNTS  # noqa: E402
from breakglass.flows.signers import ANVIL_MNEMONIC  # noqa: E402
from breakglass.integrations.chain import abi, anvil  # noqa: E402
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc  # noqa: E402

TRIALS = 50
BLOCK_TIME = 2.0
TARGET = {"first_block_fraction_min": 0.9}
PAUSE = abi.parse("pause()").encode()


def key(name: str) -> Account:
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{ACCOUNTS[name]}")


def main() -> None:
    home = Path(os.environ["BREAKGLASS_HOME"])
    node = anvil.start(log_dir=home / "anvil")  # automine for the setup, then 2 s interval mining
    runner = None
    try:
        rpc = JsonRpc([Endpoint("bench", node.url)])
        protocols = [fixture.deploy(rpc, attack=False).addresses for _ in range(TRIALS)]
        a = protocols[0]
        bare = key("backup-guardian")
        for p in protocols:  # the bare script's key may pause every bridge
            data = abi.parse("grantRole(bytes32,address)").encode([keccak(text="GUARDIAN_ROLE"), bare.address])
            _receipt(rpc, rpc.call("eth_sendTransaction", [{"from": a["fixture:admin"], "to": p["fixture:bridge"],
                                                            "data": "0x" + data.hex()}]))
        inventory, playbook = _files(home, protocols)
        env = {**os.environ, "BENCH_RPC_URL": node.url, "BENCH_GUARDIAN_KEY": key("guardian").key.to_0x_hex()}
        api = server.start(home)
        os.environ.update(api.settings())
        env.update(api.settings())
        cli = [sys.executable, "-m", "breakglass.flows.cli"]
        subprocess.run([*cli, "prepare", str(playbook), "--inventory", str(inventory)], env=env, check=True,
                       capture_output=True, cwd=ROOT)
        nonce = int(rpc.call("eth_getTransactionCount", [bare.address, "pending"]), 16)
        bare_raw = [bare.sign_transaction({"type": 2, "chainId": 31337, "nonce": nonce + i, "to": p["fixture:bridge"],
                                           "value": 0, "data": "0x" + PAUSE.hex(), "gas": 100_000,
                                           "maxFeePerGas": 500 * 10**9, "maxPriorityFeePerGas": 2 * 10**9})
                    for i, p in enumerate(protocols)]
        rpc.call("evm_setAutomine", [False])
        rpc.call("evm_setIntervalMining", [int(BLOCK_TIME)])

        incident = f"BENCH-GATE-{os.getpid()}"
        log = open(home / "runner.log", "w")  # noqa: SIM115 - a pipe nobody reads would block the runner
        runner = subprocess.Popen([*cli, "run", str(playbook), "--inventory", str(inventory), "--yes", "--as", "alice",
                                   "--incident", incident, "--json"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=log, text=True)
        signal, sent = threading.Event(), {}
        trial_box = {"i": -1}

        def bare_script() -> None:  # the comparison: broadcast a pre-signed pause the moment the signal comes
            with JsonRpc([Endpoint("bare", node.url)]) as own:
                own.call("eth_chainId")
                while True:
                    signal.wait()
                    signal.clear()
                    i = trial_box["i"]
                    if i < 0:
                        return
                    sent[i] = (own.call("eth_sendRawTransaction", ["0x" + bare_raw[i].raw_transaction.hex()]), time.time())

        thread = threading.Thread(target=bare_script, daemon=True)
        thread.start()
        rng = random.Random(7)
        rows = []
        for i in range(TRIALS):
            step = f"gate-{i}"
            gate = _open_gate(home, incident, step, runner)
            first = voting.make_vote(gate, step, "bob", reject=False, reason="", channel="signed", account=key("bob"))
            voting.submit(api, gate, first)
            if voting.verdict(gate, first.id, 30) is None:
                raise SystemExit(f"trial {i}: the first vote was not judged")
            last = voting.make_vote(gate, step, "carol", reject=False, reason="", channel="signed", account=key("carol"))
            time.sleep(rng.uniform(0, BLOCK_TIME))  # sample the whole block interval
            block_at_vote = int(rpc.call("eth_blockNumber"), 16)
            trial_box["i"] = i
            t0 = time.time()
            signal.set()
            voting.submit(api, gate, last)
            ours_hash, ours_at = _broadcast(gate.handle.dir, f"pause-{i}")
            while i not in sent:
                time.sleep(0.001)
            bare_hash, bare_at = sent[i]
            rows.append({"ours_block": _receipt(rpc, ours_hash) - block_at_vote,
                         "bare_block": _receipt(rpc, bare_hash) - block_at_vote,
                         "ours_ms": (ours_at - t0) * 1000, "bare_ms": (bare_at - t0) * 1000})
            print(f"trial {i}: breakglass +{rows[-1]['ours_ms']:.0f} ms, block +{rows[-1]['ours_block']}; "
                  f"bare +{rows[-1]['bare_ms']:.1f} ms, block +{rows[-1]['bare_block']}", file=sys.stderr)
        trial_box["i"] = -1
        signal.set()
        runner.wait(timeout=120)
        if runner.returncode != 0:
            raise SystemExit(f"the run failed:\n{(home / 'runner.log').read_text()[-2000:]}")
        ours_ms = [r["ours_ms"] for r in rows]
        bare_ms = [r["bare_ms"] for r in rows]
        first_block = sum(r["ours_block"] == 1 for r in rows) / TRIALS
        metrics = {
            "trials": TRIALS,
            "block_time_ms": BLOCK_TIME * 1000,
            "first_block_fraction": round(first_block, 3),
            "bare_first_block_fraction": round(sum(r["bare_block"] == 1 for r in rows) / TRIALS, 3),
            "first_block_ratio_vs_bare": round(first_block / max(1e-9, sum(r["bare_block"] == 1 for r in rows) / TRIALS), 3),
            "vote_to_broadcast_median_ms": round(statistics.median(ours_ms), 1),
            "vote_to_broadcast_p90_ms": round(sorted(ours_ms)[int(TRIALS * 0.9) - 1], 1),
            "bare_signal_to_broadcast_median_ms": round(statistics.median(bare_ms), 2),
            "median_extra_latency_ms": round(statistics.median(o - b for o, b in zip(ours_ms, bare_ms, strict=True)), 1),
        }
        met = metrics["first_block_fraction"] >= TARGET["first_block_fraction_min"]
        print(f"first block after the vote in {first_block:.0%} of trials; vote to broadcast "
              f"{metrics['vote_to_broadcast_median_ms']} ms median", file=sys.stderr)
        print(json.dumps({"benchmark": "gate_to_pause", "metrics": metrics, "targets": TARGET, "met": met}))
    finally:
        if runner is not None and runner.poll() is None:
            runner.kill()
        server.stop(home)
        node.stop()


def _open_gate(home: Path, incident: str, step: str, runner: subprocess.Popen[str]) -> voting.Gate:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            raise SystemExit(f"the runner stopped early:\n{(home / 'runner.log').read_text()[-2000:]}")
        try:
            return voting.locate(home, incident, step)
        except Exception:  # noqa: BLE001 - not open yet
            time.sleep(0.01)
    raise SystemExit(f"{step} did not open")


def _broadcast(run_dir: Path, step: str) -> tuple[str, float]:
    """The guarded pause's hash and when the runner broadcast it (its journal entry)."""
    deadline = time.monotonic() + 30
    journal = run_dir / "journal.jsonl"
    while time.monotonic() < deadline:
        if journal.exists():
            for line in journal.read_text().splitlines():
                entry = json.loads(line)
                if entry["event"] == "broadcast" and f"/{step}/" in entry["intent"]:
                    return entry["hash"], datetime.fromisoformat(entry["at"].replace("Z", "+00:00")).timestamp()
        time.sleep(0.005)
    raise SystemExit(f"{step} was not broadcast")


def _receipt(rpc: JsonRpc, tx_hash: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        receipt = rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return int(receipt["blockNumber"], 16)
        time.sleep(0.01)
    raise SystemExit(f"{tx_hash} was not mined")


def _files(home: Path, protocols: list[dict[str, str]]) -> tuple[Path, Path]:
    a = protocols[0]
    contracts = "".join(f'  vault-{i}: {{chain: ethereum, address: "{p["fixture:vault"]}", guardian: guardian}}\n'
                        for i, p in enumerate(protocols))
    inventory = home / "inventory.yaml"
    inventory.write_text(f"""apiVersion: breakglass/v1
kind: Inventory
name: bench-gate
chains:
  ethereum:
    chain_id: 31337
    block_time: {BLOCK_TIME:g}s
    rpc: [{{env: BENCH_RPC_URL}}]
    multicall3: "{a['fixture:multicall']}"
contracts:
{contracts}signers:
  guardian: {{kind: env, env: BENCH_GUARDIAN_KEY, address: "{a['fixture:guardian']}"}}
roster:
  people:
    alice: {{address: "{a['fixture:alice']}"}}
    bob: {{address: "{a['fixture:bob']}"}}
    carol: {{address: "{a['fixture:carol']}"}}
  groups:
    responders: [alice, bob, carol]
""")
    steps = []
    for i in range(TRIALS):
        needs = f"[pause-{i - 1}]" if i else "[]"
        steps.append(f"""  - id: gate-{i}
    kind: approval
    needs: {needs}
    with: {{approvers: responders, quorum: 2, exclude_initiator: true, timeout: 5m, on_timeout: abort, channels: [signed]}}
  - id: pause-{i}
    kind: pause
    needs: [gate-{i}]
    timeout: 60s
    with: {{contracts: [vault-{i}], signer: guardian, prepared: true}}
""")
    playbook = home / "gated-pauses.yaml"
    playbook.write_text("apiVersion: breakglass/v1\nkind: Playbook\nname: gated-pauses\ndescription: benchmark\n"
                        "severity: critical\nsteps:\n" + "".join(steps))
    return inventory, playbook


if __name__ == "__main__":
    main()
