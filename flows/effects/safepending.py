"""Safe transactions waiting for owners, read from a run's journal: what `status` shows an owner so that they
can verify the safeTxHash on their own device and sign, without reading the runner's log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from breakglass.flows.evidence.report_parts import journal_entries


def excluded_reason(proposal: dict[str, Any]) -> str:
    """Why an owner's signature does not count, in the words that fit the transaction."""
    call = str(proposal.get("call", ""))
    if any(f in call for f in ("swapOwner", "removeOwner")):
        return "the transaction removes that owner from the Safe"
    return "that owner's key is the one this incident acts against (believed compromised)"


def pending(run_dir: Path, incident: str) -> list[dict[str, Any]]:
    """Each proposed Safe transaction of the run that has not been executed: Safe, nonce, safeTxHash, the
    decoded call, the signatures counted so far and who may still sign."""
    entries = journal_entries(run_dir)
    by_intent: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_intent.setdefault(str(entry.get("intent")), []).append(entry)
    found = []
    for intent, events in by_intent.items():
        proposal = next((e for e in events if e["event"] == "safe_proposed"), None)
        if proposal is None:
            continue
        executed = by_intent.get(intent.removesuffix("/safe") + "/exec", [])
        if any(e["event"] in ("signed", "broadcast") for e in executed):
            continue
        refused = [e for e in events if e["event"] == "safe_refused"]
        signed = sorted({e["owner"] for e in events if e["event"] == "safe_signature"})
        folder = run_dir.parent.parent / "safe-signatures" / proposal["safe_tx_hash"]
        submitted = sorted(json.loads(p.read_text()).get("owner", p.stem) for p in folder.glob("*.json")) \
            if folder.is_dir() else []
        excluded = proposal.get("excluded", [])
        found.append({
            "safe": proposal["safe"], "nonce": proposal["nonce"], "safe_tx_hash": proposal["safe_tx_hash"],
            "call": proposal.get("call"), "to": proposal.get("to"), "threshold": proposal["threshold"],
            "signatures": signed, "submitted": [o for o in submitted if o not in signed],
            "may_still_sign": [o for o in proposal.get("owners", []) if o not in signed and o not in excluded
                               and o not in submitted],
            "excluded": [{"owner": o, "why": excluded_reason(proposal)} for o in excluded],
            "status": "refused: " + refused[-1].get("reason", "") if refused else "waiting for owners",
            "sign": f"breakglass sign {incident} {proposal['safe_tx_hash']} --signature 0x…",
        })
    return found
