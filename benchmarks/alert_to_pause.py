"""From a signed alert POSTed to `serve` to a prepared pause on chain, against a bare script: a minimal
HTTP server that receives the same request and broadcasts a pre-signed pause. Anvil with 250 ms blocks.

100 interleaved trials: in each, the same alert goes to `serve` (which routes it to a playbook whose
first step is a prepared pause of one vault) and to the bare server (which pauses another vault from
another key) at the same moment; we count the trials where both land in the same block. Then intake
throughput: accepted authenticated alerts per second against the same server's `/healthz`, both driven
by autocannon (a Node load generator, pinned in package.json) in a separate process, 64 connections.

Run: .venv/bin/python benchmarks/alert_to_pause.py    (last stdout line is the JSON result)
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from _common import ROOT, Bare, inventory_head, isolate, race, receipt, shut_down, start_serve, until  # noqa: E402

HOME = isolate("bench-alert-")

import httpx  # noqa: E402
from _gated import PAUSE, key  # noqa: E402

from breakglass.flows.effects import fixture, prepared  # noqa: E402
from breakglass.flows.run import prefect_server as server  # noqa: E402
from breakglass.flows.spec.validate import load_inventory  # noqa: E402
from breakglass.integrations.chain import abi, anvil  # noqa: E402
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc  # noqa: E402

TRIALS = 100
BLOCK_TIME = 0.25
TOKEN = "bench-alert-token"
TARGET = {"same_block_fraction_min": 0.9, "intake_vs_healthz_min": 0.5}
UNPAUSE = abi.parse("unpause()").encode()


def main() -> None:
    home = HOME
    node = anvil.start(block_time=BLOCK_TIME, log_dir=home / "anvil")
    serve = None
    try:
        rpc = JsonRpc([Endpoint("bench", node.url)])
        ours = fixture.deploy(rpc, attack=False, library=False).addresses
        theirs = fixture.deploy(rpc, attack=False, library=False).addresses
        bare_key = key("backup-guardian")
        from eth_utils import keccak

        grant = abi.parse("grantRole(bytes32,address)").encode([keccak(text="GUARDIAN_ROLE"), bare_key.address])
        receipt(rpc, rpc.call("eth_sendTransaction", [{"from": ours["fixture:admin"], "to": theirs["fixture:vault"],
                                                       "data": "0x" + grant.hex()}]))
        inventory, books = _files(home, ours)
        api = server.start(home)
        env = {**os.environ, **api.settings(), "BENCH_RPC_URL": node.url, "BENCH_GUARDIAN_KEY": key("guardian").key.to_0x_hex(),
               "BENCH_ALERT_TOKEN": TOKEN}
        serve, base = start_serve(home, inventory, books, env, "--refresh", "0.2")

        inv = load_inventory(inventory)
        raws: dict[int, bytes] = {}
        bare = Bare(node.url, lambda i: raws[i], status=202)  # the comparison: the same request, then a pre-signed pause
        bare_url = bare.url + "alerts/generic"
        ours_client, bare_client = httpx.Client(), httpx.Client()
        rng = random.Random(5)
        guardian = ours["fixture:guardian"]
        same, gaps, ours_ms, bare_ms = 0, [], [], []
        for i in range(TRIALS):
            for vault, sender in ((ours["fixture:vault"], ours["fixture:admin"]), (theirs["fixture:vault"], ours["fixture:admin"])):
                if rpc.call("eth_call", [{"to": vault, "data": "0x5c975abb"}, "latest"])[-1] == "1":
                    receipt(rpc, rpc.call("eth_sendTransaction", [{"from": sender, "to": vault, "data": "0x" + UNPAUSE.hex()}]))
            pending = int(rpc.call("eth_getTransactionCount", [guardian, "pending"]), 16)
            until(lambda pending=pending: [t.nonce for t in prepared.load(home, inv, "alert-pause", "pause")] == [pending],
                   serve, home, 30, "the prepared pause to be re-signed")
            nonce = int(rpc.call("eth_getTransactionCount", [bare_key.address, "pending"]), 16)
            raws[i] = bare_key.sign_transaction({"type": 2, "chainId": 31337, "nonce": nonce, "to": theirs["fixture:vault"],
                                                      "value": 0, "data": "0x" + PAUSE.hex(), "gas": 100_000,
                                                      "maxFeePerGas": 500 * 10**9, "maxPriorityFeePerGas": 2 * 10**9}).raw_transaction
            body = json.dumps({"id": f"trial-{i}-{time.time_ns()}", "title": "vault drained", "severity": "critical",
                               "tx_hash": "0x" + f"{i:064x}"}).encode()
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            time.sleep(rng.uniform(0, BLOCK_TIME))
            bare.trial = i
            stamps = race(body, headers, ours=(ours_client, base + "/alerts/generic"), bare=(bare_client, bare_url))
            ours_hash, ours_at = _fastpath(home, i)
            bare_hash, bare_at = bare.sent[i]
            a, b = receipt(rpc, ours_hash), receipt(rpc, bare_hash)
            same += a == b
            gaps.append(a - b)
            ours_ms.append((ours_at - stamps["ours"]) * 1000)
            bare_ms.append((bare_at - stamps["bare"]) * 1000)
            print(f"trial {i}: breakglass +{ours_ms[-1]:.1f} ms, bare +{bare_ms[-1]:.1f} ms, blocks {a - b:+d}", file=sys.stderr)
        bare.close()
        healthz = _load(base + "/healthz", "healthz")
        intake = _load(base + "/alerts/load", "alert")
        metrics = {
            "trials": TRIALS, "block_time_ms": BLOCK_TIME * 1000, "same_block_fraction": round(same / TRIALS, 3),
            "later_block_trials": sum(1 for g in gaps if g > 0),
            "alert_to_broadcast_median_ms": round(statistics.median(ours_ms), 1),
            "alert_to_broadcast_p90_ms": round(sorted(ours_ms)[int(TRIALS * 0.9) - 1], 1),
            "bare_to_broadcast_median_ms": round(statistics.median(bare_ms), 2),
            "intake_accepted_per_second": round(intake, 1), "healthz_per_second": round(healthz, 1),
            "intake_vs_healthz": round(intake / healthz, 3),
        }
        met = (metrics["same_block_fraction"] >= TARGET["same_block_fraction_min"]
               and metrics["intake_vs_healthz"] >= TARGET["intake_vs_healthz_min"])
        print(f"same block in {same}/{TRIALS}; intake {intake:.0f}/s vs healthz {healthz:.0f}/s", file=sys.stderr)
        print(json.dumps({"benchmark": "alert_to_pause", "metrics": metrics, "targets": TARGET, "met": met}))
    finally:
        shut_down(home, node, serve)


def _fastpath(home: Path, trial: int) -> tuple[str, float]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in home.glob("incidents/*/runs/*/fastpath.json"):
            report = json.loads(path.read_text())
            record = json.loads((path.parent / "record.json").read_text())
            if record["inputs"].get("trial", "").startswith(f"trial-{trial}-") and report["sent"]:
                from datetime import datetime

                started = datetime.fromisoformat(report["started_at"].replace("Z", "+00:00")).timestamp()
                return report["sent"][0]["hash"], started + report["sent"][0]["ms_from_start"] / 1000
        time.sleep(0.005)
    raise SystemExit(f"trial {trial}: the prepared pause was not sent")


def _load(url: str, kind: str) -> float:
    """autocannon (npm, pinned), 64 connections for 5 s, in its own process: a Python generator saturates first."""
    out = subprocess.run(["node", str(ROOT / "benchmarks" / "loadgen.mjs"), url, "5", kind, TOKEN],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    if doc["non2xx"] or doc["errors"]:
        print(f"load on {url}: {doc['non2xx']} non-2xx answers, {doc['errors']} errors", file=sys.stderr)
    return float(doc["per_second"])


def _files(home: Path, ours: dict[str, str]) -> tuple[Path, Path]:
    inventory = home / "inventory.yaml"
    inventory.write_text(inventory_head("bench-alert", BLOCK_TIME, ours["fixture:multicall"]) + f"""contracts:
  vault: {{chain: ethereum, address: "{ours['fixture:vault']}", guardian: guardian}}
signers:
  guardian: {{kind: env, env: BENCH_GUARDIAN_KEY, address: "{ours['fixture:guardian']}"}}
alert_sources:
  generic: {{kind: generic, token_env: BENCH_ALERT_TOKEN, dedupe_window: 1s}}
  load: {{kind: generic, token_env: BENCH_ALERT_TOKEN}}
""")
    books = home / "books"
    books.mkdir()
    (books / "alert-pause.yaml").write_text("""apiVersion: breakglass/v1
kind: Playbook
name: alert-pause
description: benchmark
severity: critical
inputs:
  trial: {type: string}
triggers:
  - source: generic
    inputs: {trial: "{{ alert.id }}"}
steps:
  - {id: pause, kind: pause, timeout: 60s, with: {contracts: [vault], signer: guardian, prepared: true}}
""")
    return inventory, books





if __name__ == "__main__":
    main()
