"""A signer's global nonce slot (Prefect global concurrency limit) after its holder died: on the same
machine the next holder releases it at once; a holder on another machine is waited out, never broken."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from breakglass.flows.effects import signerlock
from breakglass.flows.effects.chainkey import ChainKey
from breakglass.flows.errors import BreakglassError
from breakglass.flows.run import prefect_api as prefectapi

CHAIN, SIGNER = ChainKey(31337, "0x" + "ee" * 32), "0x" + "cd" * 20


@pytest.fixture
def distributed(prefect_api):
    signerlock.configure(distributed=True)
    with prefectapi.settings(prefect_api):
        yield prefectapi.client()
    signerlock.configure(distributed=False)


def _orphan(client, home: Path, host: str) -> str:
    """A slot taken by a process that is gone, noted the way a holder notes it."""
    name = signerlock.limit_name(CHAIN, SIGNER)
    prefectapi.ensure_global_limit(client, name)
    lease = client.increment_concurrency_slots_with_lease([name], 1, "concurrency", signerlock.LEASE).json()["lease_id"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    note = home / "signers" / f"{CHAIN.stem}-{SIGNER}.lease"
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(json.dumps({"lease_id": lease, "host": host, "pid": dead.pid}))
    return lease


def test_a_slot_left_by_a_dead_process_of_this_machine_is_released_at_once(distributed, tmp_path: Path) -> None:
    _orphan(distributed, tmp_path, socket.gethostname())
    started = time.monotonic()
    with signerlock.hold(tmp_path, CHAIN, SIGNER, timeout=10):
        took = time.monotonic() - started
    assert took < 5  # not the 60 s lease
    assert not (tmp_path / "signers" / f"{CHAIN.stem}-{SIGNER}.lease").exists()  # its own note is gone with it


def test_a_slot_held_from_another_machine_is_never_broken(distributed, tmp_path: Path) -> None:
    lease = _orphan(distributed, tmp_path, "another-machine")
    try:
        with pytest.raises(BreakglassError, match="another machine held its nonce slot"), \
                signerlock.hold(tmp_path, CHAIN, SIGNER, timeout=2):
            pass
    finally:
        distributed.release_concurrency_slots_with_lease(lease)
