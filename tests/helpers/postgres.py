"""A real, throwaway PostgreSQL server on loopback (Debian's `postgresql` package; `.ci/setup` installs it).

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` system user and
its commands run through `runuser`. Durability is off (fsync=off): the tests kill breakglass
processes, never the database.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def binaries() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not versions:
        raise AssertionError("PostgreSQL is not installed: `bash .ci/setup` installs Debian's postgresql package")
    return Path(versions[-1]).parent


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Postgres:
    root: Path
    port: int
    process: subprocess.Popen

    def url(self, database: str = "prefect") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        subprocess.run(_as_owner([str(binaries() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                  "-q", "-c", f"CREATE DATABASE {name}"]), check=True, capture_output=True)
        return self.url(name)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Postgres:
    """A fresh cluster in its own directory under /tmp (a pytest tmp_path is not reachable by another user)."""
    pg = binaries()
    root = Path(tempfile.mkdtemp(prefix="breakglass-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = root / "data"
    subprocess.run(_as_owner([str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
                              "-E", "UTF8"]), check=True, capture_output=True)
    port = _free_port()
    log = open(root / "postgres.log", "ab")  # noqa: SIM115
    if os.geteuid() == 0:
        shutil.chown(root / "postgres.log", "postgres")
    process = subprocess.Popen(
        _as_owner([str(pg / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root), "-c", "listen_addresses=127.0.0.1",
                   "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                   "-c", "max_connections=300"]),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    server = Postgres(root, port, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"postgres exited: {(root / 'postgres.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"postgres did not listen on {port} within 30s")
