"""Notify fan-out: the notify step's own work for 50 recipients (each on its own Slack channel,
email address or webhook) against the same step for 1 recipient and against a plain sequential
loop over the same 50, with every local server adding 50 ms of latency (plain SMTP, no TLS).

Run: .venv/bin/python benchmarks/notify_fanout.py    (last stdout line is the JSON result)
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402

from breakglass.flows.effects import delivery  # noqa: E402
from breakglass.flows.effects.engines import wire  # noqa: E402
from breakglass.flows.run.context import StepContext  # noqa: E402
from breakglass.flows.run.journal import Journal  # noqa: E402
from breakglass.flows.spec.loader import load, require  # noqa: E402
from breakglass.flows.steps.notify import HANDLER as NOTIFY  # noqa: E402
from breakglass.flows.steps.notify import NotifyParams, NotifyStep  # noqa: E402
from tests.helpers.jsonhttp import JsonServer  # noqa: E402
from tests.helpers.slack_server import SlackServer  # noqa: E402
from tests.integrations.test_notify_transports import free_port  # noqa: E402

LATENCY = float(os.environ.get("BENCH_LATENCY", "0.05"))
N = 50
ROUNDS = 3
TARGET = {"ratio_50_to_1_max": 3.0}


class SlowSmtp:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await asyncio.sleep(LATENCY)
        return "250 2.0.0 Ok: queued as BENCH"


def _hook(body: object) -> tuple[int, dict[str, str]]:
    time.sleep(LATENCY)
    return 200, {"id": "ok"}


def serve(kind: str, ports: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    """One server per process: the servers' CPU must not count against breakglass's, nor against each other."""
    if kind == "slack":
        server = SlackServer(latency=LATENCY)
        ports.put({"slack": server.base_url, "token": server.token})
        stop.wait()
        server.close()
    elif kind == "smtp":
        smtp = Controller(SlowSmtp(), hostname="127.0.0.1", port=free_port())
        smtp.start()
        ports.put({"smtp": smtp.port})
        stop.wait()
        smtp.stop()
    else:
        webhook = JsonServer(_hook)
        ports.put({"hook": webhook.url})
        stop.wait()
        webhook.close()


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    ports: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    servers = [multiprocessing.Process(target=serve, args=(kind, ports, stop), daemon=True) for kind in ("slack", "smtp", "hook")]
    addresses: dict[str, object] = {}
    for process in servers:
        process.start()
    for _ in servers:
        addresses.update(ports.get(timeout=30))
    os.environ.update({"BENCH_SLACK_TOKEN": addresses["token"], "BENCH_HOOK_URL": addresses["hook"], "BENCH_HOOK_SECRET": "s"})
    try:
        contacts = []  # fresh recipients (and Slack channels) for every measurement: Slack allows 1 message/s per channel
        for tag in [f"{kind}{r}" for r in range(ROUNDS) for kind in ("a", "b", "c")]:
            for i in range(N):
                channel = [f'{{via: slack, to: "C{tag}{i:02d}"}}', f"{{via: smtp, to: [r{tag}{i:02d}@example.org]}}",
                           "{via: hook}"][i % 3]
                contacts.append(f"  r{tag}{i:02d}: {{kind: internal, channels: [{channel}], last_verified: 2026-11-01}}")
        (tmp / "inventory.yaml").write_text(f"""apiVersion: breakglass/v1
kind: Inventory
name: bench
channels:
  slack: {{kind: slack, token_env: BENCH_SLACK_TOKEN, base_url: "{addresses['slack']}"}}
  smtp: {{kind: email, host: 127.0.0.1, port: {addresses['smtp']}, sender: security@example.org, starttls: never}}
  hook: {{kind: webhook, url_env: BENCH_HOOK_URL, secret_env: BENCH_HOOK_SECRET}}
contacts:
""" + "\n".join(contacts) + "\n")
        inventory = require(load(tmp / "inventory.yaml"))
        run_dir = tmp / "run"
        shutil.copytree(ROOT / "playbooks" / "templates", run_dir / "templates")

        def step(names: list[str], tag: str) -> float:
            ctx = wire(StepContext(incident="BENCH", run_id="bench", run_key=f"BENCH/bench/{tag}", mode="live", step_id="tell",
                              inventory=inventory, bindings=None, artifacts_dir=run_dir / "artifacts", home=tmp,  # type: ignore[arg-type]
                              log=logging.getLogger("bench"), journal=Journal(run_dir / f"journal-{tag}.jsonl"),
                              playbook="bench", severity="high"))
            spec = NotifyStep.model_validate({"id": "tell", "kind": "notify", "with": NotifyParams(
                template="status-update", to=names, data={"status": "benchmark"}).model_dump()})
            started = time.perf_counter()
            out = NOTIFY.run(ctx, spec)
            elapsed = time.perf_counter() - started
            assert out.delivered == len(names), out
            return elapsed

        def sequential(names: list[str], tag: str) -> float:
            ctx_journal = Journal(run_dir / f"journal-{tag}.jsonl")
            sender = delivery.Sender(inventory, ctx_journal, run_dir / "outbox")
            from breakglass.integrations.notify.base import Message

            started = time.perf_counter()
            for name in names:
                assert sender.deliver(name, Message(key=f"{tag}/{name}", subject="s", text="benchmark")).status == "delivered"
            return time.perf_counter() - started

        times: dict[str, list[float]] = {"one": [], "fifty": [], "sequential": []}
        for r in range(ROUNDS):  # interleaved
            times["one"].append(step([f"ra{r}{r % 3:02d}"], f"one-{r}"))
            times["fifty"].append(step([f"rb{r}{i:02d}" for i in range(N)], f"fifty-{r}"))
            times["sequential"].append(sequential([f"rc{r}{i:02d}" for i in range(N)], f"seq-{r}"))
        med = {k: statistics.median(v) for k, v in times.items()}
        metrics = {"recipients": N, "server_latency_ms": LATENCY * 1000, "one_recipient_ms": round(med["one"] * 1000, 1),
                   "fifty_recipients_ms": round(med["fifty"] * 1000, 1), "sequential_fifty_ms": round(med["sequential"] * 1000, 1),
                   "ratio_50_to_1": round(med["fifty"] / med["one"], 2),
                   "speedup_vs_sequential": round(med["sequential"] / med["fifty"], 1)}
        met = metrics["ratio_50_to_1"] <= TARGET["ratio_50_to_1_max"]
        print(f"50 recipients {metrics['fifty_recipients_ms']} ms, 1 recipient {metrics['one_recipient_ms']} ms, "
              f"sequential {metrics['sequential_fifty_ms']} ms", file=sys.stderr)
        print(json.dumps({"benchmark": "notify_fanout", "metrics": metrics, "targets": TARGET, "met": met}))
    finally:
        stop.set()
        for process in servers:
            process.join(timeout=10)


if __name__ == "__main__":
    main()
