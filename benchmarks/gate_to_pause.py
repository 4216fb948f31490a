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
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from _common import ROOT, isolate, receipt, shut_down, until  # noqa: E402

HOME = isolate("bench-gate-")

from _gated import broadcast_of, files, key, protocols, summary  # noqa: E402

from breakglass.flows.gates import voting  # noqa: E402
from breakglass.flows.run import prefect_server as server  # noqa: E402
from breakglass.integrations.chain import anvil  # noqa: E402
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc  # noqa: E402

TRIALS = 50
BLOCK_TIME = 2.0
TARGET = {"first_block_fraction_min": 0.9}


def main() -> None:
    home = HOME
    node = anvil.start(log_dir=home / "anvil")  # automine for the setup, then 2 s interval mining
    runner = None
    try:
        rpc = JsonRpc([Endpoint("bench", node.url)])
        deployed, bare_raw = protocols(rpc, TRIALS)
        inventory, playbook = files(home, deployed, BLOCK_TIME)
        env = {**os.environ, "BENCH_RPC_URL": node.url, "BENCH_GUARDIAN_KEY": key("guardian").key.to_0x_hex()}
        api = server.start(home)
        os.environ.update(api.settings())
        env.update(api.settings())
        cli = [sys.executable, "-m", "breakglass.flows.cli.main"]
        subprocess.run([*cli, "prepare", str(playbook), "--inventory", str(inventory)], env=env, check=True,
                       capture_output=True, cwd=ROOT)
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
                    sent[i] = (own.call("eth_sendRawTransaction", ["0x" + bare_raw[i].hex()]), time.time())

        threading.Thread(target=bare_script, daemon=True).start()
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
            ours_hash, ours_at = broadcast_of(gate.handle.dir, f"pause-{i}")
            while i not in sent:
                time.sleep(0.001)
            bare_hash, bare_at = sent[i]
            rows.append({"ours_block": receipt(rpc, ours_hash) - block_at_vote,
                         "bare_block": receipt(rpc, bare_hash) - block_at_vote,
                         "ours_ms": (ours_at - t0) * 1000, "bare_ms": (bare_at - t0) * 1000})
            print(f"trial {i}: breakglass +{rows[-1]['ours_ms']:.0f} ms, block +{rows[-1]['ours_block']}; "
                  f"bare +{rows[-1]['bare_ms']:.1f} ms, block +{rows[-1]['bare_block']}", file=sys.stderr)
        trial_box["i"] = -1
        signal.set()
        runner.wait(timeout=120)
        if runner.returncode != 0:
            raise SystemExit(f"the run failed:\n{(home / 'runner.log').read_text()[-2000:]}")
        metrics = summary(rows, TRIALS, BLOCK_TIME)
        met = metrics["first_block_fraction"] >= TARGET["first_block_fraction_min"]
        print(f"first block after the vote in {metrics['first_block_fraction']:.0%} of trials; vote to broadcast "
              f"{metrics['to_broadcast_median_ms']} ms median", file=sys.stderr)
        print(json.dumps({"benchmark": "gate_to_pause", "metrics": metrics, "targets": TARGET, "met": met}))
    finally:
        shut_down(home, node, runner)


def _open_gate(home: Path, incident: str, step: str, runner: subprocess.Popen[str]) -> voting.Gate:
    def locate() -> voting.Gate | None:
        try:
            return voting.locate(home, incident, step)
        except Exception:  # noqa: BLE001 - not open yet
            return None

    return until(locate, runner, home / "runner.log", 60, f"{step} to open")


if __name__ == "__main__":
    main()
