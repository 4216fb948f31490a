"""Safe owner signatures through the Prefect API, the channel votes take: `breakglass sign` from an owner's
own machine (no shell on the runner's host, no shared home) files the signature as an input of the run's
flow run; the runner reads it there beside the files of a local `sign`, and checks it like any other
signature before it counts (a forged or foreign one is refused and journaled)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from breakglass.flows.errors import BreakglassError


def input_prefix(safe_tx_hash: str) -> str:
    """Prefect input keys allow letters, digits and dashes."""
    return f"bg-safe-sig-{safe_tx_hash.removeprefix('0x')[:32]}-"


def submit(incident: str, safe_tx_hash: str, signature: bytes) -> dict[str, Any]:
    """Find the incident's running flow runs by name (``<incident>/<run>``) and file the signature with each."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateType as TypeFilter
    from prefect.client.schemas.objects import StateType

    from breakglass.flows import prefectapi
    from breakglass.integrations.chain import safe as safe_tx

    try:
        owner = safe_tx.recover(bytes.fromhex(safe_tx_hash[2:]), signature)
    except safe_tx.SafeSignatureError as exc:
        raise BreakglassError(f"signature refused: {exc}") from None
    client = prefectapi.client()
    live = FlowRunFilterState(type=TypeFilter(any_=[StateType.RUNNING, StateType.PAUSED]))
    runs = [r for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"{incident}/"),
                                                                          state=live), limit=20)
            if r.name.startswith(f"{incident}/")]
    if not runs:
        raise BreakglassError(f"no running flow run of incident {incident} in the Prefect API at "
                              f"{client.api_url}; is its runner up, and is PREFECT_API_URL the runner's API?")
    key = input_prefix(safe_tx_hash) + owner.lower().removeprefix("0x")
    body = json.dumps({"safe_tx_hash": safe_tx_hash, "owner": owner, "signature": "0x" + signature.hex()})
    for run in runs:
        try:
            client.create_flow_run_input(run.id, key, body)
        except Exception as exc:  # noqa: BLE001 - an input with this key exists: the same owner signed already
            if "409" not in str(exc) and "already exists" not in str(exc).lower():
                raise
    return {"owner": owner, "flow_runs": [str(r.id) for r in runs], "key": key}


def received(run_dir: Path, safe_tx_hash: str, seen: set[str]) -> list[tuple[str, bytes]]:
    """Signatures filed through the Prefect API with the run's current flow run, not seen before."""
    from breakglass.flows import prefectapi

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
