"""Start and stop a local anvil: the real chain for tests and drills.

The binary comes from the npm package ``@foundry-rs/anvil`` pinned in package.json. It is
spawned directly (not through the Node wrapper, which costs ~75 ms and cannot forward
SIGKILL), on a free loopback port that anvil picks and prints.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

DEV_MNEMONIC_ACCOUNTS = 10
_LISTENING = re.compile(rb"Listening on 127\.0\.0\.1:(\d+)")
_PR_SET_PDEATHSIG = 1


class AnvilError(Exception):
    pass


def find_binary(root: Path | None = None) -> Path:
    """The anvil binary: $BREAKGLASS_ANVIL, else node_modules of the repository."""
    override = os.environ.get("BREAKGLASS_ANVIL")
    if override:
        return Path(override)
    base = root or Path(__file__).resolve().parents[2]
    for candidate in sorted((base / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
        return candidate
    raise AnvilError(
        "anvil is not installed: run `npm ci` in the repository (it installs @foundry-rs/anvil from package.json)"
    )


def _die_with(parent: int) -> Any:
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it

    def preexec() -> None:  # in the child, between fork and exec
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)  # no death signal, or the parent is already gone: no orphan

    return preexec


@dataclass
class Anvil:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _log: BinaryIO | None = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(*, chain_id: int = 31337, block_time: float | None = None, fork_url: str | None = None,
          fork_block: int | None = None, log_dir: Path | None = None, extra: list[str] | None = None,
          timeout: float = 15.0, die_with_parent: bool = False) -> Anvil:
    """``die_with_parent``: the kernel kills anvil when the thread that started it ends, even by kill -9
    (``PR_SET_PDEATHSIG``): a drill owns its chain. Start it from a thread that lives as long as the drill."""
    binary = find_binary()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="breakglass-anvil-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"anvil-{os.getpid()}-{time.monotonic_ns()}.log"
    args = [str(binary), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(chain_id)]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    if fork_url:
        args += ["--fork-url", fork_url]
        if fork_block is not None:
            args += ["--fork-block-number", str(fork_block)]
    args += extra or []
    # anvil logs every call: send it to a file, since an undrained pipe would block it.
    log = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               preexec_fn=_die_with(os.getpid()) if die_with_parent else None)  # noqa: PLW1509
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_bytes())
        if match:
            return Anvil(process, int(match.group(1)), log_path, log)
        if process.poll() is not None:
            log.close()
            tail = log_path.read_text(errors="replace")[-400:]
            raise AnvilError(f"anvil exited with code {process.returncode}: {tail}")
        time.sleep(0.01)
    process.kill()
    log.close()
    raise AnvilError(f"anvil did not start listening within {timeout:.0f}s")
