"""The incident's audit log: append-only, hash-chained JSON lines, shared by every process.

``incidents/<id>/audit.jsonl`` records who did what to the incident: votes counted and refused
(with the reason), gates opened, passed, rejected and timed out, acknowledgements. Each entry
carries the SHA-256 of the previous line, so an edited, removed or reordered line breaks the
chain and ``verify`` says where. Writers from several processes (the runner, ``approve``,
``ack``) serialize on an flock and fsync every entry.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from breakglass.flows.run.records import now

GENESIS = "0" * 64
NAME = "audit.jsonl"


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def append(incident_dir: Path, event: str, **fields: Any) -> dict[str, Any]:
    """Append one entry; returns it. Values must be JSON-serializable and free of secrets."""
    incident_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = incident_dir / NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        prev = GENESIS
        if size:
            with open(path, "rb") as fh:
                fh.seek(max(0, size - 65536))
                tail = fh.read().splitlines()
            prev = _line_hash(tail[-1]) if tail else GENESIS
        entry = {"at": now(), "event": event, **fields, "host": socket.gethostname(), "pid": os.getpid(),
                 "os_user": _os_user(), "prev": prev}
        os.write(fd, json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        os.fsync(fd)
        return entry
    finally:
        os.close(fd)


def entries(incident_dir: Path) -> list[dict[str, Any]]:
    path = incident_dir / NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def head(incident_dir: Path) -> dict[str, Any]:
    """The chain's head: how many entries, and the SHA-256 of the last one. Copies of it (run records,
    reports) make a truncated tail or a rewritten chain detectable."""
    path = incident_dir / NAME
    lines = path.read_bytes().splitlines() if path.exists() else []
    return {"entries": len(lines), "sha256": _line_hash(lines[-1]) if lines else GENESIS}


def verify(incident_dir: Path, heads: list[tuple[str, dict[str, Any]]] | None = None) -> list[str]:
    """Problems with the chain, by line number; empty when intact. ``heads`` are (where, head) copies
    kept elsewhere (run records): the log must still contain each of them, unchanged."""
    path = incident_dir / NAME
    if not path.exists():
        return [f"{path}: missing, but {where} recorded {h['entries']} entries" for where, h in heads or []
                if h.get("entries")]
    problems = []
    prev = GENESIS
    lines = path.read_bytes().splitlines()
    for where, copy in heads or []:
        n = int(copy.get("entries", 0))
        if n > len(lines):
            problems.append(f"{path}: ends at entry {len(lines)}, but {where} recorded {n} entries "
                            f"(head {str(copy.get('sha256'))[:16]}…): the tail was truncated")
        elif n and _line_hash(lines[n - 1]) != copy.get("sha256"):
            problems.append(f"{path}:{n}: differs from the head recorded in {where}: the chain was rewritten")
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{path}:{number}: not JSON")
            prev = _line_hash(line)
            continue
        if entry.get("prev") != prev:
            problems.append(f"{path}:{number - 1}: entry {number - 1} was changed (entry {number} no longer chains "
                            f"to it), or an entry before {number} was removed or reordered")
        prev = _line_hash(line)
    return problems


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())
