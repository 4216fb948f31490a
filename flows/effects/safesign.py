"""Safe owner signatures through the Prefect API, the channel votes take: `breakglass sign` from an owner's
own machine (no shell on the runner's host, no shared home) files the signature as an input of the run's
flow run; the runner reads it there beside the files of a local `sign`, and checks it like any other
signature before it counts (a forged or foreign one is refused and journaled)."""

from __future__ import annotations

import json
from pathlib import Path


def input_prefix(safe_tx_hash: str) -> str:
    """Prefect input keys allow letters, digits and dashes."""
    return f"bg-safe-sig-{safe_tx_hash.removeprefix('0x')[:32]}-"


def received(run_dir: Path, safe_tx_hash: str, seen: set[str]) -> list[tuple[str, bytes]]:
    """Signatures filed through the Prefect API with the run's current flow run, not seen before."""
    from breakglass.flows.run import prefect_api as prefectapi

    try:
        record = json.loads((run_dir / "record.json").read_text())
        flow_run_id = record["attempts"][-1]["flow_run_id"] if record.get("attempts") else None
        if not flow_run_id:
            return []
        items = prefectapi.client().filter_flow_run_input(flow_run_id, input_prefix(safe_tx_hash), 100, seen)
    except Exception:  # noqa: BLE001 - the API hiccups or is not configured: local files still count
        return []
    found = []
    for item in items:
        seen.add(item.key)
        try:
            found.append((f"breakglass sign (remote) {item.key}", bytes.fromhex(json.loads(item.value)["signature"][2:])))
        except (ValueError, KeyError, TypeError):
            found.append((f"breakglass sign (remote) {item.key}", b""))
    return found
