"""One signer, one nonce at a time: across threads, processes and machines.

- Within a process: a thread lock per (chain id, signer address).
- Across processes that share ``$BREAKGLASS_HOME``: an ``flock`` on
  ``signers/<chain id>-<address>.lock`` (the kernel drops it when a holder dies; NFSv4 carries it
  across machines).
- Across machines under one Prefect API (the scale-out topology, where ``PREFECT_API_URL`` points
  at a shared Prefect server): a slot of a Prefect global concurrency limit of 1, strict (a
  missing limit is an error and never a silent pass). It is named
  ``breakglass-signer-<chain id>-<address>`` and created on first use. A holder that dies frees
  its slot when its lease (60 s, Prefect's minimum) runs out; sooner on its own machine: the
  holder notes its lease in ``signers/<chain id>-<address>.lease``, and the next process there
  that holds the ``flock`` (so no live local holder can exist) releases a lease whose holder
  process is gone.

The slot also carries the signer's last transaction: ``signers/<chain id>-<address>.json`` holds
its nonce and hash, written under the lock. The sender (``onchain``) trusts it over the node's
pending count only while the chain knows that transaction, or briefly after a private submission
that no public pool shows: a chain that was reset (a new anvil, a new fork) never inherits a
nonce gap from it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breakglass.flows.errors import BreakglassError
from breakglass.flows.home import pid_alive, write_private

log = logging.getLogger("breakglass.signerlock")

LEASE = 60.0  # seconds; Prefect's minimum lease for a global concurrency slot
_LOCKS: dict[tuple[int, str], tuple[threading.Lock, list[int]]] = {}
_GUARD = threading.Lock()
_distributed = False


def configure(*, distributed: bool) -> None:
    """Called by the runner with the process's Prefect API: shared (configured) APIs serialize globally."""
    global _distributed
    _distributed = distributed


def limit_name(chain_id: int, address: str) -> str:
    return f"breakglass-signer-{chain_id}-{address.lower()}"


@dataclass
class Slot:
    """The signer's nonce bookkeeping while its lock is held."""

    path: Path
    local: list[int]

    def shared(self) -> dict[str, Any] | None:
        """What the last holder on any machine wrote: ``{next, hash, at}``, or None."""
        try:
            return json.loads(self.path.read_text()) if self.path.exists() else None
        except ValueError:
            return None

    def used(self, nonce: int, tx_hash: str) -> None:
        self.local[0] = max(self.local[0], nonce + 1)
        write_private(self.path, json.dumps({"next": nonce + 1, "hash": tx_hash, "at": time.time()}).encode())


@contextmanager
def hold(home: Path, chain_id: int, address: str, timeout: float = 120.0) -> Iterator[Slot]:
    address = address.lower()
    with _GUARD:
        lock, local = _LOCKS.setdefault((chain_id, address), (threading.Lock(), [0]))
    if not lock.acquire(timeout=timeout):
        raise BreakglassError(f"signer {address} on chain {chain_id}: another step of this process held its nonce "
                              f"lock for over {timeout:g}s")
    try:
        base = home / "signers"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(base / f"{chain_id}-{address}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _flock(fd, timeout, address, chain_id)
            with _global(chain_id, address, timeout, base / f"{chain_id}-{address}.lease"):
                yield Slot(base / f"{chain_id}-{address}.json", local)
        finally:
            os.close(fd)  # releases the flock
    finally:
        lock.release()


def _flock(fd: int, timeout: float, address: str, chain_id: int) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise BreakglassError(f"signer {address} on chain {chain_id}: another process held its nonce lock "
                                      f"for over {timeout:g}s") from None
            time.sleep(0.005)


@contextmanager
def _global(chain_id: int, address: str, timeout: float, note: Path) -> Iterator[None]:
    """A slot of the signer's global concurrency limit, held by a lease.

    Prefect's own ``concurrency()`` waits the server's ``Retry-After`` after a refusal, which grows
    with every refused request (seconds under a burst of incidents); a nonce lock is held for
    milliseconds, so this asks again within 10-40 ms instead. Called with the ``flock`` held.
    """
    if not _distributed:
        yield
        return
    import httpx

    from breakglass.flows import prefectapi

    name = limit_name(chain_id, address)
    client = prefectapi.client()
    prefectapi.ensure_global_limit(client, name)
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = client.increment_concurrency_slots_with_lease([name], 1, "concurrency", LEASE).json()
            break
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423:  # 423 Locked: someone else holds the signer
                raise
            if _release_dead_local_holder(client, note, name):
                continue
            if time.monotonic() > deadline:
                raise BreakglassError(f"signer {address} on chain {chain_id}: another machine held its nonce slot "
                                      f"({name}) for over {timeout:g}s") from None
            time.sleep(random.uniform(0.01, 0.04))
    if not answer.get("limits"):  # strict: a limit that does not exist (deleted by hand) is never a free pass
        raise BreakglassError(f"the global concurrency limit {name} does not exist; nothing was signed")
    write_private(note, json.dumps({"lease_id": answer["lease_id"], "host": socket.gethostname(),
                                    "pid": os.getpid()}).encode())
    try:
        yield
    finally:
        note.unlink(missing_ok=True)
        client.release_concurrency_slots_with_lease(answer["lease_id"])


def _release_dead_local_holder(client: Any, note: Path, name: str) -> bool:
    """With the flock held, a lease noted by a process of this machine that no longer exists is stale:
    release it now instead of waiting out its 60 s. Holders on other machines are never touched."""
    try:
        holder = json.loads(note.read_text())
    except (OSError, ValueError):
        return False
    if holder.get("host") != socket.gethostname() or holder.get("pid") == os.getpid() or pid_alive(int(holder["pid"])):
        return False
    try:
        client.release_concurrency_slots_with_lease(holder["lease_id"])
    except Exception:  # noqa: BLE001 - expired meanwhile, or never ours: the next attempt tells
        pass
    note.unlink(missing_ok=True)
    log.warning("released the nonce slot %s of process %s on this machine, which died holding it", name, holder["pid"])
    return True
