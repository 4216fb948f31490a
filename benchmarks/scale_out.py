"""Twenty incidents at once against one alone, on the scale-out topology: PostgreSQL, a Prefect server on
it, `serve --pool` and two `breakglass worker` processes, all real processes on loopback, anvil with
250 ms blocks.

Each incident is an authenticated alert to `serve` that starts its own playbook (snapshot, pause of
its own fixture vault, follow-up snapshot), handed to the pool. First three incidents alone, one
after another (the baseline: their median), then twenty alerts at the same moment. Two trials, each
on a fresh cluster: every vault with a guardian key of its own (twenty protocols: the target), then
every pause sent by one guardian key, so the twenty also contend for one signer's nonce.

Also reported: the CPU seconds the burst cost every process on the machine, by role (from /proc),
and the floor they set: no schedule finishes the burst sooner than its CPU work over the cores.

Reported: the makespan (first alert to last run completed) of twenty over one, and the time from
each alert to its vault being paused (p50/p99), alone and in the twenty. Target: twenty take at most
three times one.

Run: .venv/bin/python benchmarks/scale_out.py    (last stdout line is the JSON result)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from _common import inventory_head, isolate  # noqa: E402

ROOT_DIR = isolate("bench-scale-")

import httpx  # noqa: E402
from _gated import key  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402

from breakglass.flows.effects import fixture  # noqa: E402
from breakglass.integrations.chain import anvil  # noqa: E402
from breakglass.integrations.chain.rpc import Endpoint, JsonRpc  # noqa: E402
from tests.helpers.cluster import TOKEN, Cluster, runs  # noqa: E402

ALONE, AT_ONCE = 3, 20
BLOCK_TIME = 0.25
TARGET = {"makespan_ratio_max": 3.0}
PAUSED = "0x5c975abb"  # paused()


def book(n: int) -> str:
    return f"""apiVersion: breakglass/v1
kind: Playbook
name: pause-v{n:02d}
description: contain incident {n}
severity: critical
triggers:
  - source: generic
    match: {{title: "v{n:02d} *"}}
steps:
  - id: snapshot
    kind: snapshot
    timeout: 30s
    with: {{chain: ethereum, paused: [v{n:02d}]}}
  - id: pause
    kind: pause
    timeout: 2m
    with: {{contracts: [v{n:02d}], signer: g{n:02d}, confirmations: 1}}
  - id: after
    kind: snapshot
    needs: [pause]
    timeout: 30s
    with: {{chain: ethereum, paused: [v{n:02d}]}}
"""


def files(root: Path, vaults: list[str], multicall: str, guardians: list[str]) -> tuple[Path, Path]:
    """Vault n is paused by signer gNN, whose key is in BENCH_KEY_NN (several names may share one key)."""
    contracts = "".join(f'  v{n:02d}: {{chain: ethereum, address: "{v}", guardian: g{n:02d}}}\n' for n, v in enumerate(vaults))
    signers = "".join(f'  g{n:02d}: {{kind: env, env: BENCH_KEY_{n:02d}, address: "{g}"}}\n' for n, g in enumerate(guardians))
    inventory = root / "inventory.yaml"
    inventory.write_text(inventory_head("bench-scale", BLOCK_TIME, multicall) + f"""contracts:
{contracts}signers:
{signers}alert_sources:
  generic: {{kind: generic, token_env: GENERIC_TOKEN}}
