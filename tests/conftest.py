"""Shared test setup: an isolated $BREAKGLASS_HOME and Prefect server per session, real anvils.

Result storage, the Prefect database and every run record live in one temporary home per
test session, so no session can reuse another's checkpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse-order", action="store_true", default=False,
                     help="run the collected tests in reverse order: a test that passes only after another leaks state")


def pytest_configure(config: pytest.Config) -> None:
    home = Path(tempfile.mkdtemp(prefix="breakglass-test-home-"))
    os.environ["BREAKGLASS_HOME"] = str(home)
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_TASKS_REFRESH_CACHE", "PREFECT_TASKS_DISABLE_CACHING"):
        os.environ.pop(name, None)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    config._breakglass_home = home  # type: ignore[attr-defined]


_SLOW_FIXTURES = {"prefect_api", "cluster"}
_SLOW_CALLS = ("cli(", "subprocess.", "Popen(", "run_drill(", "drill(")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast lane (`pytest -m "not slow"`) leaves out every test that needs the Prefect server or
    starts processes: such a test is marked `slow` here unless it says so itself."""
    import inspect

    for item in items:
        if item.get_closest_marker("slow"):
            continue
        function = getattr(item, "function", None)
        try:
            source = inspect.getsource(function) if function is not None else ""
        except (OSError, TypeError):
            source = ""
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(call in source for call in _SLOW_CALLS):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--reverse-order"):
        items.reverse()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outside pytest-timeout: waiting is not the test's time
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Under pytest-xdist (`.ci/test` runs `-n 2`), a test marked `serial` runs alone: it holds an
    exclusive lock over its setup, call and teardown, every other test a shared one."""
    with _alone(item.config, exclusive=item.get_closest_marker("serial") is not None):
        yield


@contextlib.contextmanager
def _alone(config: pytest.Config, *, exclusive: bool):
    """A readers-writer lock shared by the workers of one xdist run, in the run's own temporary folder
    (each worker's basetemp is a `popen-gwN` folder in it): a turnstile lock, held by a waiting `serial`
    test, keeps the other workers from starting new tests meanwhile."""
    if getattr(config, "workerinput", None) is None:  # a single process: nothing runs beside anything
        yield
        return
    base = config._tmp_path_factory.getbasetemp().parent / "breakglass-serial"  # type: ignore[attr-defined]
    turnstile = os.open(f"{base}.turnstile", os.O_RDWR | os.O_CREAT, 0o600)
    room = os.open(f"{base}.room", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if exclusive:
            fcntl.flock(room, fcntl.LOCK_EX)  # the turnstile stays held: nothing new starts meanwhile
        else:
            fcntl.flock(room, fcntl.LOCK_SH)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield
    finally:
        os.close(room)  # closing drops the locks
        os.close(turnstile)


def pytest_unconfigure(config: pytest.Config) -> None:
    home = getattr(config, "_breakglass_home", None)
    if home is not None:
        from breakglass.flows.run import prefect_server as server

        server.stop(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def home() -> Path:
    return Path(os.environ["BREAKGLASS_HOME"])


@pytest.fixture(scope="session")
def prefect_api(home: Path):
    """The real local Prefect server that `breakglass` itself manages, started once per session."""
    from breakglass.flows.run import prefect_server as server

    api = server.start(home)
    os.environ.update(api.settings())
    yield api
    _check_every_record(home)


def _check_every_record(home: Path) -> None:
    import jsonschema

    schema = json.loads((REPO / "playbooks" / "run-record.schema.json").read_text())
    for path in home.glob("incidents/*/runs/*/record.json"):
        jsonschema.validate(json.loads(path.read_text()), schema)


@dataclass
class Chain:
    url: str
    addresses: dict[str, str]
    attack_tx: str | None
    node: object

    def rpc(self):
        from breakglass.integrations.chain.rpc import Endpoint, JsonRpc

        return JsonRpc([Endpoint("test", self.url)])


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A real anvil with the fixture protocol deployed (about 0.2 s)."""
    from breakglass.flows.effects import fixture
    from breakglass.integrations.chain import anvil

    node = anvil.start(log_dir=tmp_path_factory.mktemp("anvil"))
    try:
        with Chain(node.url, {}, None, node).rpc() as rpc:
            deployed = fixture.deploy(rpc)
        yield Chain(node.url, deployed.addresses, deployed.attack_tx, node)
    finally:
        node.stop()


def dev_key(account: str) -> str:
    """The private key of one of anvil's public development accounts, by its fixture role."""
    from eth_account import Account

    from breakglass.flows.effects.fixture import ACCOUNTS
    from breakglass.flows.effects.unlock import ANVIL_MNEMONIC

    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{ACCOUNTS[account]}").key.to_0x_hex()


def fresh_protocol(chain: Chain) -> Chain:
    """A new, unpaused copy of the fixture protocol on the module's anvil."""
    from breakglass.flows.effects import fixture

    with chain.rpc() as rpc:
        deployed = fixture.deploy(rpc)
    return Chain(chain.url, deployed.addresses, deployed.attack_tx, chain.node)


def live_inventory(tmp: Path, chain: Chain, *, env: str = "BG_TEST_RPC_URL", extra_rpc: list[str] | None = None,
                   multicall: bool = True, extra: str = "", chain_extra: str = "") -> Path:
    """A live-mode inventory (RPC and keys by environment variable) for the test's anvil."""
    a = chain.addresses
    rpc = "".join(f"      - env: {name}\n" for name in [*(extra_rpc or []), env])
    multicall_line = f'    multicall3: "{a["fixture:multicall"]}"\n' if multicall else '    multicall3: "0x000000000000000000000000000000000000dEaD"\n'
    text = f"""apiVersion: breakglass/v1
kind: Inventory
name: test-live
chains:
  ethereum:
    chain_id: 31337
    block_time: 1s
    rpc:
{rpc}{multicall_line}{chain_extra}contracts:
  vault: {{chain: ethereum, address: "{a['fixture:vault']}", guardian: guardian}}
  bridge: {{chain: ethereum, address: "{a['fixture:bridge']}", guardian: guardian}}
  token: {{chain: ethereum, address: "{a['fixture:token']}"}}
signers:
  guardian: {{kind: env, env: BG_TEST_GUARDIAN_KEY, address: "{a['fixture:guardian']}"}}
{extra}"""
    path = tmp / "inventory.yaml"
    path.write_text(text)
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """The real `breakglass` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "breakglass.flows.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=cwd)


def mined(rpc, tx: dict) -> dict:
    """Send from an unlocked dev account and wait for the receipt (it can trail anvil's answer by a few ms)."""
    import time as _time

    tx_hash = rpc.call("eth_sendTransaction", [tx])
    for _ in range(1000):
        receipt = rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return receipt
        _time.sleep(0.01)
    raise AssertionError(f"{tx_hash} was not mined")


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll until ``predicate`` returns something truthy, and return it."""
    import time as _time

    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        _time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")


def wait_healthy(base: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until `breakglass serve` answers /healthz; its stderr if it exits first."""
    import time as _time

    import httpx

    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            _time.sleep(0.1)
    raise AssertionError(f"serve did not start: {process.communicate(timeout=10)[1][-3000:]}")
