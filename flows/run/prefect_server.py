"""One Prefect API per installation.

A configured ``PREFECT_API_URL`` (for example a Prefect server on Postgres) wins. Otherwise
breakglass runs a local Prefect server on SQLite under ``$BREAKGLASS_HOME/prefect``: on loopback,
on a free port recorded in the home, with an API auth string, started on first need and reused.
This module starts it as a process; it does not import Prefect.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.home import pid_alive, write_private


@dataclass(frozen=True)
class Api:
    url: str
    auth: str | None
    managed: bool
    prefect_home: Path

    def settings(self) -> dict[str, str]:
        out = {
            "PREFECT_API_URL": self.url,
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_LOCAL_STORAGE_PATH": str(self.prefect_home / "storage"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",  # the Prefect client's telemetry, and its notice in the middle of a drill
        }
        if self.auth:
            out["PREFECT_API_AUTH_STRING"] = self.auth
        return out

    def headers(self) -> dict[str, str]:
        if not self.auth:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(self.auth.encode()).decode()}


def _dir(home: Path) -> Path:
    path = home / "prefect"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _state(home: Path) -> dict | None:
    path = _dir(home) / "server.json"
    return json.loads(path.read_text()) if path.exists() else None


def healthy(api: Api, timeout: float = 2.0) -> bool:
    try:
        response = httpx.get(api.url.rstrip("/") + "/health", headers=api.headers(), timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def configured(home: Path) -> Api | None:
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if not url:
        return None
    return Api(url, os.environ.get("PREFECT_API_AUTH_STRING") or None, False, _dir(home))


def local(home: Path) -> Api | None:
    state = _state(home)
    if not state or not pid_alive(state["pid"]):
        return None
    return Api(f"http://127.0.0.1:{state['port']}/api", state["auth"], True, _dir(home))


def status(home: Path) -> dict:
    api = configured(home)
    if api:
        return {"api": api.url, "ui": api.url.removesuffix("/api"), "managed": False, "healthy": healthy(api),
                "login": "the UI asks for the password only if the server has an auth string: the value of "
                         "PREFECT_API_AUTH_STRING" if api.auth else "no login: this Prefect API has no auth string"}
    state = _state(home)
    api = local(home)
    if api is None or state is None:
        return {"api": None, "ui": None, "managed": True, "running": False,
                "login": "not running: `breakglass server start` starts it (the first start takes 10-20 s)"}
    return {"api": api.url, "ui": api.url.removesuffix("/api"), "managed": True, "running": True, "pid": state["pid"],
            "healthy": healthy(api), "database": state.get("database") or str(_dir(home) / "prefect.db"),
            "log": str(_dir(home) / "server.log"),
            "login": f"the UI asks for a password: paste the whole auth string (breakglass:…), the value of \"auth\" "
                     f"in {_dir(home) / 'server.json'} (readable only by you)"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redact_url(url: str) -> str:
    """A database URL fit for logs and status: the password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def check_database(url: str) -> str:
    if not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        shown = redact_url(url).split("://", 1)[0]
        raise BreakglassError(f"--database: expected postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB (or "
                              f"sqlite+aiosqlite:///PATH), got a URL of scheme {shown!r}")
    return url


def start(home: Path, timeout: float = 90.0, *, database: str | None = None, host: str = "127.0.0.1") -> Api:
    """Start the local server unless it runs already; returns once it answers.

    ``database`` (a Postgres URL) turns on the production topology; it is handed to the server
    process in its environment, never on its command line, and recorded only without its password.
    """
    if configured(home):
        raise BreakglassError("PREFECT_API_URL is set, so breakglass uses that Prefect API and starts no local server")
    if database:
        check_database(database)
    base = _dir(home)
    with open(base / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        api = local(home)
        state = _state(home) or {}
        if api and database and state.get("database") != redact_url(database):
            raise BreakglassError(f"a local Prefect server already runs on {state.get('database') or 'SQLite'}; "
                                  "stop it first (`breakglass server stop`)")
        if api and healthy(api):
            return api
        if api:  # alive but not answering yet: wait for it instead of starting a second one
            return _wait(api, state["pid"], timeout, base)
        port = _free_port()
        auth = "breakglass:" + secrets.token_urlsafe(24)
        env = {**os.environ, "PREFECT_HOME": str(base), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
               "PREFECT_SERVER_API_AUTH_STRING": auth, "PREFECT_API_URL": "", "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
        env.pop("PREFECT_API_AUTH_STRING", None)
        if database:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database
        log = open(base / "server.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port),
             "--no-scheduler", "--analytics-off"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        log.close()
        write_private(base / "server.json", json.dumps({"pid": process.pid, "port": port, "auth": auth, "host": host,
                                                        "database": redact_url(database) if database else None}).encode())
        return _wait(Api(f"http://127.0.0.1:{port}/api", auth, True, base), process.pid, timeout, base)


def _wait(api: Api, pid: int, timeout: float, base: Path) -> Api:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(api, timeout=1.0):
            return api
        if not pid_alive(pid):
            raise BreakglassError(f"the local Prefect server exited while starting; see {base / 'server.log'}")
        time.sleep(0.2)
    raise BreakglassError(f"the local Prefect server did not answer within {timeout:.0f}s; see {base / 'server.log'}")


def stop(home: Path) -> bool:
    state = _state(home)
    if not state or not pid_alive(state["pid"]):
        (_dir(home) / "server.json").unlink(missing_ok=True)
        return False
    os.killpg(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 15
    while pid_alive(state["pid"]) and time.monotonic() < deadline:
        try:
            os.waitpid(state["pid"], os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if pid_alive(state["pid"]):
        os.killpg(state["pid"], signal.SIGKILL)
    (_dir(home) / "server.json").unlink(missing_ok=True)
    return True


def ensure(home: Path, on_start: Callable[[], None] | None = None) -> Api:
    """The installation's API; ``on_start`` is called when a local server must be started first (it takes seconds)."""
    found = configured(home)
    if found:
        return found
    running = local(home)
    if on_start is not None and not (running and healthy(running, timeout=0.5)):
        on_start()
    return start(home)