""")
    books = root / "books"
    books.mkdir()
    for n in range(len(vaults)):
        (books / f"pause-v{n:02d}.yaml").write_text(book(n))
    return inventory, books


class Watch:
    """Notes when each vault's paused() first answers true: one batch of calls per new block (a pause can only
    show at a block), so the watching itself costs the machine next to nothing."""

    def __init__(self, url: str, vaults: list[str]) -> None:
        self.rpc, self.vaults, self.paused_at = JsonRpc([Endpoint("watch", url)]), vaults, {}
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        seen = -1
        while not self.stop.is_set():
            block = int(self.rpc.call("eth_blockNumber"), 16)
            waiting = [n for n in range(len(self.vaults)) if n not in self.paused_at]
            if block != seen and waiting:
                seen, now = block, time.time()
                answers = self.rpc.batch([("eth_call", [{"to": self.vaults[n], "data": PAUSED}, hex(block)])
                                          for n in waiting])
                for n, answer in zip(waiting, answers, strict=True):
                    if answer[-1] == "1":
                        self.paused_at[n] = now
            time.sleep(0.01)


def fire(base: str, numbers: list[int]) -> dict[int, tuple[float, str]]:
    """POST one alert per vault, all at once; returns {n: (sent at, incident)}."""
    out: dict[int, tuple[float, str]] = {}
    barrier = threading.Barrier(len(numbers))

    def post(n: int) -> None:
        barrier.wait()
        sent = time.time()
        answer = httpx.post(f"{base}/alerts/generic", json={"id": f"bench-{n}", "title": f"v{n:02d} drained", "severity": "critical"},
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert answer.status_code == 202, answer.text
        out[n] = (sent, answer.json()["incidents"][0])

    threads = [threading.Thread(target=post, args=(n,)) for n in numbers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def finish(cluster: Cluster, fired: dict[int, tuple[float, str]], watch: Watch, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    done: dict[int, float] = {}
    while len(done) < len(fired) and time.monotonic() < deadline:
        for n, (_, incident) in fired.items():
            if n not in done and any(r["status"] in ("completed", "failed") for r in runs(cluster.home, incident)):
                done[n] = time.time()
        time.sleep(0.02)
    statuses = [r["status"] for _, incident in fired.values() for r in runs(cluster.home, incident)]
    first = min(sent for sent, _ in fired.values())
    to_pause = sorted(watch.paused_at[n] - fired[n][0] for n in fired if n in watch.paused_at)
    return {"makespan_s": round(max(done.values()) - first, 3) if len(done) == len(fired) else None,
            "completed": statuses.count("completed"), "runs": len(fired), "to_pause_s": to_pause}


ROLES = (("prefect server", "prefect server"), (" worker ", "workers"), (" serve ", "serve"), ("postgres", "postgres"),
         ("anvil", "anvil"))


def cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by every process on the machine, by role (read from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (proc / "comm").read_text().strip()
        except (OSError, IndexError):
            continue  # gone already
        role = next((name for needle, name in ROLES if needle in f" {args} "), None)
        if role is None:
            role = "this benchmark" if proc.name == str(os.getpid()) else f"other: {comm}"
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(sorted(values)[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3)


def signers(rpc: JsonRpc, vaults: list[str], shared: bool) -> list[Any]:
    """One guardian key for every vault (they contend for its nonce), or one key per vault."""
    if shared:
        return [key("guardian")] * len(vaults)
    keys = [Account.from_key(keccak(text=f"bench-scale-guardian-{n}")) for n in range(len(vaults))]
    for vault, account in zip(vaults, keys, strict=True):
        fixture.grant_guardian(rpc, [vault], account.address)
    return keys


def trial(shared: bool) -> tuple[list[dict], dict]:
    node = anvil.start(block_time=BLOCK_TIME, log_dir=ROOT_DIR / f"anvil-{shared}")
    cluster = None
    try:
        rpc = JsonRpc([Endpoint("bench", node.url)])
        deployed = [fixture.deploy(rpc, attack=False, library=False).addresses for _ in range(ALONE + AT_ONCE)]
        vaults = [d["fixture:vault"] for d in deployed]
        keys = signers(rpc, vaults, shared)
        root = ROOT_DIR / ("shared" if shared else "distinct")
        root.mkdir()
        inventory, books = files(root, vaults, deployed[0]["fixture:multicall"], [k.address for k in keys])
        cluster = Cluster(root / "cluster", {"BENCH_RPC_URL": node.url,
                                             **{f"BENCH_KEY_{n:02d}": k.key.to_0x_hex() for n, k in enumerate(keys)}}).up()
        cluster.deploy(inventory, books)
        base = cluster.serve(inventory, books)
        for name in ("worker-1", "worker-2"):
            cluster.worker(inventory, books, name, concurrency=AT_ONCE // 2)
        watch = Watch(node.url, vaults)
        alone = [finish(cluster, fire(base, [n]), watch) for n in range(ALONE)]
        before = cpu_by_role()
        together = finish(cluster, fire(base, list(range(ALONE, ALONE + AT_ONCE))), watch)
        after = cpu_by_role()
        together["cpu_s"] = {role: round(after[role] - before.get(role, 0.0), 2) for role in after
                             if after[role] - before.get(role, 0.0) >= 0.05}
        watch.stop.set()
        return alone, together
    finally:
        if cluster is not None:
            cluster.down()
        node.stop()


def summary(alone: list[dict], together: dict) -> dict:
    one = statistics.median(a["makespan_s"] for a in alone if a["makespan_s"] is not None)
    alone_pause = [t for a in alone for t in a["to_pause_s"]]
    ratio = round(together["makespan_s"] / one, 2) if together["makespan_s"] and one else None
    busy = sum(v for role, v in together["cpu_s"].items() if role != "this benchmark")
    floor = busy / (os.cpu_count() or 1)  # no schedule can finish the burst's CPU work sooner than this
    return {"makespan_1_s": round(one, 3), "makespan_20_s": together["makespan_s"], "makespan_ratio": ratio,
            "to_pause_alone_p50_s": pct(alone_pause, 0.5), "to_pause_20_p50_s": pct(together["to_pause_s"], 0.5),
            "to_pause_20_p99_s": pct(together["to_pause_s"], 0.99), "completed_20": together["completed"],
            "paused_20": len(together["to_pause_s"]), "cpu_s_20_by_role": together["cpu_s"],
            "cpu_s_per_incident": round(busy / AT_ONCE, 3), "cpu_floor_20_s": round(floor, 2),
            "makespan_20_over_cpu_floor": round(together["makespan_s"] / floor, 2) if together["makespan_s"] else None}


def main() -> None:
    distinct = summary(*trial(shared=False))
    shared = summary(*trial(shared=True))
    metrics = {**distinct, "shared_signer": {k: shared[k] for k in ("makespan_1_s", "makespan_20_s", "makespan_ratio",
                                                                     "to_pause_20_p50_s", "to_pause_20_p99_s",
                                                                     "completed_20", "paused_20")},
               "workers": 2, "cores": os.cpu_count(), "database": "postgresql", "block_time_s": BLOCK_TIME}
    ratio = distinct["makespan_ratio"]
    met = ratio is not None and ratio <= TARGET["makespan_ratio_max"] and distinct["completed_20"] == AT_ONCE
    print(f"one incident alone: {distinct['makespan_1_s']:.2f}s; twenty at once (a signer each): "
          f"{distinct['makespan_20_s']}s (ratio {ratio}); alert to pause p50 {distinct['to_pause_20_p50_s']}s, "
          f"p99 {distinct['to_pause_20_p99_s']}s; CPU {distinct['cpu_s_per_incident']}s per incident, so no schedule "
          f"on {os.cpu_count()} cores beats {distinct['cpu_floor_20_s']}s; one shared signer: {shared['makespan_20_s']}s "
          f"(ratio {shared['makespan_ratio']})")
    print(json.dumps({"benchmark": "scale_out", "metrics": metrics, "targets": TARGET, "met": met}))


if __name__ == "__main__":
    main()
