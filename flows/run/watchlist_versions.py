"""An incident's watch list: versioned, never edited in place, exported as CSV and JSON.

Every version is kept under ``incidents/<incident>/watchlist/`` because a wrongly flagged
address must be correctable: a later step appends or marks entries ``retracted``, which makes a
new version. The step that made a version is recorded, so a retry or resume of that step reuses
its version instead of making another.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from breakglass.flows.run.home import write_private
from breakglass.flows.run.records import now

COLUMNS = ["incident_id", "caip10", "chain_id", "address", "role", "label", "first_seen_utc", "first_seen_block",
           "tx_hashes", "asset", "amount", "status", "confidence", "source", "notes"]
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def caip10(chain_id: int, address: str) -> str:
    return f"eip155:{chain_id}:{address}"


def csv_cell(value: Any) -> str:
    """Spreadsheets execute cells starting with = + - @: such a cell is prefixed with a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _index(folder: Path) -> dict[str, Any]:
    path = folder / "index.json"
    return json.loads(path.read_text()) if path.exists() else {"versions": []}


def latest(folder: Path) -> dict[str, Any] | None:
    versions = _index(folder)["versions"]
    return json.loads((folder / f"v{versions[-1]['version']}.json").read_text()) if versions else None


def make_version(folder: Path, incident: str, drill: bool, creator: str, add: list[dict[str, Any]],
                 retract: list[str], tlp: str) -> dict[str, Any]:
    """The version ``creator`` made, or a new one: previous entries + ``add`` (deduplicated by CAIP-10) with ``retract`` marked."""
    with _locked(folder):
        index = _index(folder)
        mine = next((v for v in index["versions"] if v["created_by"] == creator), None)
        if mine is not None:
            return json.loads((folder / f"v{mine['version']}.json").read_text())
        previous = json.loads((folder / f"v{index['versions'][-1]['version']}.json").read_text()) if index["versions"] else None
        entries = {e["caip10"]: dict(e) for e in (previous["entries"] if previous else [])}
        stamp = now()
        for item in add:
            key = caip10(item["chain_id"], item["address"])
            old = entries.get(key)
            merged = {**(old or {}), **{k: v for k, v in item.items() if v not in (None, "", [])}, "caip10": key}
            merged["first_seen"] = (old or {}).get("first_seen") or {"utc": stamp, "block": item.get("block")}
            merged["transactions"] = sorted(set((old or {}).get("transactions", [])) | set(item.get("tx_hashes", [])))
            merged.pop("tx_hashes", None)
            merged.pop("block", None)
            merged["status"] = "active"
            entries[key] = merged
        retracted = {r.lower() for r in retract}
        for entry in entries.values():
            if entry["caip10"].lower() in retracted or entry["address"].lower() in retracted:
                entry["status"] = "retracted"
        number = len(index["versions"]) + 1
        document = {"schema": "breakglass/watchlist@1", "incident_id": incident, "version": number, "generated_at": stamp,
                    "tlp": tlp, "drill": drill, "entries": sorted(entries.values(), key=lambda e: e["caip10"])}
        data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
        write_private(folder / f"v{number}.json", data)
        write_private(folder / f"v{number}.csv", to_csv(document).encode())
        index["versions"].append({"version": number, "created_by": creator, "sha256": hashlib.sha256(data).hexdigest(),
                                  "at": stamp})
        write_private(folder / "index.json", json.dumps(index, indent=2).encode())
        return document


def to_csv(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in document["entries"]:
        row = [document["incident_id"], e["caip10"], e["chain_id"], e["address"], e.get("role"), e.get("label"),
               e["first_seen"]["utc"], e["first_seen"].get("block"), " ".join(e.get("transactions", [])), e.get("asset"),
               e.get("amount"), e["status"], e.get("confidence"), e.get("source", "breakglass"), e.get("notes")]
        writer.writerow([csv_cell(v) for v in row])
    return buffer.getvalue()
