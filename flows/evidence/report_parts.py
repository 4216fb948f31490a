"""The parts of an incident report read from a run's own evidence: every transaction its journal holds
(pauses, transactions, Safe executions for revoke and rotate, replacements), its failures and gaps, and the
audit log as rows a person can read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from breakglass.flows.language.inventory import Inventory
from breakglass.flows.run.records import RunRecord

SENT = ("signed", "replacement")


def journal_entries(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "journal.jsonl"
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line: that event never completed
    return found


def step_of(record: RunRecord, intent: str) -> str:
    return str(intent).removeprefix(record.run_key + "/").split("/", 1)[0]


def _label(text: str) -> str:
    return text if "(" in text else text + "()"


def actions(record: RunRecord, inventory: Inventory, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per transaction signed for the run (a replacement is its own row), and one per Safe transaction
    still waiting for owners' signatures."""
    by_intent: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_intent.setdefault(str(entry.get("intent")), []).append(entry)
    explorers: dict[Any, str] = {c.chain_id: c.explorer.rstrip("/") for c in inventory.chains.values() if c.explorer}
    rows: list[dict[str, Any]] = []
    for intent, events in by_intent.items():
        step = step_of(record, intent)
        signed = [e for e in events if e["event"] in SENT]
        proposed = next((e for e in events if e["event"] == "safe_proposed"), None)
        if not signed:
            executed = by_intent.get(intent.removesuffix("/safe") + "/exec", [])  # safe.send's two keys
            if proposed is not None and not any(e["event"] in SENT for e in executed):
                rows.append({"step": step, "what": f"{_label(proposed.get('call', ''))} via Safe {proposed.get('safe')}",
                             "status": "awaiting owners' signatures", "tx_hash": proposed["safe_tx_hash"], "block": None,
                             "note": f"safeTxHash, Safe nonce {proposed.get('nonce')}", "url": None})
            continue
        first = signed[0]
        label = _label(str(first.get("label") or intent.rsplit("/", 1)[-1]))
        receipt = next((e for e in reversed(events) if e["event"] == "receipt"), None)
        replaced = {e.get("replaces") for e in events if e["event"] == "replacement"}
        explorer = explorers.get(first.get("chain_id"))
        for entry in signed:
            tx = entry["hash"]
            if receipt is not None and receipt.get("hash") == tx:
                status, block = ("mined" if receipt.get("status") == 1 else "reverted"), receipt.get("block")
            else:
                status = "replaced" if tx in replaced else ("dropped" if receipt is not None else "sent, no receipt yet")
                block = None
            note = []
            if first.get("source") == "prepared" or any(e.get("source") == "prepared" for e in events if e["event"] == "broadcast"):
                note.append("fast path (prepared)")
            if entry["event"] == "replacement":
                note.append(f"replacement of {entry.get('replaces')}")
            if intent.endswith("/exec"):
                note.append("Safe execTransaction")
            rows.append({"step": step, "what": label, "status": status, "tx_hash": tx, "block": block,
                         "nonce": entry.get("nonce"), "note": "; ".join(note),
                         "url": f"{explorer}/tx/{tx}" if explorer else None})
    return rows


def outputs_actions(record: RunRecord, inventory: Inventory, kinds: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For a run without a journal (nothing was signed, or an old run): the transactions its step outputs name,
    as each kind says (``kinds``: the step-kind registry, handed in: effects import this module, so it cannot
    import the step kinds)."""
    rows = []
    for step in record.steps:
        out = step.outputs or {}
        for result in kinds[step.kind].transactions(out) if step.kind in kinds else []:  # each kind says
            if result.get("tx_hash"):
                chain = inventory.chains.get(str(result.get("chain", "")))
                explorer = chain.explorer.rstrip("/") if chain is not None and chain.explorer else None
                what = f"{result.get('contract')}.{result.get('function')}"
                rows.append({"step": step.id, "what": what, "status": result.get("status"), "tx_hash": result["tx_hash"],
                             "block": result.get("block_number"), "note": result.get("fast_path") or "",
                             "url": f"{explorer}/tx/{result['tx_hash']}" if explorer else None})
    return rows


def first_action_at(record: RunRecord, entries: list[dict[str, Any]]) -> dict[str, str]:
    """When each step's first transaction went out (a fast-path pause goes out before its step starts)."""
    found: dict[str, str] = {}
    for entry in entries:
        if entry.get("event") in ("signed", "broadcast"):
            found.setdefault(step_of(record, entry["intent"]), entry["at"])
    return found


def failures(record: RunRecord) -> list[dict[str, Any]]:
    return [{"run": record.run_id, "step": s.id, "kind": s.kind, "reason": s.error or "failed (no reason recorded)"}
            for s in record.steps if s.status == "failed"]


def step_gaps(record: RunRecord) -> list[str]:
    """Failed, skipped and never-run steps of a run that did not complete: what the response left undone."""
    if record.status == "completed":
        return [f"step {s.id} skipped: {s.reason}" for s in record.steps if s.status == "skipped"
                and not str(s.reason or "").startswith("if ")]
    gaps = []
    for s in record.steps:
        if s.status == "failed":
            gaps.append(f"step {s.id} failed: {s.error or 'no reason recorded'}")
        elif s.status == "skipped":
            gaps.append(f"step {s.id} skipped: {s.reason or 'no reason recorded'}")
        elif s.status in ("pending", "running", "waiting"):
            gaps.append(f"step {s.id} did not run to the end (run {record.status})")
    return gaps


def continue_command(incident: str, records: list[RunRecord]) -> str | None:
    if any(r.status in ("failed", "crashed", "running", "paused") for r in records):
        return f"breakglass resume {incident}"
    return None


ACTOR_KEYS = ("name", "initiator", "by")
SUBJECT_KEYS = ("step", "title", "contract", "recipient", "playbook", "to", "reason", "error", "status")


def audit_row(entry: dict[str, Any], prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """One readable row per audit entry: time, event, actor, subject (no raw JSON)."""
    actor = next((str(entry[k]) for k in ACTOR_KEYS if entry.get(k)), "")
    actor = actor or (f"breakglass ({entry['os_user']})" if entry.get("os_user") else "breakglass")
    if entry.get("channel") and entry.get("name"):
        actor += f" via {entry['channel']}"
    parts = []
    intent = entry.get("intent")
    if intent:
        tail = str(intent)
        for prefix in prefixes:
            tail = tail.removeprefix(prefix)
        parts.append(_short_key(tail))
    for key in SUBJECT_KEYS:
        value = entry.get(key)
        if value not in (None, "", [], {}) and not (key == "status" and entry["event"] != "run.finished"):
            parts.append(f"{key} {value}" if key not in ("step", "title") else str(value))
    for key in ("hash", "tx_hash", "safe_tx_hash"):
        if entry.get(key):
            parts.append(f"{key.replace('_', ' ')} {entry[key]}")
    if entry.get("decision"):
        parts.append(str(entry["decision"]))
    return {"at": entry["at"], "event": entry["event"], "actor": actor, "subject": ", ".join(dict.fromkeys(parts))}


def _short_key(key: str) -> str:
    """An idempotency key as a person reads it: the step and what it acts on, without the inputs hash."""
    parts = [p for p in key.split("/") if p and not (len(p) >= 32 and all(c in "0123456789abcdef" for c in p))]
    return "/".join(parts[-4:]) if len(parts) > 4 else "/".join(parts)
