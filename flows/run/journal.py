"""The side-effect journal: what was signed and sent, written before it happens.

Append-only JSONL per run (``journal.jsonl`` in the run directory), one fsynced line per
event, readable only by the owner. On retry or resume the journal and the chain decide what
happens next; Prefect's result storage is never consulted for that.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breakglass.flows.run import audit, interrupt
from breakglass.flows.run.records import now

# "signed" is followed at once by the broadcast: its audit entry comes with "broadcast" (same hash and
# nonce), so the audit's fsync never stands between a signature and the broadcast.
UNAUDITED = frozenset({"signed"})
_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


@dataclass(frozen=True)
class SignedEntry:
    hash: str
    raw: str
    nonce: int
    max_fee: int
    tip: int


class Journal:
    """One run's journal. The runner holds the run's lock, so this process is its only writer:
    the file is read once and then kept in memory beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, list[dict[str, Any]]] | None = None
        with _GUARD:
            self._lock = _LOCKS.setdefault(str(path), threading.Lock())

    def append(self, intent: str, event: str, **fields: Any) -> None:
        entry = {"at": now(), "intent": intent, "event": event, **fields}
        line = json.dumps(entry, sort_keys=True) + "\n"
        with interrupt.critical(), self._lock:  # Ctrl-C lets a journal line finish
            self._load()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            assert self._cache is not None
            self._cache.setdefault(intent, []).append(json.loads(line))
        if event not in UNAUDITED:  # the incident's hash-chained audit log mirrors every side effect
            run_dir = self.path.parent
            audit.append(run_dir.parent.parent, f"journal.{event}", run=run_dir.name, intent=intent,
                         **{k: v for k, v in fields.items() if k not in ("raw",)})

    def _load(self) -> None:
        if self._cache is not None:
            return
        cache: dict[str, list[dict[str, Any]]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from a crash mid-write: that event never completed
                cache.setdefault(entry.get("intent"), []).append(entry)
        self._cache = cache

    def entries(self, intent: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self._load()
            assert self._cache is not None
            if intent is not None:
                return [dict(e) for e in self._cache.get(intent, [])]
            return sorted((dict(e) for items in self._cache.values() for e in items), key=lambda e: e["at"])

    def signed(self, intent: str) -> list[SignedEntry]:
        return [SignedEntry(e["hash"], e["raw"], e["nonce"], e["max_fee"], e["tip"])
                for e in self.entries(intent) if e["event"] in ("signed", "replacement")]
