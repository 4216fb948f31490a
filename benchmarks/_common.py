"""What the benchmarks that drive a real `serve` or runner share: an isolated home, waiting on a child
process, receipts. Import it before anything from breakglass, so that the home is set first."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def isolate(prefix: str) -> Path:
    """A throwaway $BREAKGLASS_HOME, and no Prefect API from the caller's environment."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["BREAKGLASS_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING"):
        os.environ.pop(name, None)
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(predicate: Callable[[], Any], process: subprocess.Popen, log: Path, timeout: float, what: str) -> Any:
    """Poll until ``predicate`` is truthy; stop with the child's log tail if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process.poll() is not None:
            raise SystemExit(f"{process.args[3] if len(process.args) > 3 else 'the child'} stopped while waiting for "
                             f"{what}:\n{log.read_text()[-2000:]}")
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {what}")


def start_serve(home: Path, inventory: Path, books: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, str]:
    """`breakglass serve` on a free port, logging to home/serve.log (a pipe nobody reads would block it)."""
    import httpx

    port = free_port()
    log = open(home / "serve.log", "w")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", "serve", "--inventory", str(inventory),
                                "--playbooks", str(books), "--port", str(port), *extra], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    until(healthy, process, home / "serve.log", 120, "serve to start")  # it signs its prepared pauses first
    return process, base


def inventory_head(name: str, block_time: float, multicall: str, chain_extra: str = "") -> str:
    """The start of every benchmark inventory: one local chain (chain id 31337), read through BENCH_RPC_URL."""
    return f"""apiVersion: breakglass/v1
kind: Inventory
name: {name}
chains:
  ethereum:
    chain_id: 31337
    block_time: {block_time:g}s
    rpc: [{{env: BENCH_RPC_URL}}]
    multicall3: "{multicall}"
{chain_extra}"""


def shut_down(home: Path, node: Any, *children: subprocess.Popen | None) -> None:
    """Stop the benchmark's children, its local Prefect server and its anvil, whatever happened before."""
    from breakglass.flows.run import prefect_server as server

    for child in children:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
    server.stop(home)
    node.stop()


def receipt(rpc: Any, tx_hash: str) -> int:
    """The block a transaction landed in (polled: anvil's receipts can trail its answers)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = rpc.call("eth_getTransactionReceipt", [tx_hash])
        if answer is not None:
            return int(answer["blockNumber"], 16)
        time.sleep(0.01)
    raise SystemExit(f"{tx_hash} was not mined")


def race(body: bytes, headers: dict[str, str], **targets: tuple[Any, str]) -> dict[str, float]:
    """POST the same request to every target (name -> (httpx client, url)) at one moment; returns when each left."""
    import threading

    barrier = threading.Barrier(len(targets))
    stamps: dict[str, float] = {}

    def post(name: str, client: Any, url: str) -> None:
        barrier.wait()
        stamps[name] = time.time()
        client.post(url, content=body, headers=headers)

    threads = [threading.Thread(target=post, args=(name, client, url)) for name, (client, url) in targets.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stamps


class Bare:
    """The comparison for HTTP-triggered benchmarks: a minimal HTTP server that, on any POST, broadcasts
    the pre-signed transaction ``raw(trial)`` for the current ``trial`` and notes (hash, time) in ``sent``."""

    def __init__(self, rpc_url: str, raw: Callable[[int], bytes], status: int = 200) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from breakglass.integrations.chain.rpc import Endpoint, JsonRpc

        self.trial = -1
        self.sent: dict[int, tuple[str, float]] = {}
        rpc = JsonRpc([Endpoint("bare", rpc_url)])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                i = outer.trial
                outer.sent[i] = (rpc.call("eth_sendRawTransaction", ["0x" + raw(i).hex()]), time.time())
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def close(self) -> None:
        self.server.shutdown()
