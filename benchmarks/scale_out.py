"""Twenty incidents at once against one alone, on the scale-out topology: PostgreSQL, a Prefect server on
it, `serve --pool` and two `breakglass worker` processes, all real processes on loopback, anvil with
250 ms blocks.

Each incident is an authenticated alert to `serve` that starts its own playbook (snapshot, pause of
its own fixture vault, follow-up snapshot), handed to the pool. Every pause is sent by the same
guardian key, so the twenty also contend for one signer's nonce. First three incidents alone, one
after another (the baseline: their median), then twenty alerts at the same moment.

Reported: the makespan (first alert to last run completed) of twenty over one, and the time from
each alert to its vault being paused (p50/p99), alone and in the twenty. Target: twenty take at most
three times one.

Run: .venv/bin/python benchmarks/scale_out.py    (last stdout line is the JSON result)
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from _common import inventory_head, isolate  # noqa: E402

ROOT_DIR = isolate("bench-scale-")

import httpx  # noqa: E402
from _gated import key  # noqa: E402

from breakglass.flows import fixture  # noqa: E402
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
    with: {{contracts: [v{n:02d}], signer: guardian, confirmations: 1}}
  - id: after
    kind: snapshot
    needs: [pause]
    timeout: 30s
    with: {{chain: ethereum, paused: [v{n:02d}]}}
"""


def files(root: Path, vaults: list[str], multicall: str, guardian: str) -> tuple[Path, Path]:
    contracts = "".join(f'  v{n:02d}: {{chain: ethereum, address: "{v}", guardian: guardian}}\n' for n, v in enumerate(vaults))
    inventory = root / "inventory.yaml"
    inventory.write_text(inventory_head("bench-scale", BLOCK_TIME, multicall) + f"""contracts:
{contracts}signers:
  guardian: {{kind: env, env: BENCH_GUARDIAN_KEY, address: "{guardian}"}}
alert_sources:
  generic: {{kind: generic, token_env: GENERIC_TOKEN}}
""")
    books = root / "books"
    books.mkdir()
    for n in range(len(vaults)):
        (books / f"pause-v{n:02d}.yaml").write_text(book(n))
    return inventory, books


class Watch:
    """Polls every vault's paused() and notes when each first answers true."""

    def __init__(self, url: str, vaults: list[str]) -> None:
        self.rpc, self.vaults, self.paused_at = JsonRpc([Endpoint("watch", url)]), vaults, {}
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            for n, vault in enumerate(self.vaults):
                if n not in self.paused_at and self.rpc.call("eth_call", [{"to": vault, "data": PAUSED}, "latest"])[-1] == "1":
                    self.paused_at[n] = time.time()
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


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(sorted(values)[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3)


def main() -> None:
    node = anvil.start(block_time=BLOCK_TIME, log_dir=ROOT_DIR / "anvil")
    cluster = None
    try:
        rpc = JsonRpc([Endpoint("bench", node.url)])
        deployed = [fixture.deploy(rpc, attack=False).addresses for _ in range(ALONE + AT_ONCE)]
        vaults = [d["fixture:vault"] for d in deployed]
        guardian = key("guardian")
        inventory, books = files(ROOT_DIR, vaults, deployed[0]["fixture:multicall"], guardian.address)
        cluster = Cluster(ROOT_DIR / "cluster", {"BENCH_RPC_URL": node.url,
                                                  "BENCH_GUARDIAN_KEY": guardian.key.to_0x_hex()}).up()
        cluster.deploy(inventory, books)
        base = cluster.serve(inventory, books)
        for name in ("worker-1", "worker-2"):
            cluster.worker(inventory, books, name, concurrency=AT_ONCE // 2)
        watch = Watch(node.url, vaults)
        alone = [finish(cluster, fire(base, [n]), watch) for n in range(ALONE)]
        together = finish(cluster, fire(base, list(range(ALONE, ALONE + AT_ONCE))), watch)
        watch.stop.set()
    finally:
        if cluster is not None:
            cluster.down()
        node.stop()
    one = statistics.median(a["makespan_s"] for a in alone if a["makespan_s"] is not None)
    alone_pause = [t for a in alone for t in a["to_pause_s"]]
    ratio = round(together["makespan_s"] / one, 2) if together["makespan_s"] and one else None
    metrics = {
        "makespan_1_s": round(one, 3), "makespan_20_s": together["makespan_s"], "makespan_ratio": ratio,
        "to_pause_alone_p50_s": pct(alone_pause, 0.5), "to_pause_20_p50_s": pct(together["to_pause_s"], 0.5),
        "to_pause_20_p99_s": pct(together["to_pause_s"], 0.99), "completed_20": together["completed"],
        "paused_20": len(together["to_pause_s"]), "workers": 2, "database": "postgresql", "block_time_s": BLOCK_TIME,
    }
    met = ratio is not None and ratio <= TARGET["makespan_ratio_max"] and together["completed"] == AT_ONCE
    print(f"one incident alone: {one:.2f}s; twenty at once: {together['makespan_s']}s (ratio {ratio}); "
          f"alert to pause p50 {metrics['to_pause_20_p50_s']}s, p99 {metrics['to_pause_20_p99_s']}s")
    print(json.dumps({"benchmark": "scale_out", "metrics": metrics, "targets": TARGET, "met": met}))


if __name__ == "__main__":
    main()
