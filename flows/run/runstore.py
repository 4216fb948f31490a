"""Incidents and runs on disk, under ``$BREAKGLASS_HOME/incidents/<incident>/runs/<run>/``.

A run directory holds the exact playbook and inventory it was started with (so a resume runs
the same thing), the drill's fixture bindings, the run record and the artifacts. The runner
holds an exclusive ``flock`` on ``runner.lock`` while it executes: the kernel drops it when the
process dies, so a lock that can be taken means nobody is running the run any more.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from breakglass.flows import __version__
from breakglass.flows.errors import BreakglassError
from breakglass.flows.language.inputs import digest
from breakglass.flows.language.messages import BUNDLED
from breakglass.flows.run.context import Bindings
from breakglass.flows.run.home import check_id, write_private
from breakglass.flows.run.records import FileRef, RunRecord, StepRecord, now

OWNER_FILE = "owner.json"


def new_incident_id(mode: str) -> str:
    prefix = "DRILL" if mode == "drill" else "INC"
    return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class RunLocked(BreakglassError):
    pass


class RunExists(BreakglassError):
    """The incident already has this run (same playbook and inputs)."""


@dataclass
class RunHandle:
    dir: Path

    @property
    def record_path(self) -> Path:
        return self.dir / "record.json"

    @property
    def artifacts(self) -> Path:
        return self.dir / "artifacts"

    def load(self) -> RunRecord:
        return RunRecord.model_validate_json(self.record_path.read_bytes())

    def bindings(self) -> Bindings:
        return Bindings.load(self.dir / "bindings.json")

    @contextmanager
    def lock(self) -> Iterator[None]:
        fd = os.open(self.dir / "runner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = (self.dir / "runner.lock").read_text().strip() or "another process"
                raise RunLocked(f"run {self.dir.name} is being executed right now by {holder}; "
                                "wait for it, or stop that process first") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
            yield
        finally:
            os.close(fd)

    def is_locked(self) -> bool:
        fd = os.open(self.dir / "runner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


class RecordWriter:
    """Serializes updates of one run record from concurrent step threads; every write is fsynced."""

    def __init__(self, handle: RunHandle) -> None:
        self.handle = handle
        self.record = handle.load()
        self._lock = threading.RLock()
        self.frozen = False  # set once an interruption has recorded the run's end: the process exits next

    def update(self, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self.record, key, value)
            self._flush()

    def step(self, step_id: str, **fields: Any) -> StepRecord:
        with self._lock:
            rec = self.record.step(step_id)
            for key, value in fields.items():
                setattr(rec, key, value)
            self._flush()
            return rec.model_copy()

    def snapshot(self) -> RunRecord:
        with self._lock:
            return self.record.model_copy(deep=True)

    def _flush(self) -> None:
        if self.frozen:
            return
        self.record.updated_at = now()
        write_private(self.handle.record_path, self.record.model_dump_json(indent=2).encode() + b"\n")


class Store:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "incidents"

    def incident_dir(self, incident: str) -> Path:
        path = self.root / check_id(incident)
        if path.is_symlink():  # never followed: it could point anywhere, and writes would go there
            raise BreakglassError(f"incident {incident}: {path} is a symbolic link; breakglass does not follow it. "
                                  "Move the real directory there, or remove the link")
        return path

    def incident_mode(self, incident: str) -> str | None:
        meta = self.incident_dir(incident) / "incident.json"
        return json.loads(meta.read_text())["mode"] if meta.exists() else None

    def open_incident(self, incident: str, mode: str) -> Path:
        existing = self.incident_mode(incident)
        if existing is not None and existing != mode:
            raise BreakglassError(
                f"incident {incident} is a {existing} incident; a {mode} run cannot join it. "
                f"Use another --incident for the {mode} run."
            )
        path = self.incident_dir(incident)
        if existing is None:
            payload = {"incident": incident, "mode": mode, "created_at": now()}
            write_private(path / "incident.json", json.dumps(payload, indent=2).encode() + b"\n")
        return path

    def runs(self, incident: str) -> list[RunHandle]:
        base = self.incident_dir(incident)
        if not (base / "incident.json").exists():
            raise BreakglassError(f"no incident {incident!r} under {self.home}; `breakglass status` lists incidents")
        return [RunHandle(p) for p in sorted((base / "runs").glob("*")) if (p / "record.json").exists()]

    def owned(self, owner: str) -> list[RunHandle]:
        """Every run whose ``owner.json`` names ``owner`` (symlinked incident directories are not followed)."""
        found = []
        for marker in sorted(self.root.glob(f"*/runs/*/{OWNER_FILE}")):
            run_dir = marker.parent
            if run_dir.parent.parent.is_symlink() or run_dir.is_symlink() or not (run_dir / "record.json").exists():
                continue
            try:
                if json.loads(marker.read_text()).get("owner") == owner:
                    found.append(RunHandle(run_dir))
            except (OSError, ValueError):
                continue
        return found

    def handle(self, key: str) -> RunHandle:
        """The run named ``<incident>/<run id>`` (how Prefect parameters and hand-offs name it)."""
        incident, _, run_id = key.partition("/")
        if not run_id or "/" in run_id:
            raise BreakglassError(f"run {key!r}: expected <incident>/<run id>")
        path = self.incident_dir(incident) / "runs" / check_id(run_id)
        if not (path / "record.json").exists():
            raise BreakglassError(f"no run {key} under {self.home}: workers and serve must share one $BREAKGLASS_HOME "
                                  "(network storage); see docs/scale-out.md")
        return RunHandle(path)

    def create_run(self, *, incident: str, mode: str, playbook_name: str, step_kinds: list[tuple[str, str]],
                   playbook_file: Path, inventory_name: str, inventory_file: Path, inputs: dict[str, Any],
                   bindings: Bindings | None = None, initiator: str | None = None,
                   initiator_via: str | None = None, owner: str | None = None,
                   contents: tuple[bytes, bytes] | None = None) -> RunHandle:
        """``contents``: the playbook's and the inventory's bytes as validated (`serve` holds them); without
        it the files are read here."""
        self.open_incident(incident, mode)
        inputs_hash = digest(inputs)
        run_id = f"{playbook_name}-{inputs_hash[:12]}"
        run_dir = self.incident_dir(incident) / "runs" / run_id
        if (run_dir / "record.json").exists():
            status = RunHandle(run_dir).load().status
            raise RunExists(
                f"incident {incident} already has run {run_id} of '{playbook_name}' with these inputs "
                f"(status: {status}). Use `breakglass resume {incident}` to continue it, or a new --incident."
            )
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if owner is not None:  # before the record: a run that exists is always known to be its owner's
            write_private(run_dir / OWNER_FILE, json.dumps({"owner": owner, "pid": os.getpid(),
                                                            "host": socket.gethostname()}).encode())
        refs = []
        for n, (name, source, target) in enumerate(((playbook_name, playbook_file, "playbook.yaml"),
                                                    (inventory_name, inventory_file, "inventory.yaml"))):
            data = contents[n] if contents is not None else source.read_bytes()
            write_private(run_dir / target, data)
            refs.append(FileRef(name=name, path=target, source=str(source), sha256=hashlib.sha256(data).hexdigest()))
        if bindings is not None:
            write_private(run_dir / "bindings.json", json.dumps(bindings.to_json(), indent=2).encode())

        templates = playbook_file.resolve().parent / "templates"
        for folder in (BUNDLED, templates):  # the bundled library, then the playbook's own over it
            if folder.is_dir():  # resumes send the same words, even if the files change meanwhile
                shutil.copytree(folder, run_dir / "templates", dirs_exist_ok=True)
        stamp = now()
        record = RunRecord(
            run_id=run_id, run_key=f"{incident}/{playbook_name}/{inputs_hash}", incident=incident, mode=mode,
            playbook=refs[0], inventory=refs[1], inputs=inputs, inputs_sha256=inputs_hash,
            initiator=initiator, initiator_via=initiator_via,
            breakglass_version=__version__, created_at=stamp, updated_at=stamp,
            steps=[StepRecord(id=step_id, kind=kind) for step_id, kind in step_kinds],
        )
        write_private(run_dir / "record.json", record.model_dump_json(indent=2).encode() + b"\n")
        return RunHandle(run_dir)


@contextmanager
def heartbeat(run_dir: Path, every: float = 2.0) -> Iterator[None]:
    """``heartbeat.json`` every few seconds while this process runs the run: `status` tells a dead runner by it."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            tmp = run_dir / ".heartbeat.tmp"
            tmp.write_text(json.dumps({"at": time.time(), "pid": os.getpid(), "host": socket.gethostname()}))
            os.replace(tmp, run_dir / "heartbeat.json")
            if stop.wait(every):
                return

    thread = threading.Thread(target=beat, name="breakglass-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def handed_off(handle: RunHandle) -> dict[str, str] | None:
    """The pool and flow run a run was handed to (``handoff.json``), or None when it runs here."""
    path = handle.dir / "handoff.json"
    return json.loads(path.read_text()) if path.exists() else None
