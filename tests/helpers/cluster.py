"""The scale-out topology as real processes on loopback: PostgreSQL, a Prefect server on it (started by
`breakglass server start --database`), `breakglass serve --pool`, and `breakglass worker` processes,
all sharing one $BREAKGLASS_HOME. Used by tests/flows/scale/test_scale_out.py and benchmarks/scale_out.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import postgres

REPO = Path(__file__).resolve().parents[2]
POOL = "bg-test"
TOKEN = "scale-test-token"
CLEAR = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """Start with ``up()``, add processes with ``serve()`` and ``worker()``, stop everything with ``down()``."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.home = root, root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if k not in CLEAR}
        self.env = {**base, **env, "BREAKGLASS_HOME": str(self.home), "PREFECT_HOME": str(root / "prefect-client"),
                    "GENERIC_TOKEN": TOKEN, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        self.pg: postgres.Postgres | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.url = ""

    def cli(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "breakglass.flows.cli.main", *args], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, timeout=timeout, cwd=REPO)

    def up(self) -> Cluster:
        self.pg = postgres.start()
        database = self.pg.create_database("prefect")
        started = self.cli("server", "start", env={"BREAKGLASS_DATABASE_URL": database}, timeout=180)
        assert started.returncode == 0, started.stderr
        state = json.loads((self.home / "prefect" / "server.json").read_text())
        self.url = f"http://127.0.0.1:{state['port']}/api"
        # the production topology: every process is pointed at the shared API, as on other machines
        self.env.update(PREFECT_API_URL=self.url, PREFECT_API_AUTH_STRING=state["auth"])
        return self

    def deploy(self, inventory: Path, books: Path) -> None:
        result = self.cli("deploy", "--pool", POOL, "--inventory", str(inventory), "--playbooks", str(books))
        assert result.returncode == 0, result.stderr

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - a file, never an unread pipe
        process = subprocess.Popen([sys.executable, "-m", "breakglass.flows.cli.main", *args], env={**self.env, **(env or {})},
                                   cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.processes[name] = process
        return process

    def serve(self, inventory: Path, books: Path, name: str = "serve", pool: str = POOL) -> str:
        port = free_port()
        process = self._spawn(name, ["serve", "--inventory", str(inventory), "--playbooks", str(books), "--port",
                                     str(port), "--pool", pool])
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, self.log(name)
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"{name} did not start: {self.log(name)}")

    def worker(self, inventory: Path, books: Path, name: str, crash_after: float = 90,
               concurrency: int = 20) -> subprocess.Popen:
        process = self._spawn(name, ["worker", "--pool", POOL, "--inventory", str(inventory), "--playbooks", str(books),
                                     "--poll", "0.5", "--crash-after", str(crash_after), "--name", name,
                                     "--concurrency", str(concurrency)])
        deadline = time.monotonic() + 60
        while "started" not in self.log(name):
            assert process.poll() is None and time.monotonic() < deadline, self.log(name)
            time.sleep(0.1)
        return process

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def down(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.cli("server", "stop", timeout=60)
        if self.pg is not None:
            self.pg.stop()


def runs(home: Path, incident: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in (home / "incidents" / incident).glob("runs/*/record.json")]
