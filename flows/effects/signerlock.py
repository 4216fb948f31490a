"""One signer, one nonce at a time: across threads, processes and machines.

Everything here is per chain *instance* (``flows/effects/chainkey``: chain id, genesis hash, and a drill's
own scope), written ``<key>`` below: a fork drill, a local drill and a live run never share a lock
or a record, even where the chain id and the address are equal.

- Within a process: a thread lock per (chain instance, signer address).
- Across processes that share ``$BREAKGLASS_HOME``: an ``flock`` on
  ``signers/<key>-<address>.lock`` (the kernel drops it when a holder dies; NFSv4 carries it
  across machines).
- Across machines under one Prefect API (the scale-out topology, where ``PREFECT_API_URL`` points
  at a shared Prefect server): a slot of a Prefect global concurrency limit of 1, strict (a
  missing limit is an error and never a silent pass). It is named
  ``breakglass-signer-<key>-<address>`` and created on first use. A holder that dies frees
  its slot when its lease (60 s, Prefect's minimum) runs out; sooner on its own machine: the
  holder notes its lease in ``signers/<key>-<address>.lease``, and the next process there
  that holds the ``flock`` (so no live local holder can exist) releases a lease whose holder
  process is gone.

The slot also carries the signer's last transaction: ``signers/<key>-<address>.json`` holds
its nonce, hash and block, written under the lock. The sender (``onchain``) trusts a record above
the node's pending count only while the transaction it names can be found (on the chain, in the
pool, or at the private submission endpoint) at that nonce; otherwise the record is stale, and
the chain's nonce is used.
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

from breakglass.flows.effects.chainkey import ChainKey
from breakglass.flows.errors import BreakglassError
from breakglass.flows.run.home import pid_alive, write_private

log = logging.getLogger("breakglass.signerlock")

LEASE = 60.0  # seconds; Prefect's minimum lease for a global concurrency slot
_LOCKS: dict[tuple[str, str], tuple[threading.Lock, list[Any]]] = {}
_GUARD = threading.Lock()
_distributed = False


def configure(*, distributed: bool) -> None:
    """Called by the runner with the process's Prefect API: shared (configured) APIs serialize globally."""
    global _distributed
    _distributed = distributed


def limit_name(chain: ChainKey, address: str) -> str:
    return f"breakglass-signer-{chain.stem}-{address.lower()}"


def record_path(home: Path, chain: ChainKey, address: str) -> Path:
    return home / "signers" / f"{chain.stem}-{address.lower()}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """``{next, hash, at, block}`` as the last holder wrote it, or None. Read without the lock by `check`."""
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


@dataclass
class Slot:
    """The signer's nonce bookkeeping while its lock is held."""

    path: Path
    local: list[Any]  # [next nonce, its transaction's hash] as this process last sent

    def shared(self) -> dict[str, Any] | None:
        """What the last holder on any machine wrote: ``{next, hash, at, block}``, or None."""
        return read_record(self.path)

    def claims(self) -> list[dict[str, Any]]:
        """Every claim of a next nonce, highest first: this process's last send, then the shared record."""
        found = [{"next": self.local[0], "hash": self.local[1], "source": "this process's last send"}] if self.local[1] else []
        shared = self.shared()
        if shared and isinstance(shared.get("next"), int) and shared.get("hash"):
            found.append({**shared, "source": f"signer record {self.path.name}"})
        return sorted(found, key=lambda c: -int(c["next"]))

    def used(self, nonce: int, tx_hash: str, block: int | None = None) -> None:
        self.local[0], self.local[1] = nonce + 1, tx_hash
        write_private(self.path, json.dumps({"next": nonce + 1, "hash": tx_hash, "at": time.time(),
                                             "block": block}).encode())

    def forget(self) -> None:
        """The claims were stale: neither this process nor the record speaks for the next nonce any more."""
        self.local[0], self.local[1] = 0, None
        self.path.unlink(missing_ok=True)


@contextmanager
def hold(home: Path, chain: ChainKey, address: str, timeout: float = 120.0) -> Iterator[Slot]:
    address = address.lower()
    chain_id = chain.chain_id
    with _GUARD:
        lock, local = _LOCKS.setdefault((chain.stem, address), (threading.Lock(), [0, None]))
    if not lock.acquire(timeout=timeout):
        raise BreakglassError(f"signer {address} on chain {chain_id}: another step of this process held its nonce "
                              f"lock for over {timeout:g}s")
    try:
        base = home / "signers"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        stem = f"{chain.stem}-{address}"
        fd = os.open(base / f"{stem}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _flock(fd, timeout, address, chain_id)
            with _global(chain, address, timeout, base / f"{stem}.lease"):
                yield Slot(base / f"{stem}.json", local)
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
def _global(chain: ChainKey, address: str, timeout: float, note: Path) -> Iterator[None]:
    """A slot of the signer's global concurrency limit, held by a lease.

    Prefect's own ``concurrency()`` waits the server's ``Retry-After`` after a refusal, which grows
    with every refused request (seconds under a burst of incidents); a nonce lock is held for
    milliseconds, so this asks again within 10-40 ms instead. Called with the ``flock`` held.
    """
    if not _distributed:
        yield
        return
    import httpx

    from breakglass.flows.run import prefect_api as prefectapi

    name = limit_name(chain, address)
    chain_id = chain.chain_id
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
